"""One prepared GPU check of esasrec: install, CUDA tests, throughput, ranking time, probes.

    bash benchmarks/gpu_check.sh OUTDIR                           # a lent GPU: under 8 minutes on an H200
    python benchmarks/gpu_check.py OUTDIR --device cpu --tiny     # the plumbing, here, in about a minute

Stages run in the order below, most informative first, each in its own try/except and
time-boxed against one global deadline (``--deadline``, 450 s): a stage whose expected cost no
longer fits is skipped, and SIGALRM stops one that runs into the deadline; both are recorded.
After every stage OUTDIR/results.json and OUTDIR/results.md are rewritten, so a run cut short
still leaves what it measured. Besides those two: pytest.txt (the CUDA tests) and profile.txt
(the kernels of a short fit): five files with the wrapper's log, inside the device tool's eight.

  install          pip-install the package from the working tree (--no-deps, offline, on a copy
                   of the sources) into a scratch folder and import it from there; a dependency
                   the machine lacks (tqdm, numpy, pandas) is installed from benchmarks/wheels/.
  provenance       GPU, driver, torch / CUDA / cuDNN / Triton versions, date, command, source hash.
  pytest           ``pytest -m gpu tests/test_gpu.py``.
  probes           measured ceilings (bf16 matmul TFLOP/s, copy GB/s) and which primitives make
                   the host wait (nonzero, nonzero_static, repeat_interleave with output_size,
                   embedding / index backward, fused Adam, ...).
  ml20m-compiled   ML-20M-shaped synthetic data (138,493 users, 26,744 items, 20M interactions,
                   per-user lengths with mean 144, a popularity long tail) and the package's
                   ML-20M preset (d=256, 4 LiGR blocks, 8 heads, L=200, 256 negatives, batch 128,
                   compiled loss), trained through SequentialRecommender.fit: seconds per epoch,
                   sequences/s, real tokens/s, model TFLOP/s and share of 790, peak GPU memory;
                   then recommend() top-10 over the full catalogue for every user, at the default
                   eval_batch_size (256) and at 4096.
  profile          kernels of a short fit (which attention kernel really runs) and the host syncs
                   inside training steps, by site.
  beauty-eager, beauty-compiled
                   the Beauty preset (d=64, 1 block, L=50) on Beauty-shaped data.
  loss             the sampled-softmax loss alone on ML-20M and Beauty batch shapes: the
                   package's eager path, gather from a bf16 table, score-the-catalogue-then-gather,
                   and torch.compile; forward + backward time, memory, agreement of the values.
  ml20m-eager      the ML-20M run without torch.compile.

Model FLOPs are counted analytically (REFERENCE §1.2) per real token and block: attention
projections 4d², gates 2d², SwiGLU 3md², attention scores and values 2·(t+1)·d for the token at
causal position t; the loss (1+k)·d; multiply-adds x2, forward + backward x3; embeddings left out.
RecTools is not run: it pins numpy<2 and pandas<3, so it needs a whole second stack of wheels on a
machine without network access.
"""

from __future__ import annotations

import argparse
import gc
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STARTED = time.perf_counter()
PEAK_BF16_TFLOPS = 790.0  # dense bf16 matmul measured on this workplace's H200s (device KINDS.md)

# Synthetic shapes (REFERENCE §3; dataset sizes of the paper's ML-20M and Amazon Beauty).
SHAPES = {
    "ml20m": dict(dataset="ml-20m", users=138_493, items=26_744, interactions=20_000_263, min_len=20, sigma=1.2,
                  zipf=1.0),
    "beauty": dict(dataset="beauty", users=22_363, items=12_101, interactions=198_502, min_len=5, sigma=0.9,
                   zipf=0.8),
}
TINY_SHAPES = {
    "ml20m": dict(dataset="ml-20m", users=600, items=300, interactions=15_000, min_len=5, sigma=1.2, zipf=1.0),
    "beauty": dict(dataset="beauty", users=400, items=200, interactions=3_600, min_len=3, sigma=0.9, zipf=0.8),
}
TINY_MODEL = dict(d_model=32, n_blocks=2, n_heads=2, max_len=30, n_negatives=32)


class StageTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that no ``except Exception`` inside the package eats it."""


def _on_alarm(signum, frame):
    raise StageTimeout()


def elapsed() -> float:
    return time.perf_counter() - STARTED


def log(msg: str) -> None:
    print(f"[gpu_check {elapsed():6.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------------- the runner
class Runner:
    """Runs stages against a global deadline and rewrites the result files after each one."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.outdir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.deadline = args.deadline
        self.results: dict = {"stages": {}, "command": " ".join([sys.executable] + sys.argv)}
        signal.signal(signal.SIGALRM, _on_alarm)

    def left(self) -> float:
        return self.deadline - elapsed()

    def stage(self, name: str, fn, expect_s: float):
        """Run ``fn()`` if ``expect_s`` seconds still fit; record status, seconds and its result."""
        if name in self.args.skip:
            self.results["stages"][name] = {"status": "skipped", "reason": "--skip"}
            log(f"{name}: skipped (--skip)")
            return None
        left = self.left()
        if left < expect_s:
            self.results["stages"][name] = {"status": "skipped",
                                            "reason": f"{left:.0f} s left before the deadline, stage expects {expect_s:.0f} s"}
            log(f"{name}: skipped ({left:.0f} s left, expects {expect_s:.0f} s)")
            self.write()
            return None
        log(f"{name}: start ({left:.0f} s left, expects {expect_s:.0f} s)")
        record: dict = {"status": "running"}
        self.results["stages"][name] = record
        t0 = time.perf_counter()
        signal.alarm(max(1, int(left - 5)))  # 5 s kept back to write the files
        value = None
        try:
            value = fn()
            record["status"] = "ok"
            if value is not None:
                record["result"] = value
        except StageTimeout:
            record["status"] = "timeout"
            record["reason"] = "hit the global deadline"
        except Exception as err:  # noqa: BLE001 - every failure is recorded, the next stage still runs
            record["status"] = "error"
            record["error"] = f"{type(err).__name__}: {err}"[:2000]
            record["traceback"] = traceback.format_exc()[-4000:]
        finally:
            signal.alarm(0)
            record["seconds"] = round(time.perf_counter() - t0, 2)
        log(f"{name}: {record['status']} in {record['seconds']:.1f} s"
            + (f" -- {record.get('error', record.get('reason', ''))}" if record["status"] != "ok" else ""))
        _free_memory()
        self.write()
        return value

    def write(self) -> None:
        self.results["elapsed_s"] = round(elapsed(), 1)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str))
        try:
            markdown = render_markdown(self.results)
        except Exception:  # noqa: BLE001 - a rendering bug must not lose the JSON or stop the run
            markdown = f"# esasrec GPU check\n\nresults.md failed to render:\n\n```\n{traceback.format_exc()}```\n"
        (self.out / "results.md").write_text(markdown)


def _free_memory():
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _run(cmd, timeout, env=None, cwd=None) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"") + (err.stderr or b"")
        return 124, (out.decode(errors="replace") if isinstance(out, bytes) else out) + f"\n[timed out after {timeout} s]"


# ------------------------------------------------------------------------------ provenance
def provenance(args) -> dict:
    import torch

    info = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device_arg": args.device,
        "tiny": args.tiny,
        "source_sha256": _source_hash(),
    }
    for mod in ("pandas", "triton", "tqdm"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    rc, out = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"], 10)
    info["git_commit"] = out.strip() if rc == 0 else None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_capability=f"{p.major}.{p.minor}", gpu_sms=p.multi_processor_count,
                    gpu_memory_gib=round(p.total_memory / 2**30, 1))
        rc, out = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,power.limit",
                        "--format=csv,noheader"], 20)
        info["nvidia_smi"] = out.strip() if rc == 0 else f"unavailable (rc {rc})"
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _source_hash() -> str:
    """sha256 over the package sources: identifies the code measured when the copy has no .git."""
    h = hashlib.sha256()
    for path in sorted((REPO / "esasrec").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ install
def stage_install(args) -> dict:
    """pip-install the working tree (--no-deps, no index, no build isolation) into a scratch folder.

    The build runs on a copy of the sources, so the working tree gets no build/ or egg-info.
    Missing dependencies are installed from benchmarks/wheels/ when a wheel for them is there.
    """
    out: dict = {}
    missing = []
    for mod in ("tqdm", "numpy", "pandas"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    out["missing_dependencies"] = missing
    wheels = sorted(glob.glob(str(REPO / "benchmarks" / "wheels" / "*.whl")))
    if missing and not wheels:
        raise RuntimeError(f"missing {missing} and no wheel for them in benchmarks/wheels/")
    if missing:
        deps = Path(tempfile.mkdtemp(prefix="esasrec-deps-"))
        rc, text = _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                         "--target", str(deps), *wheels], 120)
        out["wheels"] = [Path(w).name for w in wheels]
        out["wheels_rc"] = rc
        out["wheels_log"] = text[-1500:]
        sys.path.insert(0, str(deps))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(deps), os.environ.get("PYTHONPATH")]))
    if args.no_install:
        out["package"] = "not installed (--no-install)"
        return out
    src = Path(tempfile.mkdtemp(prefix="esasrec-src-"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "esasrec", src / "esasrec", ignore=shutil.ignore_patterns("__pycache__"))
    target = Path(tempfile.mkdtemp(prefix="esasrec-site-"))
    rc, text = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
                     "--no-compile", "--target", str(target), str(src)], 180)
    out["pip_rc"] = rc
    out["pip_log"] = text[-1500:]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])))
    rc, text = _run([sys.executable, "-c", "import esasrec, esasrec.train; print(esasrec.__version__, esasrec.__file__)"],
                    60, env=env, cwd=tempfile.gettempdir())
    out["import_check"] = text.strip()[-500:]
    if rc != 0 or str(target) not in text:
        raise RuntimeError(f"the installed package does not import: {text.strip()[-500:]}")
    return out


