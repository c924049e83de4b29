"""Compare esasrec with RecTools 0.19 (the reference eSASRec): speed, memory and accuracy.

One entry point. For each dataset it

1. loads and splits the data with esasrec (``load_dataset`` + ``leave_one_out`` / ``time_split``)
   and writes ONE train file (``train.parquet``, file order kept), the test frame and the test
   users into the work folder; both implementations read these same files;
2. for each seed, trains RecTools (``rectools_runner.py`` in ``benchmarks/.rectools-venv``) and
   esasrec (``esasrec_runner.py`` in this Python) for the same number of epochs with no early
   stopping, each in its own subprocess (so each side's peak RSS is its own), with the paper's
   eSASRec configuration (REFERENCE §3, via ``esasrec.presets.DATASET_DEFAULTS``), and has each
   recommend top-10 for every test user;
3. scores both recommendation files with the same code (``esasrec.metrics.evaluate_recommendations``
   against the same test and train frames);
4. prints one table (rows: dataset x implementation) and writes it with provenance to
   ``RESULTS_DIR/compare_rectools_<dataset>_<device>.{md,json}``.

Seconds per epoch are the median over epochs 2..N of a run (the first epoch is warm-up:
torch.compile, allocator, caches), then mean +- std over seeds. Peak memory is the process's peak
RSS on CPU (``getrusage``), ``torch.cuda.max_memory_allocated`` on CUDA.

Datasets (``--datasets``): ``beauty-loo`` (Amazon Beauty, leave-one-out), ``beauty-time``
(Beauty, global time split, last 60 days), ``ml1m`` (MovieLens-1M, leave-one-out; only when
``ml-1m.zip`` is already in the data folder, else skipped with a message, or replaced by
synthetic data of the same shape with ``--synthetic-ml1m``), ``ml1m-synthetic``.

Run it with the project's Python (the one that has esasrec installed), from the repository root::

    python benchmarks/compare_rectools.py                                   # the real benchmark
    python benchmarks/compare_rectools.py --datasets beauty-loo --max-users 300 --epochs 2 \\
        --seeds 1 --n-negatives 16 --results-dir /tmp/smoke                 # a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from esasrec import __version__ as esasrec_version
from esasrec.data import load_dataset
from esasrec.errors import DownloadError
from esasrec.metrics import evaluate_recommendations
from esasrec.presets import DATASET_DEFAULTS
from esasrec.split import leave_one_out, time_split
from esasrec.train import TrainConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECTOOLS_VENV = HERE / ".rectools-venv"
IMPLEMENTATIONS = ("rectools", "esasrec")
METRICS = ("ndcg@10", "recall@10", "coverage@10", "hr@10")


@dataclass(frozen=True)
class Benchmark:
    """A dataset + protocol, and the paper configuration it is trained with."""

    source: str  # esasrec dataset name, or "synthetic-ml1m"
    protocol: str  # "loo" | "time"
    config: str  # key of esasrec.presets.DATASET_DEFAULTS
    test_days: float = 60


BENCHMARKS = {
    "beauty-loo": Benchmark("beauty", "loo", "beauty"),
    "beauty-time": Benchmark("beauty", "time", "beauty"),
    "ml1m": Benchmark("ml-1m", "loo", "ml-1m"),
    "ml1m-synthetic": Benchmark("synthetic-ml1m", "loo", "ml-1m"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", default="beauty-loo,beauty-time,ml1m",
                   help=f"comma-separated, from {', '.join(BENCHMARKS)}")
    p.add_argument("--synthetic-ml1m", action="store_true",
                   help="when ml1m is asked for but ml-1m.zip is not in the data folder, run the ML-1M "
                        "configuration on synthetic ML-1M-shaped data instead of skipping it")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (no early stopping)")
    p.add_argument("--seeds", type=int, default=3, help="runs per dataset and implementation (seeds 0..N-1)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on both sides")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="esasrec side: torch.compile the loss")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="esasrec side: auto = bf16 autocast on CUDA, fp32 on CPU (RecTools always runs fp32)")
    p.add_argument("--n-negatives", type=int, default=None, help="override the paper's 256 negatives (smoke tests)")
    p.add_argument("--max-users", type=int, default=None,
                   help="subsample this many users before splitting (smoke tests; results get a _maxusersN suffix)")
    p.add_argument("--implementations", default=",".join(IMPLEMENTATIONS),
                   help="comma-separated subset of rectools,esasrec")
    p.add_argument("--data-dir", default=None, help="dataset cache (default: $ESASREC_DATA_DIR or ~/.cache/esasrec)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (default: never)")
    p.add_argument("--results-dir", type=Path, default=HERE / "results", help="where the .md/.json tables go")
    p.add_argument("--work-dir", type=Path, default=HERE / "runs" / "compare",
                   help="split files, per-run outputs and logs (git-ignored)")
    p.add_argument("--reuse", action="store_true",
                   help="reuse a run whose result is already in --work-dir from the identical runner command "
                        "(to resume an interrupted benchmark)")
    p.add_argument("--rectools-python", type=Path, default=RECTOOLS_VENV / "bin" / "python",
                   help="Python of the RecTools venv (created by setup_rectools.sh when missing)")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in BENCHMARKS]
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    args.implementations = [i.strip() for i in args.implementations.split(",") if i.strip()]
    if not args.implementations or set(args.implementations) - set(IMPLEMENTATIONS):
        p.error(f"--implementations must be a subset of {','.join(IMPLEMENTATIONS)}")
    if args.epochs < 1 or args.seeds < 1:
        p.error("--epochs and --seeds must be at least 1")
    return args


# ----------------------------------------------------------------------------------- data
def synthetic_ml1m(seed: int = 0, n_users: int = 6040, n_items: int = 3706,
                   n_interactions: int = 1_000_209) -> pd.DataFrame:
    """MovieLens-1M-shaped interactions: for timing the ML-1M configuration without the real file.

    User activity is log-normal (median 96, mean ~166, clipped to ML-1M's 20..2,314 ratings per
    user); items are drawn per user without replacement from a Zipf-like popularity
    (p ~ 1 / (rank + 30)), which gives ML-1M's long tail (most popular item ~3,300 users, median
    ~140); timestamps run forward per user from a start in 2000, with same-second ties as in
    ML-1M. The order of items within a user is random, so accuracy on it means nothing: only the
    speed and memory columns are informative.
    """
    rng = np.random.default_rng(seed)
    counts = np.exp(rng.normal(np.log(96), 1.04, n_users))
    counts = np.clip(np.round(counts * n_interactions / counts.sum()), 20, 2314).astype(np.int64)
    log_p = -np.log(np.arange(n_items) + 30.0)
    item_ids = rng.permutation(n_items) + 1  # popularity rank -> raw id, so ids carry no popularity order
    users, items = [], []
    chunk = 512
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        # Gumbel top-n: a weighted sample without replacement for every user of the chunk at once.
        keys = log_p[None, :] + rng.gumbel(size=(stop - start, n_items))  # (C, I)
        order = np.argsort(-keys, axis=1)
        for row, user in enumerate(range(start, stop)):
            picked = order[row, : counts[user]]
            items.append(item_ids[rng.permutation(picked)])
            users.append(np.full(len(picked), user + 1, dtype=np.int64))
    users, items = np.concatenate(users), np.concatenate(items)
    # Per user: a start between 2000-04-25 and 2000-12-31, then gaps of 0 s (30 %) or ~2 min.
    starts = rng.integers(956_703_932, 978_307_200, n_users)
    gaps = np.where(rng.random(len(items)) < 0.3, 0, rng.exponential(120.0, len(items))).astype(np.int64)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    gaps[first] = 0
    offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], counts)
    times = np.repeat(starts, counts) + offsets
    df = pd.DataFrame({"user_id": users, "item_id": items.astype(np.int64), "timestamp": times})
    df.attrs = {"dataset": "ml1m-synthetic", "timestamps": "real"}
    return df


def load_interactions(name: str, bench: Benchmark, args) -> pd.DataFrame | None:
    """The dataset's interactions, or None (with a message) when its files are not available."""
    if bench.source == "synthetic-ml1m":
        return synthetic_ml1m()
    try:
        return load_dataset(bench.source, args.data_dir, download=args.download)
    except DownloadError as err:
        print(f"[compare] {name} is not available offline: {err}", flush=True)
        return None


