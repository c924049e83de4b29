"""Train and time RecTools 0.19.0's eSASRec (the reference implementation) on one dataset.

Runs inside ``benchmarks/.rectools-venv`` (see ``setup_rectools.sh``); imports only
rectools, torch, pytorch_lightning (RecTools' own dependency), pandas, numpy and the stdlib.

The model is the configuration the eSASRec paper and RecTools' docs use::

    SASRecModel(transformer_layers_type=LiGRLayers, loss="sampled_softmax",
                use_key_padding_mask=True, transformer_layers_kwargs={"ff_factors_multiplier": m}, ...)

It trains for exactly ``--epochs`` epochs (no validation, no early stopping), recording the
wall time of every epoch, then times ``recommend`` (top-10, seen items filtered) for the test
users. Outputs in ``--out-dir``: ``rectools_result.json`` and ``rectools_recos.csv``
(``user_id,item_id,rank``).

Input: ``--train`` is a parquet or csv file with columns ``user_id,item_id,timestamp``
(unix seconds); rows with equal timestamps keep the file order. ``--test-users`` is a text
file with one user id per line (or a csv/parquet with a ``user_id`` column).

Example (Beauty, eSASRec paper config, one epoch on 2 threads)::

    benchmarks/.rectools-venv/bin/python benchmarks/rectools_runner.py \\
        --train benchmarks/runs/beauty_loo/train.csv \\
        --test-users benchmarks/runs/beauty_loo/test_users.txt \\
        --out-dir benchmarks/runs/rectools_beauty --epochs 1 --d-model 64 --n-blocks 1 \\
        --n-heads 1 --dropout 0.2 --max-len 50 --ffn-mult 4 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import resource
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_lightning import Callback, Trainer, seed_everything

from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.item_net import IdEmbeddingsItemNet
from rectools.models.nn.transformers.ligr import LiGRLayers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train and time RecTools eSASRec (SASRec + LiGR + sampled softmax).")
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
    p.add_argument("--deterministic", action="store_true", help="Trainer(deterministic=True)")
    p.add_argument("--no-recommend", action="store_true", help="skip the recommend step")
    return p.parse_args(argv)


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def read_train(path: Path) -> pd.DataFrame:
    """Read interactions into RecTools' column layout (user_id, item_id, weight=1, datetime)."""
    df = read_table(path)
    missing = {"user_id", "item_id", "timestamp"} - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: missing column(s) {sorted(missing)}; expected user_id,item_id,timestamp")
    # RecTools sorts by Columns.Datetime with a stable sort, so the file order breaks ties.
    return pd.DataFrame(
        {
            Columns.User: df["user_id"].to_numpy(),
            Columns.Item: df["item_id"].to_numpy(),
            Columns.Weight: np.ones(len(df), dtype=np.float32),
            Columns.Datetime: pd.to_datetime(df["timestamp"].to_numpy(), unit="s"),
        }
    )