# ------------------------------------------------------------------------------------- pytest
def stage_pytest(args, runner: Runner) -> dict:
    budget = int(min(args.pytest_timeout, runner.left() - 10))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # addopts cleared: pyproject's carry nbval options, and nbval is not on the GPU machine.
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-m", "gpu",
           "tests/test_gpu.py", "-v", "-rsxXf", "--tb=short"]
    t0 = time.perf_counter()
    rc, text = _run(cmd, budget, env=env, cwd=str(REPO))
    (runner.out / "pytest.txt").write_text(f"$ {' '.join(cmd)}\n(exit {rc}, {time.perf_counter() - t0:.1f} s)\n\n{text}")
    summary = next((line.strip("= ") for line in reversed(text.splitlines()) if " in " in line and "=" in line), "")
    failed = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"exit_code": rc, "summary": summary, "failed": failed[:30]}


# ------------------------------------------------------------------------------------- probes
def _bench(fn, reps: int, device) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after two warm-ups (CUDA events on a GPU)."""
    import torch

    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def stage_probes(args) -> dict:
    import torch

    device = torch.device(args.device)
    out: dict = {}
    n = 8192 if device.type == "cuda" else 512
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    s = _bench(lambda: a @ b, 10, device)
    out["matmul"] = {"n": n, "dtype": str(dtype), "tflops": round(2 * n**3 / s / 1e12, 1)}
    x = torch.randn(2**28 if device.type == "cuda" else 2**22, device=device)  # 1 GiB on the GPU
    y = torch.empty_like(x)
    s = _bench(lambda: y.copy_(x), 10, device)
    out["copy_gb_s"] = round(2 * x.numel() * 4 / s / 1e9, 1)  # bytes read + written
    del a, b, x, y
    out["sdpa_backends_enabled"] = {
        "flash": torch.backends.cuda.flash_sdp_enabled(), "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
        "math": torch.backends.cuda.math_sdp_enabled(),
        "cudnn": getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)(),
    }
    if device.type == "cuda":
        out["syncs"] = probe_syncs(device)
    return out


def probe_syncs(device) -> dict:
    """Which primitives make the host wait (``set_sync_debug_mode("error")``), run after a warm-up."""
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    lengths = torch.randint(1, 200, (128,), device=device, generator=g)  # (B,)
    mask = torch.arange(200, device=device) < lengths[:, None]  # (B, L) right-padded
    n_real = int(lengths.sum())
    emb = torch.nn.Embedding(27_000, 256, padding_idx=0).to(device)
    ids = torch.randint(0, 27_000, (n_real,), device=device, generator=g)
    table = torch.randn(27_000, 256, device=device, requires_grad=True)
    cands = torch.randint(1, 27_000, (4096, 257), device=device, generator=g)
    opt = torch.optim.Adam(emb.parameters(), fused=True)

    def packed_index():
        rows = torch.repeat_interleave(torch.arange(128, device=device), lengths, output_size=n_real)
        starts = lengths.cumsum(0) - lengths
        return rows * 200 + torch.arange(n_real, device=device) - starts[rows]

    cases = {
        "nonzero (Packing today)": lambda: mask.reshape(-1).nonzero(),
        "nonzero_static(size=N)": lambda: torch.nonzero_static(mask.reshape(-1), size=n_real),
        "repeat_interleave(output_size=N) index": packed_index,
        "embedding backward": lambda: emb(ids).float().sum().backward(),
        "table[candidates] backward": lambda: table[cands].sum().backward(),
        "randint negatives (device generator)": lambda: torch.randint(1, 27_000, (n_real, 256), device=device, generator=g),
        "randperm 138k (device generator)": lambda: torch.randperm(138_493, device=device, generator=g),
        "fused Adam step": lambda: opt.step(),
        "cross_entropy": lambda: torch.nn.functional.cross_entropy(
            torch.randn(4096, 257, device=device), torch.zeros(4096, dtype=torch.long, device=device)),
    }
    out = {}
    emb(ids).float().sum().backward()  # gives Adam gradients to step on
    for name, fn in cases.items():
        try:
            fn()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                fn()
                out[name] = "no sync"
            finally:
                torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
        except RuntimeError as err:
            out[name] = "SYNC" if "synchronizing" in str(err) else f"error: {str(err)[:200]}"
    reference = mask.reshape(-1).nonzero().squeeze(1)
    out["repeat_interleave_index_equals_nonzero"] = bool(torch.equal(packed_index(), reference))
    try:
        out["nonzero_static_equals_nonzero"] = bool(torch.equal(
            torch.nonzero_static(mask.reshape(-1), size=n_real).squeeze(1), reference))
    except RuntimeError as err:
        out["nonzero_static_equals_nonzero"] = f"error: {str(err)[:200]}"
    return out


# ------------------------------------------------------------------------------ synthetic data
def synthetic_interactions(users, items, interactions, min_len, sigma, zipf, seed=0, **_):
    """A frame ``user_id, item_id, timestamp`` with the given totals, and each user's length.

    Lengths: ``min_len`` plus a log-normal share of the rest (ML-20M: mean 144, median ~80, a
    tail to several thousand). Items: popularity ~ 1 / (rank + 10) ** zipf, every item at least
    once, so the catalogue has exactly ``items`` items. Timestamps increase within a user.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    raw = rng.lognormal(0.0, sigma, users)
    extra_total = interactions - min_len * users
    extra = np.floor(raw / raw.sum() * extra_total).astype(np.int64)
    extra[rng.choice(users, extra_total - int(extra.sum()), replace=False)] += 1
    lengths = min_len + extra  # (U,), sums to `interactions`
    p = 1.0 / (np.arange(1, items + 1) + 10.0) ** zipf
    item_ids = rng.choice(items, size=interactions, p=p / p.sum())
    item_ids[rng.choice(interactions, items, replace=False)] = rng.permutation(items)
    frame = pd.DataFrame({
        "user_id": np.repeat(np.arange(users), lengths),
        "item_id": item_ids,
        "timestamp": np.arange(interactions, dtype=np.int64),
    })
    return frame, lengths


