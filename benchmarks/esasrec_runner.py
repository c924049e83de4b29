"""Train and time our eSASRec on one dataset: the counterpart of ``rectools_runner.py``.

Same command line, same inputs and the same JSON layout as ``rectools_runner.py``, so
``compare_rectools.py`` runs both sides the same way, each in its own process (each side's
peak RSS is its own). Uses only esasrec's public API::

    model_config, train_config = preset("esasrec", ..., epochs=N, patience=N, compile=...)
    rec = SequentialRecommender(model_config, train_config).fit(train)   # no validation fold
    rec.recommend(test_users, k=10)

It trains for exactly ``--epochs`` epochs (no validation frame, so no early stopping), takes
each epoch's wall time from ``rec.history``, then times ``recommend`` (top-10, seen items
excluded) for the test users. Outputs in ``--out-dir``: ``esasrec_result.json`` and
``esasrec_recos.csv`` (``user_id,item_id,rank``).

Input: ``--train`` is a parquet or csv file with columns ``user_id,item_id,timestamp`` (unix
seconds), read as is (file order breaks timestamp ties). ``--test-users`` is a text file with
one user id per line (or a csv/parquet with a ``user_id`` column).

Example (Beauty, eSASRec paper config, two epochs on 2 threads)::

    python benchmarks/esasrec_runner.py --train benchmarks/runs/beauty_loo/train.csv \\
        --test-users benchmarks/runs/beauty_loo/test_users.txt --out-dir benchmarks/runs/esasrec_beauty \\
        --epochs 2 --d-model 64 --n-blocks 1 --n-heads 1 --dropout 0.2 --max-len 50 --ffn-mult 4 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from esasrec.presets import preset
from esasrec.train import SequentialRecommender


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train and time esasrec's eSASRec (LiGR + sampled softmax).")
    p.add_argument("--train", type=Path, required=True, help="parquet/csv with user_id,item_id,timestamp")
    p.add_argument("--test-users", type=Path, required=True, help="one user id per line, or csv/parquet with user_id")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-blocks", type=int, default=1)
    p.add_argument("--n-heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--ffn-mult", type=int, default=4, help="SwiGLU hidden size multiplier m (hidden = m * d)")
    p.add_argument("--n-negatives", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--k", type=int, default=10, help="recommendations per user")
    p.add_argument("--no-recommend", action="store_true", help="skip the recommend step")
    # Ours only.
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the loss (TrainConfig.compile; default on)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="TrainConfig.precision: auto = bf16 autocast on CUDA, fp32 on CPU")
    return p.parse_args(argv)


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def read_train(path: Path) -> pd.DataFrame:
    df = read_table(path)
    missing = {"user_id", "item_id", "timestamp"} - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: missing column(s) {sorted(missing)}; expected user_id,item_id,timestamp")
    return df[["user_id", "item_id", "timestamp"]].reset_index(drop=True)


def read_users(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.suffix in (".csv", ".parquet"):
        users = read_table(path)["user_id"].to_numpy()
    else:
        users = np.array([line.strip() for line in path.read_text().splitlines() if line.strip()])
    return users.astype(dtype)


class RssSampler:
    """Peak resident set size of this process, sampled from /proc every `interval` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def current_bytes(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.current_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.peak_bytes = self.current_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("esasrec", "torch", "numpy", "pandas"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    wall_start = time.perf_counter()

    t0 = time.perf_counter()
    train = read_train(args.train)
    test_users = read_users(args.test_users, train["user_id"].dtype)
    data_seconds = time.perf_counter() - t0
    print(f"[esasrec] {len(train)} interactions, {train['user_id'].nunique()} users, "
          f"{train['item_id'].nunique()} items; data {data_seconds:.2f} s", flush=True)

    model_config, train_config = preset(
        "esasrec", None, "loo",
        d_model=args.d_model, n_blocks=args.n_blocks, n_heads=args.n_heads, dropout=args.dropout,
        max_len=args.max_len, ffn_mult=args.ffn_mult, n_negatives=args.n_negatives,
        batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, patience=args.epochs,
        seed=args.seed, device=args.device, precision=args.precision, compile=args.compile,
        progress=False,
    )
    rec = SequentialRecommender(model_config, train_config)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught, RssSampler() as fit_rss:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        rec.fit(train)
        if cuda:
            torch.cuda.synchronize()
        fit_seconds = time.perf_counter() - t0
        fit_cpu_seconds = time.process_time() - cpu0
    fit_warnings = sorted({str(w.message)[:300] for w in caught})
    for message in fit_warnings:
        print(f"[esasrec] warning during fit: {message}", flush=True)
    cuda_fit_peak = torch.cuda.max_memory_allocated() if cuda else None
    load_after_fit = os.getloadavg()
    for record in rec.history:
        print(f"[esasrec] epoch {record['epoch']}: {record['seconds']:.2f} s wall, "
              f"train_loss {record['loss']:.4f}", flush=True)

    recommend_seconds = None
    cuda_reco_peak = None
    n_reco_rows = 0
    reco_rss_peak = None
    if not args.no_recommend:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with RssSampler() as reco_rss:
            t0 = time.perf_counter()
            recos = rec.recommend(test_users, k=args.k)
            if cuda:
                torch.cuda.synchronize()
            recommend_seconds = time.perf_counter() - t0
        reco_rss_peak = reco_rss.peak_bytes
        cuda_reco_peak = torch.cuda.max_memory_allocated() if cuda else None
        recos[["user_id", "item_id", "rank"]].to_csv(args.out_dir / "esasrec_recos.csv", index=False)
        n_reco_rows = len(recos)
        print(f"[esasrec] recommend top-{args.k} for {len(test_users)} users: {recommend_seconds:.2f} s",
              flush=True)

    result = {
        "implementation": "esasrec",
        "model": "SequentialRecommender(preset('esasrec'): LiGR blocks, sampled_softmax)",
        "config": {
            "d_model": args.d_model, "n_blocks": args.n_blocks, "n_heads": args.n_heads,
            "dropout": args.dropout, "max_len": args.max_len, "ffn_mult": args.ffn_mult,
            "n_negatives": args.n_negatives, "batch_size": args.batch_size, "lr": args.lr,
            "epochs": args.epochs, "seed": args.seed, "device": args.device, "k": args.k,
            "compile": args.compile, "precision": args.precision,
        },
        "model_config": model_config.as_dict(),
        "train_config": train_config.as_dict(),
        "data": {
            "train": str(args.train), "n_interactions": int(len(train)),
            "n_users": int(train["user_id"].nunique()), "n_items": int(train["item_id"].nunique()),
            "n_model_items": int(rec.model_config.n_items),
            "n_test_users": int(len(test_users)), "n_reco_rows": int(n_reco_rows),
        },
        "epoch_seconds": [r["seconds"] for r in rec.history],
        "epoch_train_loss": [r["loss"] for r in rec.history],
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "fit_warnings": fit_warnings,
        "recommend_seconds": recommend_seconds,
        "data_seconds": data_seconds,
        "total_seconds": time.perf_counter() - wall_start,
        "peak_rss_mb": mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),  # ru_maxrss is KiB on Linux
        "fit_peak_rss_mb": mb(fit_rss.peak_bytes),
        "recommend_peak_rss_mb": None if reco_rss_peak is None else mb(reco_rss_peak),
        "cuda_fit_max_allocated_mb": None if cuda_fit_peak is None else mb(cuda_fit_peak),
        "cuda_recommend_max_allocated_mb": None if cuda_reco_peak is None else mb(cuda_reco_peak),
        "cuda_device": torch.cuda.get_device_name() if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after_fit": load_after_fit,
        "loadavg_end": os.getloadavg(),
        "versions": versions(),
        "argv": sys.argv,
    }
    out = args.out_dir / "esasrec_result.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[esasrec] wrote {out}", flush=True)


if __name__ == "__main__":
    main()