def read_users(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.suffix in (".csv", ".parquet"):
        users = read_table(path)["user_id"].to_numpy()
    else:
        users = np.array([line.strip() for line in path.read_text().splitlines() if line.strip()])
    return users.astype(dtype)


class EpochTimer(Callback):
    """Wall seconds, process CPU seconds (all threads), load average and mean train loss per epoch.

    CPU seconds help read a wall time measured on a shared machine: wall >> CPU / threads
    means the process waited for cores.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []
        self.epoch_loadavg_end: list[tuple[float, float, float]] = []
        self.epoch_loss: list[float | None] = []
        self._start = 0.0
        self._cpu_start = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: object) -> None:
        self._sync()
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: object) -> None:
        self._sync()
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.epoch_cpu_seconds.append(time.process_time() - self._cpu_start)
        self.epoch_loadavg_end.append(os.getloadavg())
        loss = trainer.callback_metrics.get("train_loss")
        self.epoch_loss.append(None if loss is None else float(loss))
        print(f"[rectools] epoch {len(self.epoch_seconds)}: {seconds:.2f} s wall, "
              f"{self.epoch_cpu_seconds[-1]:.2f} s CPU, load {self.epoch_loadavg_end[-1][0]:.2f}, "
              f"train_loss {self.epoch_loss[-1]}", flush=True)


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
    for name in ("rectools", "torch", "pytorch-lightning", "numpy", "pandas"):
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
    warnings.filterwarnings("ignore")  # Lightning's num_workers / logging hints flood the log
    cuda = args.device == "cuda"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    wall_start = time.perf_counter()

    t0 = time.perf_counter()
    interactions = read_train(args.train)
    test_users = read_users(args.test_users, interactions[Columns.User].dtype)
    dataset = Dataset.construct(interactions)
    data_seconds = time.perf_counter() - t0
    print(f"[rectools] {len(interactions)} interactions, {dataset.user_id_map.size} users, "
          f"{dataset.item_id_map.size} items; data {data_seconds:.2f} s", flush=True)

    seed_everything(args.seed, workers=True)
    random.seed(args.seed)
    model = SASRecModel(
        transformer_layers_type=LiGRLayers,
        transformer_layers_kwargs={"ff_factors_multiplier": args.ffn_mult},
        item_net_block_types=(IdEmbeddingsItemNet,),  # ids only (no item features here anyway)
        loss="sampled_softmax",
        n_negatives=args.n_negatives,
        use_key_padding_mask=True,
        use_causal_attn=True,
        n_factors=args.d_model,
        n_blocks=args.n_blocks,
        n_heads=args.n_heads,
        dropout_rate=args.dropout,
        session_max_len=args.max_len,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        deterministic=args.deterministic,
        recommend_torch_device=args.device,
        verbose=0,
    )
    timer = EpochTimer(cuda)
    # RecTools' docs allow replacing the default trainer through `_trainer`; this one only
    # adds the timing callback and pins the accelerator.
    model._trainer = Trainer(
        max_epochs=args.epochs,
        min_epochs=args.epochs,
        deterministic=args.deterministic,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        callbacks=[timer],
    )

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with RssSampler() as fit_rss:
        t0 = time.perf_counter()
        model.fit(dataset)
        if cuda:
            torch.cuda.synchronize()
        fit_seconds = time.perf_counter() - t0
    cuda_fit_peak = torch.cuda.max_memory_allocated() if cuda else None
    # fit() trains a deepcopy of `_trainer`, so the callback that saw the epochs is the copy's.
    timer = next(cb for cb in model.fit_trainer.callbacks if isinstance(cb, EpochTimer))
    load_after_fit = os.getloadavg()

    recommend_seconds = None
    cuda_reco_peak = None
    n_reco_rows = 0
    reco_rss_peak = None
    if not args.no_recommend:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with RssSampler() as reco_rss:
            t0 = time.perf_counter()
            recos = model.recommend(users=test_users, dataset=dataset, k=args.k, filter_viewed=True,
                                    on_unsupported_targets="warn")
            if cuda:
                torch.cuda.synchronize()
            recommend_seconds = time.perf_counter() - t0
        reco_rss_peak = reco_rss.peak_bytes
        cuda_reco_peak = torch.cuda.max_memory_allocated() if cuda else None
        recos = recos.rename(columns={Columns.User: "user_id", Columns.Item: "item_id", Columns.Rank: "rank"})
        recos[["user_id", "item_id", "rank"]].to_csv(args.out_dir / "rectools_recos.csv", index=False)
        n_reco_rows = len(recos)
        print(f"[rectools] recommend top-{args.k} for {len(test_users)} users: {recommend_seconds:.2f} s",
              flush=True)

    result = {
        "implementation": "rectools",
        "model": "SASRecModel(LiGRLayers, sampled_softmax, key padding mask)",
        "config": {
            "d_model": args.d_model, "n_blocks": args.n_blocks, "n_heads": args.n_heads,
            "dropout": args.dropout, "max_len": args.max_len, "ffn_mult": args.ffn_mult,
            "n_negatives": args.n_negatives, "batch_size": args.batch_size, "lr": args.lr,
            "epochs": args.epochs, "seed": args.seed, "device": args.device,
            "deterministic": args.deterministic, "k": args.k,
        },
        "data": {
            "train": str(args.train), "n_interactions": int(len(interactions)),
            "n_users": int(dataset.user_id_map.size), "n_items": int(dataset.item_id_map.size),
            "n_model_items": int(model.data_preparator.item_id_map.size) - 1,  # minus the padding token
            "n_test_users": int(len(test_users)), "n_reco_rows": int(n_reco_rows),
        },
        "epoch_seconds": timer.epoch_seconds,
        "epoch_cpu_seconds": timer.epoch_cpu_seconds,
        "epoch_loadavg_end": timer.epoch_loadavg_end,
        "epoch_train_loss": timer.epoch_loss,
        "fit_seconds": fit_seconds,
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
    out = args.out_dir / "rectools_result.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[rectools] wrote {out}", flush=True)


if __name__ == "__main__":
    main()