def subsample_users(df: pd.DataFrame, n_users: int, seed: int = 0) -> pd.DataFrame:
    """All interactions of ``n_users`` random users, in the original row order."""
    users = np.sort(pd.unique(df["user_id"]))
    if n_users >= len(users):
        return df
    chosen = np.random.default_rng(seed).choice(users, size=n_users, replace=False)
    out = df[df["user_id"].isin(chosen)].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def prepare(name: str, bench: Benchmark, args) -> dict | None:
    """Split one dataset and write train.parquet, test.parquet, test_users.txt; None if unavailable."""
    df = load_interactions(name, bench, args)
    if df is None and name == "ml1m" and args.synthetic_ml1m:
        print("[compare] running the ML-1M configuration on synthetic ML-1M-shaped data (ml1m-synthetic) "
              "instead", flush=True)
        name, bench = "ml1m-synthetic", BENCHMARKS["ml1m-synthetic"]
        df = load_interactions(name, bench, args)
    if df is None:
        hint = " (--synthetic-ml1m times the ML-1M configuration on synthetic data instead)" if name == "ml1m" else ""
        print(f"[compare] skipping {name}{hint}", flush=True)
        return None
    if args.max_users:
        df = subsample_users(df, args.max_users)
    if bench.protocol == "time":
        train, test, stats = time_split(df, bench.test_days)
    else:
        train, test, stats = leave_one_out(df)
    print(f"[compare] {name}: {len(df):,} interactions, {df['user_id'].nunique():,} users, "
          f"{df['item_id'].nunique():,} items\n{stats}", flush=True)
    if len(test) == 0:
        print(f"[compare] skipping {name}: the test set is empty after filtering"
              + (" (try a larger --max-users)" if args.max_users else ""), flush=True)
        return None
    label = name + (f"_maxusers{args.max_users}" if args.max_users else "")
    folder = args.work_dir / label
    folder.mkdir(parents=True, exist_ok=True)
    train = train[["user_id", "item_id", "timestamp"]].reset_index(drop=True)
    test = test[["user_id", "item_id", "timestamp"]].reset_index(drop=True)
    test_users = pd.unique(test["user_id"])
    train.to_parquet(folder / "train.parquet", index=False)  # row order = file order: the tie-break
    test.to_parquet(folder / "test.parquet", index=False)
    (folder / "test_users.txt").write_text("".join(f"{u}\n" for u in test_users))
    return {"name": name, "label": label, "bench": bench, "folder": folder, "train": train, "test": test,
            "n_test_users": len(test_users), "split": stats.as_dict(),
            "n_interactions_loaded": int(len(df))}