def data_stats(lengths: np.ndarray, max_len: int, batch_size: int) -> dict:
    """What an epoch trains on: users with >= 2 items, each its last max_len + 1 items."""
    kept = lengths[lengths >= 2]
    tokens = np.minimum(kept, max_len + 1) - 1  # real input positions per sequence
    return {
        "users": int(len(lengths)), "interactions": int(lengths.sum()),
        "length_mean": round(float(lengths.mean()), 1), "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()), "sequences": int(len(kept)), "tokens": int(tokens.sum()),
        "causal_keys": int((tokens * (tokens + 1) // 2).sum()),  # sum over tokens of (t + 1)
        "tokens_per_batch": round(float(tokens.mean() * batch_size), 1),
        "batches": int(-(-len(kept) // batch_size)),
    }


def model_flops(mc, stats: dict) -> dict:
    """Analytic training FLOPs of one epoch (forward + backward), embeddings left out."""
    d, m, k = mc.d_model, mc.ffn_mult, mc.n_negatives
    if mc.block == "ligr":
        per_token_block = 4 * d * d + 2 * d * d + 3 * m * d * d  # attention projections, gates, SwiGLU
    else:
        per_token_block = 4 * d * d + 2 * m * d * d  # attention projections, ReLU FFN
    macs = (mc.n_blocks * (stats["tokens"] * per_token_block + 2 * d * stats["causal_keys"])
            + stats["tokens"] * (1 + k) * d)
    return {"flops_per_epoch": 6 * macs, "flops_per_token": round(6 * macs / stats["tokens"]),
            "attention_share": round(mc.n_blocks * 2 * d * stats["causal_keys"] / macs, 4),
            "loss_share": round(stats["tokens"] * (1 + k) * d / macs, 4)}


class Datasets:
    """Synthetic frames, generated once per shape and shared by the stages."""

    def __init__(self, args):
        self.args = args
        self.cache: dict = {}

    def get(self, key: str):
        if key not in self.cache:
            shape = (TINY_SHAPES if self.args.tiny else SHAPES)[key]
            t0 = time.perf_counter()
            frame, lengths = synthetic_interactions(**shape)
            self.cache[key] = (shape, frame, lengths, time.perf_counter() - t0)
        return self.cache[key]


# ---------------------------------------------------------------------------------- throughput
def configs(args, dataset: str, compile_loss: bool, epochs: int):
    from esasrec.presets import preset

    overrides = dict(TINY_MODEL) if args.tiny else {}
    return preset("esasrec", dataset, "time", epochs=epochs, device=args.device, compile=compile_loss,
                  progress=False, **overrides)


def stage_fit(args, data: Datasets, key: str, compile_loss: bool, rank_chunks: tuple[int, ...]) -> dict:
    """Train ``epochs`` epochs through SequentialRecommender.fit, then time recommend() for everyone."""
    import torch

    from esasrec.train import SequentialRecommender

    shape, frame, lengths, gen_s = data.get(key)
    epochs = args.epochs_compiled if compile_loss else args.epochs_eager
    mc, tc = configs(args, shape["dataset"], compile_loss, epochs)
    stats = data_stats(lengths, mc.max_len, tc.batch_size)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        rec = SequentialRecommender(mc, tc).fit(frame)
        fit_s = time.perf_counter() - t0
    epoch_s = [h["seconds"] for h in rec.history]
    steady = epoch_s[1:] or epoch_s  # the first epoch carries warm-up (and compilation)
    per_epoch = float(np.median(steady))
    flops = model_flops(mc, stats)
    result = {
        "data": {**stats, "generate_s": round(gen_s, 1)},
        "model": {k: getattr(mc, k) for k in ("d_model", "n_blocks", "n_heads", "max_len", "ffn_mult", "n_negatives",
                                               "dropout", "loss", "block")},
        "train": {"batch_size": tc.batch_size, "epochs": epochs, "compile": compile_loss, "precision": tc.precision},
        "epoch_seconds": [round(s, 3) for s in epoch_s],
        "seconds_per_epoch": round(per_epoch, 3),
        "first_epoch_overhead_s": round(epoch_s[0] - per_epoch, 2),
        "fit_seconds": round(fit_s, 2),
        "fit_host_prep_s": round(fit_s - sum(epoch_s), 2),  # histories, id maps, copies to the device
        "sequences_per_s": round(stats["sequences"] / per_epoch, 1),
        "tokens_per_s": round(stats["tokens"] / per_epoch, 1),
        "ms_per_step": round(1e3 * per_epoch / stats["batches"], 3),
        "final_loss": rec.history[-1]["loss"],
        **flops,
        "model_tflops_per_s": round(flops["flops_per_epoch"] / per_epoch / 1e12, 2),
        "share_of_790_tflops": round(flops["flops_per_epoch"] / per_epoch / 1e12 / PEAK_BF16_TFLOPS, 4),
        "warnings": sorted({str(w.message)[:300] for w in caught})[:10],
        "compile_fell_back": any("torch.compile failed" in str(w.message) for w in caught),
    }
    if cuda:
        result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    ranking = {}
    for chunk in rank_chunks:
        rec.train_config.eval_batch_size = chunk
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        recs = rec.recommend(k=10)
        seconds = time.perf_counter() - t0
        ranking[f"chunk_{chunk}"] = {"seconds": round(seconds, 2), "users": int(recs["user_id"].nunique()),
                                     "users_per_s": round(recs["user_id"].nunique() / seconds, 1),
                                     "rows": int(len(recs))}
        if cuda:
            ranking[f"chunk_{chunk}"]["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["recommend_top10_all_users"] = ranking
    del rec
    return result


# ------------------------------------------------------------------------------------- profile
def stage_profile(args, data: Datasets, out_dir: Path) -> dict:
    """A short fit on a slice of the ML-20M shape under the profiler, then under sync recording."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from esasrec.train import SequentialRecommender

    shape, frame, lengths, _ = data.get("ml20m")
    n_users = 4096 if not args.tiny else 200
    part = frame[frame["user_id"] < n_users]
    mc, tc = configs(args, shape["dataset"], False, 1)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        SequentialRecommender(mc, tc).fit(part)  # warm-up: cuBLAS handles, kernels loaded
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        SequentialRecommender(mc, tc).fit(part)
    n_steps = -(-n_users // tc.batch_size)
    events = prof.key_averages()
    sort_key = "cuda_time_total" if cuda else "cpu_time_total"
    try:
        table = events.table(sort_by="device_time_total" if cuda else sort_key, row_limit=40)
    except Exception:  # noqa: BLE001 - older profilers name the column cuda_time_total
        table = events.table(sort_by=sort_key, row_limit=40)
    (out_dir / "profile.txt").write_text(f"fit of {n_users} users ({n_steps} steps), eager loss, {args.device}\n\n{table}\n")

    def device_us(e):
        return float(getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0.0)) or 0.0)

    words = ("flash", "fmha", "attention", "attn", "cudnn", "efficient", "sdp")
    attention = sorted(({"name": e.key[:160], "count": e.count, "device_ms": round(device_us(e) / 1e3, 2)}
                        for e in events if any(w in e.key.lower() for w in words)), key=lambda r: -r["device_ms"])
    host = {e.key: e.count for e in events
            if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "aten::nonzero",
                         "aten::_local_scalar_dense", "aten::item", "cudaLaunchKernel", "cuLaunchKernel")}
    kernels = [e for e in events if getattr(getattr(e, "device_type", None), "name", "") == "CUDA"]
    total_device_ms = round(sum(device_us(e) for e in kernels) / 1e3, 1) if cuda else None
    out = {"users": n_users, "steps": n_steps, "attention_ops_and_kernels": attention[:15],
           "host_calls_whole_fit": host,  # set-up included: per step is an upper bound
           "host_calls_per_step": {k: round(v / n_steps, 2) for k, v in host.items()},
           "device_kernel_ms_total": total_device_ms}
    if cuda:
        out["syncs_in_training_epoch"] = sync_audit(mc, tc, part, n_steps)
    return out


def sync_audit(mc, tc, frame, n_steps: int) -> dict:
    """Sync sites inside ``_train_epoch`` (tests/test_gpu.py's recorder), with counts per step."""
    from collections import Counter

    sys.path.insert(0, str(REPO / "tests"))
    import test_gpu

    from esasrec.train import SequentialRecommender

    with test_gpu.record_syncs() as stacks:
        SequentialRecommender(mc, tc).fit(frame)
    counts = Counter(test_gpu.sync_site(s) for s in stacks if test_gpu.in_training_epoch(s))
    return {site: {"count": n, "per_step": round(n / n_steps, 3)} for site, n in counts.most_common()}


# ---------------------------------------------------------------------------------------- loss
def stage_loss(args, data: Datasets) -> dict:
    """Forward + backward of the sampled-softmax loss on one batch, four ways, per dataset shape."""
    import torch
    import torch.nn.functional as F

    from esasrec.losses import GATHER_RATIO, loss_with_negatives

    device = torch.device(args.device)
    compiled = torch.compile(loss_with_negatives, dynamic=True)
    out = {}
    for key in ("ml20m", "beauty"):
        shape, _, lengths, _ = data.get(key)
        mc, tc = configs(args, shape["dataset"], False, 1)
        n = int(round(data_stats(lengths, mc.max_len, tc.batch_size)["tokens_per_batch"]))
        n_items, d, k = shape["items"], mc.d_model, mc.n_negatives
        g = torch.Generator(device=device).manual_seed(0)
        # Logits with a spread of about 1, as after some training (Xavier init gives ~0.01).
        table = torch.nn.Parameter(torch.randn(n_items + 1, d, device=device, generator=g) / d**0.5)  # (I + 1, D)
        h = torch.randn(n, d, device=device, generator=g).requires_grad_()  # (N, D) fp32, as the blocks return it
        targets = torch.randint(1, n_items + 1, (n,), device=device, generator=g)
        negatives = torch.randint(1, n_items + 1, (n, k), device=device, generator=g)
        cands = torch.cat([targets[:, None], negatives], 1)
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        bf16 = device.type == "cuda"

        def package():
            return loss_with_negatives("sampled_softmax", h, table, targets, negatives)

        def gather_bf16_table():
            t = table.to(torch.bfloat16) if bf16 else table
            return F.cross_entropy(torch.einsum("nd,ncd->nc", h.to(t.dtype), t[cands]).float(), zeros)

        def matmul_then_gather():
            return F.cross_entropy((h @ table.T).gather(1, cands).float(), zeros)

        def with_compile():
            return compiled("sampled_softmax", h, table, targets, negatives)

        variants = {"package_eager": package, "gather_bf16_table": gather_bf16_table,
                    "matmul_then_gather": matmul_then_gather}
        if args.compile != "off":
            variants["compiled"] = with_compile
        rows = {"N": n, "I": n_items, "D": d, "k": k,
                "package_eager_path": "gather" if n_items + 1 > GATHER_RATIO * (k + 1) else "matmul_then_gather"}
        for name, fn in variants.items():
            def step(fn=fn):
                h.grad = table.grad = None
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = fn()
                loss.backward()
                return loss

            try:
                t0 = time.perf_counter()
                value = float(step().detach())  # the first call compiles for "compiled"
                first_s = time.perf_counter() - t0
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                seconds = _bench(step, 10 if device.type == "cuda" else 3, device)
                rows[name] = {"ms": round(seconds * 1e3, 3), "loss": round(value, 5), "first_call_s": round(first_s, 2)}
                if device.type == "cuda":
                    rows[name]["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            except Exception as err:  # noqa: BLE001 - one variant failing must not hide the others
                rows[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        losses = [r["loss"] for r in rows.values() if isinstance(r, dict) and "loss" in r]
        rows["max_loss_spread"] = round(max(losses) - min(losses), 6) if losses else None
        out[key] = rows
        del table, h
        _free_memory()
    return out


# ------------------------------------------------------------------------------------ markdown
def render_markdown(results: dict) -> str:
    st = results.get("stages", {})
    env = st.get("provenance", {}).get("result", {})
    lines = ["# esasrec GPU check", ""]
    lines += [f"- {k}: {env.get(k)}" for k in ("date_utc", "gpu", "gpu_capability", "gpu_memory_gib", "nvidia_smi",
                                                "torch", "torch_cuda", "cudnn", "triton", "python", "cpu",
                                                "cpu_count", "git_commit", "source_sha256", "tiny") if k in env]
    lines += [f"- command: `{results.get('command')}`", f"- elapsed: {results.get('elapsed_s')} s", ""]
    lines += ["## Stages", "", "| stage | status | seconds | note |", "|---|---|---|---|"]
    for name, rec in st.items():
        note = rec.get("error") or rec.get("reason") or ""
        if name == "pytest" and "result" in rec:
            note = rec["result"].get("summary", "")
        lines.append(f"| {name} | {rec.get('status')} | {rec.get('seconds', '')} | {str(note)[:160].replace('|', '/')} |")
    fits = {n: r["result"] for n, r in st.items() if n.startswith(("ml20m", "beauty")) and "result" in r}
    if fits:
        lines += ["", "## Training throughput (synthetic data, SequentialRecommender.fit)", "",
                  "| run | s/epoch | ms/step | sequences/s | tokens/s | model TFLOP/s | of 790 | peak GiB | epochs (s) | top-10 all users (s, by chunk) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in fits.items():
            ranks = ", ".join(f"{k.split('_')[1]}: {v['seconds']}" for k, v in r.get("recommend_top10_all_users", {}).items())
            lines.append(f"| {name} | {r['seconds_per_epoch']} | {r['ms_per_step']} | {r['sequences_per_s']:,.0f} | "
                         f"{r['tokens_per_s']:,.0f} | {r['model_tflops_per_s']} | {100 * r['share_of_790_tflops']:.1f}% | "
                         f"{r.get('peak_gpu_gib', '-')} | {r['epoch_seconds']} | {ranks} |")
        for name, r in fits.items():
            d = r["data"]
            lines.append(f"\n{name}: {d['users']:,} users, {d['interactions']:,} interactions (mean length "
                         f"{d['length_mean']}, median {d['length_median']}, max {d['length_max']}), "
                         f"{d['tokens']:,} real tokens per epoch in {d['batches']} batches; "
                         f"{r['flops_per_token']:,} FLOP per token (attention {100 * r['attention_share']:.1f}%, "
                         f"loss {100 * r['loss_share']:.1f}%); host prep in fit {r['fit_host_prep_s']} s; "
                         f"compile fell back: {r['compile_fell_back']}")
    loss = st.get("loss", {}).get("result")
    if loss:
        lines += ["", "## Sampled-softmax loss alone, forward + backward of one batch (ms)", "",
                  "| shape | N x I x D, k | package path | package_eager | gather_bf16_table | matmul_then_gather | compiled | loss spread |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, r in loss.items():
            cells = [str(r.get(v, {}).get("ms", r.get(v, {}).get("error", "-")))[:40]
                     for v in ("package_eager", "gather_bf16_table", "matmul_then_gather", "compiled")]
            lines.append(f"| {key} | {r['N']} x {r['I']} x {r['D']}, {r['k']} | {r['package_eager_path']} | "
                         + " | ".join(cells) + f" | {r.get('max_loss_spread')} |")
    probes = st.get("probes", {}).get("result")
    if probes:
        lines += ["", "## Probes", "", f"- bf16 matmul {probes['matmul']}, copy {probes['copy_gb_s']} GB/s",
                  f"- SDPA backends enabled: {probes['sdpa_backends_enabled']}"]
        for name, v in probes.get("syncs", {}).items():
            lines.append(f"- {name}: {v}")
    prof = st.get("profile", {}).get("result")
    if prof:
        lines += ["", "## Profile of a short fit", "", f"- host calls over the whole fit / steps (set-up included): {prof['host_calls_per_step']}"]
        lines += [f"- attention: {a['name']} x{a['count']} ({a['device_ms']} ms)" for a in prof["attention_ops_and_kernels"]]
        for site, v in prof.get("syncs_in_training_epoch", {}).items():
            lines.append(f"- sync in training epoch: `{site}` x{v['count']} ({v['per_step']} per step)")
    lines += ["", "RecTools: not run (pins numpy<2 / pandas<3; the GPU machine has numpy 2 and no network).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", help="folder for results.json, results.md, pytest.txt, profile.txt")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes and model: the plumbing only")
    p.add_argument("--compile", choices=("off", "on", "both"), default=None,
                   help="which fits to run: compiled loss, eager, or both (default: both; off with --tiny)")
    p.add_argument("--deadline", type=float, default=450.0, help="seconds from start after which no stage runs")
    p.add_argument("--epochs-compiled", type=int, default=None, help="epochs of a compiled fit (default 3; tiny 2)")
    p.add_argument("--epochs-eager", type=int, default=None, help="epochs of an eager fit (default 2)")
    p.add_argument("--pytest-timeout", type=float, default=150.0, help="seconds for the CUDA tests")
    p.add_argument("--no-install", action="store_true", help="skip the pip install stage")
    p.add_argument("--skip", nargs="*", default=[], help="stage names to skip")
    args = p.parse_args(argv)
    args.compile = args.compile or ("off" if args.tiny else "both")
    args.epochs_compiled = args.epochs_compiled or (2 if args.tiny else 3)
    args.epochs_eager = args.epochs_eager or 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runner = Runner(args)
    log(f"output: {runner.out}  device: {args.device}  tiny: {args.tiny}  deadline: {args.deadline:.0f} s")
    # The install stage runs before anything imports esasrec: a missing dependency is installed first.
    runner.stage("install", lambda: stage_install(args), 10)
    sys.path.insert(0, str(REPO))
    runner.stage("provenance", lambda: provenance(args), 1)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        runner.results["fatal"] = "--device cuda but CUDA is not available"
        runner.write()
        log(runner.results["fatal"])
        return 2
    tiny = args.tiny
    if tiny and args.device == "cpu":
        torch.set_num_threads(1)  # tiny tensors on a shared CPU: extra intra-op threads only spin
    runner.stage("pytest", lambda: stage_pytest(args, runner), 20 if tiny else 60)
    runner.stage("probes", lambda: stage_probes(args), 5 if tiny else 15)
    data = Datasets(args)
    big_chunks = (256, 4096) if not tiny else (256, 1024)
    # Most informative first: the preset's own (compiled) ML-20M run, then the cheap probes of
    # kernels and syncs, Beauty, the loss alone, and last the eager ML-20M run.
    compiled, eager = args.compile in ("on", "both"), args.compile in ("off", "both")
    plan = []
    if compiled:
        plan.append(("ml20m-compiled", lambda: stage_fit(args, data, "ml20m", True, big_chunks), 5 if tiny else 120))
    plan.append(("profile", lambda: stage_profile(args, data, runner.out), 5 if tiny else 30))
    if eager:
        plan.append(("beauty-eager", lambda: stage_fit(args, data, "beauty", False, (256, 4096)), 3 if tiny else 20))
    if compiled:
        plan.append(("beauty-compiled", lambda: stage_fit(args, data, "beauty", True, ()), 3 if tiny else 45))
    plan.append(("loss", lambda: stage_loss(args, data), 5 if tiny else 45))
    if eager:
        plan.append(("ml20m-eager", lambda: stage_fit(args, data, "ml20m", False, () if compiled else big_chunks),
                     5 if tiny else 90))
    for name, fn, expect in plan:
        runner.stage(name, fn, expect)
    runner.results["stages"]["rectools"] = {"status": "skipped", "reason": (
        "RecTools 0.19 pins numpy<2 and pandas<3; the GPU image has numpy 2 and no network, so it would need a "
        "second stack of wheels (rectools, implicit, numpy, pandas, ...): not trivial")}
    runner.write()
    bad = [n for n, r in runner.results["stages"].items() if r.get("status") in ("error", "timeout")]
    log(f"done in {elapsed():.0f} s; stages with errors: {bad or 'none'}")
    print((runner.out / "results.md").read_text())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
