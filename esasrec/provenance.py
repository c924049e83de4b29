"""Where a result came from: the last cell of every notebook and the benchmark tables print this."""

from __future__ import annotations

import os
import platform
import time

import torch

from esasrec import __version__

__all__ = ["notebook_mode", "provenance"]


def notebook_mode() -> str:
    """``"fast"`` when ``ESASREC_FAST=1`` (tiny settings on the bundled data, what CI runs), else ``"full"``."""
    return "fast" if os.environ.get("ESASREC_FAST") == "1" else "full"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(dataset: str, started: float, mode: str | None = None, device: str | None = None) -> dict:
    """Print and return package version, device, mode, dataset and wall time since ``started``.

    Args:
        dataset: the dataset the notebook or run used.
        started: ``time.time()`` taken at the start of the run.
        mode: ``fast`` / ``full`` (default: from ``ESASREC_FAST``).
        device: the device used (default: CUDA name when available, else the CPU model).
    """
    if device is None:
        device = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else f"cpu ({_cpu_name()})"
    record = {
        "esasrec": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "mode": mode or notebook_mode(),
        "dataset": dataset,
        "wall time": f"{time.time() - started:.0f} s",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    width = max(map(len, record))
    for key, value in record.items():
        print(f"{key:<{width}}  {value}")
    return record