# ------------------------------------------------------------------------------------ runs
def model_args(bench: Benchmark, args) -> dict:
    """The paper's eSASRec configuration for this dataset (REFERENCE §3), as runner flags."""
    sizes = DATASET_DEFAULTS[bench.config]
    train = TrainConfig()
    return {
        "d-model": sizes["d_model"], "n-blocks": sizes["n_blocks"], "n-heads": sizes["n_heads"],
        "dropout": sizes["dropout"], "max-len": sizes["max_len"], "ffn-mult": sizes["ffn_mult"],
        "n-negatives": args.n_negatives or 256, "batch-size": train.batch_size, "lr": train.lr,
    }


def runner_command(impl: str, data: dict, seed: int, out_dir: Path, args) -> list[str]:
    if impl == "rectools":
        cmd = [str(args.rectools_python), str(HERE / "rectools_runner.py")]
    else:
        cmd = [sys.executable, str(HERE / "esasrec_runner.py")]
    cmd += ["--train", str(data["folder"] / "train.parquet"), "--test-users", str(data["folder"] / "test_users.txt"),
            "--out-dir", str(out_dir), "--epochs", str(args.epochs), "--seed", str(seed),
            "--threads", str(args.threads), "--device", args.device, "--k", "10"]
    for flag, value in model_args(data["bench"], args).items():
        cmd += [f"--{flag}", str(value)]
    if impl == "esasrec":
        cmd += ["--compile" if args.compile else "--no-compile", "--precision", args.precision]
    return cmd


def run_logged(cmd: list[str], log_path: Path, env: dict) -> int:
    """Run ``cmd``, echoing its output to the console and to ``log_path``; return the exit code."""
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=REPO, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[rectools]") or line.startswith("[esasrec]") or "Error" in line:
                print("    " + line.rstrip(), flush=True)
        return proc.wait()


def measured_seconds(epoch_seconds: list[float]) -> float:
    """Median over epochs 2..N (epoch 1 is warm-up); epoch 1 itself when it is the only one."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def one_run(impl: str, data: dict, seed: int, args) -> dict:
    out_dir = data["folder"] / f"{impl}_seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = runner_command(impl, data, seed, out_dir, args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    log_path, result_path = out_dir / "log.txt", out_dir / f"{impl}_result.json"
    reused = (args.reuse and result_path.exists() and log_path.exists()
              and log_path.read_text().split("\n", 1)[0] == "$ " + shlex.join(cmd))
    t0 = time.perf_counter()
    if reused:
        print(f"[compare] {data['name']} {impl} seed {seed}: reusing {result_path}", flush=True)
        rc = 0
    else:
        print(f"[compare] {data['name']} {impl} seed {seed}: training {args.epochs} epochs", flush=True)
        result_path.unlink(missing_ok=True)  # never score a stale result from an earlier run
        rc = run_logged(cmd, log_path, env)
    wall = time.perf_counter() - t0
    record = {"implementation": impl, "seed": seed, "command": shlex.join(cmd), "returncode": rc,
              "wall_seconds": wall, "log": str(log_path), "reused": reused}
    if rc != 0 or not result_path.exists():
        record["error"] = f"runner exited with code {rc}; see {log_path}"
        tail = log_path.read_text().splitlines()[-15:] if log_path.exists() else []
        print("\n".join(["[compare] FAILED: " + record["error"], *("    | " + line for line in tail)]), flush=True)
        return record
    result = json.loads(result_path.read_text())
    recos = pd.read_csv(out_dir / f"{impl}_recos.csv")
    metrics = evaluate_recommendations(recos, data["test"], data["train"], k=10, debias=False)
    cuda = args.device == "cuda"
    peak = (max(v for v in (result["cuda_fit_max_allocated_mb"], result["cuda_recommend_max_allocated_mb"])
                if v is not None) if cuda else result["peak_rss_mb"])
    record.update({
        "sec_per_epoch": measured_seconds(result["epoch_seconds"]),
        "peak_mb": peak,
        "recommend_seconds": result["recommend_seconds"],
        "metrics": metrics,
        "runner_result": result,
    })
    print(f"[compare] {data['name']} {impl} seed {seed}: {record['sec_per_epoch']:.2f} s/epoch, "
          f"peak {peak:.0f} MB, recommend {record['recommend_seconds']:.2f} s, "
          f"NDCG@10 {metrics['ndcg@10']:.4f}, Recall@10 {metrics['recall@10']:.4f} (run wall {wall:.0f} s)",
          flush=True)
    return record


# --------------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(name: str, runs: list[dict]) -> list[dict]:
    """One row per implementation: mean and std over seeds; the speed-up on our row."""
    rows = []
    for impl in IMPLEMENTATIONS:
        ok = [r for r in runs if r["implementation"] == impl and "error" not in r]
        failed = [r for r in runs if r["implementation"] == impl and "error" in r]
        if not ok and not failed:
            continue
        row = {"dataset": name, "implementation": impl, "n_runs": len(ok), "n_failed": len(failed),
               "sec_per_epoch": [r["sec_per_epoch"] for r in ok], "peak_mb": [r["peak_mb"] for r in ok],
               "recommend_seconds": [r["recommend_seconds"] for r in ok]}
        for m in METRICS:
            row[m] = [r["metrics"][m] for r in ok]
        for key in ("sec_per_epoch", "peak_mb", "recommend_seconds", *METRICS):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(row[key]) if row[key] else (None, None)
        rows.append(row)
    theirs, ours = ({r["implementation"]: r for r in rows}.get(i, {}) for i in IMPLEMENTATIONS)
    if theirs.get("sec_per_epoch_mean") and ours.get("sec_per_epoch_mean"):
        ours["speedup"] = theirs["sec_per_epoch_mean"] / ours["sec_per_epoch_mean"]
    return rows


def markdown_table(rows: list[dict], device: str) -> str:
    memory = "peak GPU MB" if device == "cuda" else "peak RSS MB"
    header = ["dataset", "implementation", "runs", "sec/epoch", memory, "recommend s",
              "NDCG@10", "Recall@10", "Coverage@10", "HR@10", "speed-up"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        speedup = f"{r['speedup']:.1f}x" if r.get("speedup") else ""
        runs = f"{r['n_runs']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        cells = [r["dataset"], r["implementation"], runs, fmt(r["sec_per_epoch"], 2), fmt(r["peak_mb"], 0),
                 fmt(r["recommend_seconds"], 2), *(fmt(r[m], 4) for m in METRICS), speedup]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ provenance
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> dict:
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def provenance(args, runs: list[dict], load_start: tuple, started: float) -> dict:
    import torch  # here, not at the top: the parent process never touches CUDA

    def from_runner(impl: str, key: str):
        for r in runs:
            if r["implementation"] == impl and "runner_result" in r:
                return r["runner_result"]["versions"].get(key)
        return None

    gpu = next((r["runner_result"]["cuda_device"] for r in runs
                if "runner_result" in r and r["runner_result"].get("cuda_device")), None)
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": {
            "esasrec": esasrec_version, "torch (esasrec side)": torch.__version__,
            "rectools": from_runner("rectools", "rectools"), "torch (rectools side)": from_runner("rectools", "torch"),
            "pytorch-lightning": from_runner("rectools", "pytorch-lightning"),
            "python (esasrec side)": platform.python_version(),
            "python (rectools side)": from_runner("rectools", "python"),
        },
        "git": git_state(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "device": args.device,
        "threads": args.threads,
        "esasrec_compile": args.compile,
        "esasrec_precision": args.precision,
        "epochs": args.epochs,
        "seeds": list(range(args.seeds)),
        "max_users": args.max_users,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
    }


def write_results(data: dict, runs: list[dict], rows: list[dict], args, load_start: tuple, started: float) -> None:
    prov = provenance(args, runs, load_start, started)
    bench = data["bench"]
    config = model_args(bench, args)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"compare_rectools_{data['label']}_{args.device}"
    smoke = (f"\n\n**Smoke run: {args.max_users} users subsampled, not a benchmark result.**"
             if args.max_users else "")
    split = data["split"]
    md = "\n".join([
        f"# esasrec vs RecTools 0.19: {data['name']} ({bench.protocol}), {args.device}{smoke}",
        "",
        f"eSASRec config ({bench.config}, REFERENCE §3): " + ", ".join(f"{k}={v}" for k, v in config.items())
        + f"; {args.epochs} epochs, no early stopping; seeds {prov['seeds']}.",
        f"Train {split['train_rows']:,} rows, {split['train_users']:,} users, {split['train_items']:,} items; "
        f"{data['n_test_users']:,} test users. Same train file and test users for both; both scored by "
        "esasrec.metrics.evaluate_recommendations.",
        "sec/epoch: median over epochs 2..N of each run, then mean ± std over seeds. "
        + ("Peak memory: torch.cuda.max_memory_allocated." if args.device == "cuda"
           else "Peak memory: peak RSS of the runner process (getrusage)."),
        "Speed-up: RecTools sec/epoch ÷ esasrec sec/epoch.",
        "",
        markdown_table(rows, args.device),
        "",
        "## Provenance",
        "",
        f"- command: `{prov['command']}`",
        f"- date: {prov['date']}; wall {prov['wall_seconds']:.0f} s",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        f"- git: {prov['git']['commit']} (dirty: {prov['git']['dirty']})",
        f"- CPU: {prov['cpu_model']} ({prov['cpu_count']} cores); GPU: {prov['gpu'] or 'none'}; "
        f"threads {prov['threads']}; esasrec compile={prov['esasrec_compile']}, precision={prov['esasrec_precision']}",
        f"- load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in prov['loadavg_start'])}, "
        f"at end {tuple(round(x, 2) for x in prov['loadavg_end'])}",
        "",
    ])
    payload = {
        "dataset": data["name"], "protocol": bench.protocol, "config_name": bench.config, "config": config,
        "split": split, "n_test_users": data["n_test_users"], "provenance": prov,
        "summary": rows, "runs": runs,
    }
    stem.with_suffix(".md").write_text(md)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"[compare] wrote {stem}.md and {stem}.json", flush=True)


# ------------------------------------------------------------------------------------ main
def ensure_rectools(args) -> None:
    if "rectools" not in args.implementations or args.rectools_python.exists():
        return
    if args.rectools_python != RECTOOLS_VENV / "bin" / "python":
        raise SystemExit(f"--rectools-python {args.rectools_python} does not exist")
    print("[compare] RecTools venv missing: running benchmarks/setup_rectools.sh", flush=True)
    subprocess.run(["bash", str(HERE / "setup_rectools.sh")], check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results_dir = args.results_dir.resolve()
    args.work_dir = args.work_dir.resolve()
    ensure_rectools(args)
    all_rows = []
    for name in args.datasets:
        load_start, started = os.getloadavg(), time.perf_counter()
        data = prepare(name, BENCHMARKS[name], args)
        if data is None:
            continue
        runs = []
        for seed in range(args.seeds):
            # Alternate the sides seed by seed so both see the same background load on average.
            for impl in args.implementations:
                runs.append(one_run(impl, data, seed, args))
        rows = summarise(data["name"], runs)
        print("\n" + markdown_table(rows, args.device) + "\n", flush=True)
        write_results(data, runs, rows, args, load_start, started)
        all_rows += rows
    if not all_rows:
        print("[compare] nothing ran", flush=True)
        return 1
    print("\n" + markdown_table(all_rows, args.device), flush=True)
    return 0 if all(r["n_failed"] == 0 for r in all_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
