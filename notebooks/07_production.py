# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 7. Taking it to production
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/esasrec/esasrec/blob/main/notebooks/07_production.ipynb)
#
# The eSASRec paper (Tikhonovich et al., RecSys 2025, arXiv 2508.06450) is subtitled "enhancing
# Transformer-based recommendations *in a modular fashion*": each of its changes to SASRec is a
# separate, swappable module, so a team running SASRec today does not have to replace its
# system in one step. This chapter turns that into a checklist:
#
# 1. adopt in stages, the loss first and then the layers, and know what each stage bought;
# 2. save a trained model, load it in a serving process and recommend for users and for
#    histories it has never seen;
# 3. measure what serving costs: latency and memory per batch of users;
# 4. see how fast training is against RecTools, and which choices make it so;
# 5. decide what to watch when the model meets real users in an A/B test, and how the offline
#    numbers of chapter 6 relate to it.

# %%
# On Colab, install the package first (elsewhere this cell does nothing).
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "esasrec[plot] @ git+https://github.com/esasrec/esasrec"], check=True)

# %%
import time
from esasrec.provenance import notebook_mode
STARTED = time.time()
FAST = notebook_mode() == "fast"          # ESASREC_FAST=1: tiny settings on the bundled data (CI)
DATASET = "movielens-small" if FAST else "beauty"
STAGES = ["sasrec-bce", "sasrec-ss", "esasrec"]  # SASRec -> + sampled softmax -> + LiGR layers
FAST_RUN_ARGS = ["--epochs", "1", "--d-model", "32", "--max-len", "10", "--no-compile", "--quiet"]  # fast mode only
SERVE_EPOCHS = 4                          # full mode: a stand-in model if no saved Beauty model is present
BATCH_SIZES = [1, 64, 1024]               # users per recommendation call
REPEATS = 3 if FAST else 7                # timed calls per batch size (the median is reported)
SEED = 0

# %%
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path
from unittest import mock
import warnings

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

# Without ipywidgets, importing tqdm.auto (esasrec.train) warns "IProgress not found"; training runs
# here with progress=False, so the warning is noise.
warnings.filterwarnings("ignore", message="IProgress not found")

from esasrec import cli
from esasrec.data import load_dataset
from esasrec.presets import preset
from esasrec.split import leave_one_out
from esasrec.train import SequentialRecommender

torch.manual_seed(SEED)
sns.set_theme(style="whitegrid")
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. Adopt in stages: the loss first, then the layers
#
# The two swaps differ in what they touch:
#
# - **The loss** (BCE with one negative → sampled softmax with 256 negatives) changes only the
#   training code. The model, its parameters, its inputs and the serving path stay exactly the
#   same, so the first A/B test isolates one thing and cannot break serving.
# - **The layers** (SASRec blocks → LiGR blocks) change the architecture: more parameters (a
#   SwiGLU of width $4d$ and two gate matrices per block), new checkpoints, a new latency profile.
#
# So the natural order is `sasrec-bce` → `sasrec-ss` → `esasrec`. What did each step buy in this
# book's measurements? The trainings are the command-line runs of chapter 6, read from their
# `metrics.json` files in `results/` (missing runs are marked "not run yet"). In fast
# mode the same command runs for one epoch on the bundled MovieLens sample into a temporary
# folder.

# %%
if FAST:
    fast_results = tempfile.TemporaryDirectory(prefix="esasrec-results-")  # deleted when Python exits
    RESULTS = Path(fast_results.name)
    for protocol in ("time", "loo"):
        for name in STAGES:
            args = ["train", "--dataset", DATASET, "--protocol", protocol, "--test-days", "60",
                    "--preset", name, "--out", str(RESULTS / f"{DATASET}-{protocol}-{name}"), *FAST_RUN_ARGS]
            # cmd_train records the command from sys.argv, so give it the one we are running.
            with mock.patch.object(sys, "argv", ["esasrec", *args]), contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(args) == 0, f"training {name} ({protocol}) failed"
else:
    RESULTS = next((d / "results" for d in (Path.cwd(), Path.cwd().parent) if (d / "results").is_dir()),
                   Path("results"))
print("results folder:", RESULTS if FAST else RESULTS.resolve())

# %%
SHOWN = {"ndcg@10": "NDCG@10", "hr@10": "HR@10", "coverage@10": "Coverage@10", "arp@10": "ARP@10",
         "debiased_ndcg@10": "debiased NDCG@10"}
STAGE_LABEL = {"sasrec-bce": "0. SASRec (BCE, 1 negative)", "sasrec-ss": "1. + sampled softmax",
               "esasrec": "2. + LiGR layers = eSASRec"}


# Where a run's folder may be, tried in order: the equal-budget grid the time-split ablation was
# trained as (`--out results/grid-PROTOCOL/PRESET`), then one folder per run
# (`--out results/DATASET-PROTOCOL-PRESET`). A file counts only if it is that dataset, protocol
# and preset.
RUN_FOLDERS = ["grid-{protocol}/{preset}", "{dataset}-{protocol}-{preset}"]


def read_run(protocol: str, name: str) -> dict | None:
    """The metrics.json of one run, with its folder under ``folder``; None when it has not been run yet."""
    for pattern in RUN_FOLDERS:
        folder = RESULTS / pattern.format(dataset=DATASET, protocol=protocol, preset=name)
        if (folder / "metrics.json").is_file():
            run = json.loads((folder / "metrics.json").read_text())
            if (run.get("dataset"), run.get("protocol"), run.get("preset")) == (DATASET, protocol, name):
                return run | {"folder": folder}
    return None


def stage_table(protocol: str) -> pd.DataFrame:
    """Metrics per stage and each stage's change over the previous one (NaN where a run is missing)."""
    runs = {name: read_run(protocol, name) for name in STAGES}
    table = pd.DataFrame({STAGE_LABEL[name]: {label: run["metrics"][m] if run else np.nan for m, label in SHOWN.items()}
                          for name, run in runs.items()}).T
    table["Δ NDCG@10 vs previous"] = table["NDCG@10"].diff()
    table["Δ NDCG@10 relative"] = table["NDCG@10"].pct_change(fill_method=None)
    table["Δ Coverage@10 relative"] = table["Coverage@10"].pct_change(fill_method=None)
    table.insert(0, "run", ["ok" if run else "not run yet" for run in runs.values()])
    table["epochs run"] = [run["epochs_run"] if run else np.nan for run in runs.values()]
    return table


stages = {protocol: stage_table(protocol) for protocol in ("time", "loo")}
for protocol, table in stages.items():
    print(f"{DATASET}, {protocol} split")
    shown = table.drop(columns="Δ NDCG@10 vs previous").round(4)
    for column in ("Δ NDCG@10 relative", "Δ Coverage@10 relative"):
        shown[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{v:+.1%}")
    shown["epochs run"] = table["epochs run"].astype("Int64")
    display(shown)

# %%
plot_data = pd.concat([t["NDCG@10"].rename_axis("stage").reset_index().assign(protocol=p) for p, t in stages.items()])
fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
sns.barplot(data=plot_data, x="protocol", y="NDCG@10", hue="stage", ax=ax)
ax.set(title=f"What each stage bought, {DATASET}", xlabel="protocol", ylabel="test NDCG@10")
ax.legend(fontsize=8)
plt.show()
plt.close(fig)


# %%
def step(protocol: str, row: int) -> str:
    """The relative NDCG@10 change of stage ``row`` over the stage before it, as text."""
    table = stages[protocol]
    if (table["run"].iloc[[row - 1, row]] != "ok").any():
        return "not run yet"
    value = table["Δ NDCG@10 relative"].iloc[row]
    return "n/a (zero NDCG@10 before)" if not np.isfinite(value) else f"{value:+.1%}"


for protocol in ("time", "loo"):
    print(f"{protocol:>4} split: the loss changed NDCG@10 by {step(protocol, 1)}, the layers by {step(protocol, 2)}")
complete = {p: t["NDCG@10"].set_axis(STAGES) for p, t in stages.items() if (t["run"] == "ok").all()}
if len(complete) == 2:
    order = {p: " > ".join(ndcg.sort_values(ascending=False).index) for p, ndcg in complete.items()}
    print(f"stages ordered by NDCG@10: time split {order['time']}; leave-one-out {order['loo']}"
          f" ({'the same' if order['time'] == order['loo'] else 'a different'} order)")
    layers_helped = [p for p, ndcg in complete.items() if ndcg["esasrec"] > ndcg["sasrec-ss"]]
    print("the layer step raised NDCG@10 on:", ", ".join(layers_helped) or "neither protocol, at these budgets")

# %% [markdown]
# The lines above are the answer this book's runs give: the relative NDCG@10 gained at each stage
# on each protocol, and whether the layer step paid off (the stage tables also show each run's
# epoch budget; chapter 6 discusses runs that were still improving when it ran out). In the paper the loss swap is the larger and more reliable of the two
# (sampled softmax beats one-negative BCE by 8–72% NDCG@10 on its time-split datasets), while the
# layer swap adds 2–71% and matters most for deep stacks, where SASRec layers stop training
# stably (REFERENCE §4).
# Whatever the sizes on your data, the order is worth keeping: the loss is a training-only change
# that can ship on the existing serving stack, and its gain tells you how much headroom the
# second, more invasive step has to justify.
#
# ## 2. Save, load and recommend for a new history
#
# `SequentialRecommender.save` writes one file with everything serving needs: both configs, the
# weights, the raw ↔ internal id mappings and each known user's recent history (so `recommend`
# works for known users without the training data). `load` restores it onto any device. We use
# the leave-one-out eSASRec of chapter 6 if its `model.pt` is present; model files are not
# committed, so on a fresh checkout the notebook trains a stand-in for `SERVE_EPOCHS` epochs.

# %%
df = load_dataset(DATASET)
train, test, _ = leave_one_out(df)
loo_esasrec = read_run("loo", "esasrec")
checkpoint = loo_esasrec["folder"] / "model.pt" if loo_esasrec else None
if checkpoint is not None and checkpoint.is_file():
    rec = SequentialRecommender.load(checkpoint)
    print(f"loaded {checkpoint.relative_to(RESULTS)} (best epoch {rec.best_epoch})")
else:
    mc, tc = preset("esasrec", DATASET, "loo", epochs=SERVE_EPOCHS, compile=True, seed=SEED, progress=False)
    rec = SequentialRecommender(mc, tc).fit(train)
    print(f"no saved model: trained a stand-in eSASRec for {SERVE_EPOCHS} epochs in {rec.train_seconds:.0f} s")
print(rec.model_config)
print(f"{sum(p.numel() for p in rec.model.parameters()):,} parameters; "
      f"{len(rec.items):,} items, {len(rec.histories.users):,} users with a history")

# %%
with tempfile.TemporaryDirectory() as folder:
    path = rec.save(Path(folder) / "esasrec.pt")
    size_mb = path.stat().st_size / 2**20
    served = SequentialRecommender.load(path, device="cpu")
some_users = rec.histories.users.to_list()[:50]
pd.testing.assert_frame_equal(rec.recommend(some_users), served.recommend(some_users))
print(f"checkpoint: {size_mb:.1f} MB; the loaded model recommends exactly what the trained one does")

# %% [markdown]
# A user who arrives after training has no row in the model, but a Transformer recommender
# does not need one: the user *is* their history. `recommend_for_history` takes raw item ids,
# oldest first, drops ids the model does not know, keeps the last `max_len`, and scores the
# catalogue. Given a known user's stored window of items, it must score exactly as `recommend`
# does for that user, which makes a useful serving test. (With `exclude_seen=False` on both:
# `recommend` excludes everything the user ever saw, `recommend_for_history` only the items it
# is given, and a long history is more than its last `max_len` items.)

# %%
row = 0
user = served.histories.users.to_list()[row]
items = served.items.decode(served.histories.seqs[row][served.histories.seqs[row] > 0]).tolist()
from_history = served.recommend_for_history(items, k=10, exclude_seen=False)
assert from_history["item_id"].tolist() == served.recommend([user], k=10, exclude_seen=False)["item_id"].tolist()
print(f"user {user}: recommend_for_history(their last {len(items)} items) == recommend([user])")

# %%
new_history = items[-3:] + ["an-item-nobody-has-seen"]
print("a new visitor's history (raw ids, oldest first):", new_history)
served.recommend_for_history(new_history, k=10).round(4)

# %% [markdown]
# The unknown id was ignored. Unlike a matrix-factorisation model, nothing has to be retrained for
# a new user; new *items* are another matter: an item gets an embedding only in training, so
# fresh catalogue items need a retrain (or a content-based fallback) before they can be
# recommended.
#
# ## 3. Latency and memory per batch
#
# Two ways to serve, timed for batches of 1, 64 and 1,024 users:
#
# - `rec.recommend(users)`: the full public path: id lookup, histories, scoring in chunks of
#   `eval_batch_size` users, exclusion of seen items, a data frame of raw ids;
# - `model.recommend(histories)`: the bare model on a tensor of left-padded internal ids: one
#   forward pass, one `(B, I + 1)` score matrix, seen items masked, `topk`.
#
# Scoring the whole catalogue is a `(B, D) × (D, I)` product, so its cost and the size of the
# score matrix grow with both the batch and the catalogue. Latency is the median of `REPEATS`
# calls after one warm-up. Serving runs on the CPU here. Peak memory is measured in a fresh
# Python process per serving path: the growth of that process's peak resident memory over the
# loaded model, so nothing else this notebook holds can hide it. Batches go from small to large,
# so each reading is the peak of that batch size.

# %%
# Requests for the known users in turn (repeating them if there are fewer than the largest batch).
request_rows = torch.arange(max(BATCH_SIZES)) % len(served.histories.users)
users = [served.histories.users.to_list()[i] for i in request_rows]
seqs = served.histories.seqs[request_rows].to(served.device)


def timed(fn) -> float:
    """Median seconds of REPEATS calls of fn(), after one warm-up call."""
    fn()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


latency = []
for batch in BATCH_SIZES:
    latency.append({"method": "rec.recommend", "batch": batch,
                    "seconds": timed(lambda: served.recommend(users[:batch]))})
    latency.append({"method": "model.recommend", "batch": batch,
                    "seconds": timed(lambda: served.model.recommend(seqs[:batch]))})
latency = pd.DataFrame(latency)

# %%
PEAK_MEMORY_PROBE = r"""
import json, resource, sys, torch
from esasrec.train import SequentialRecommender
path, method, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rec = SequentialRecommender.load(path, device="cpu")
rows = torch.arange(max(sizes)) % len(rec.histories.users)
users, seqs = [rec.histories.users.to_list()[i] for i in rows], rec.histories.seqs[rows]
run = {"rec.recommend": lambda b: rec.recommend(users[:b]), "model.recommend": lambda b: rec.model.recommend(seqs[:b])}[method]
def peak_mb():
    # Linux: VmHWM, this process's own peak (ru_maxrss would include the parent's size at fork).
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**10
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
run(1)
base = peak_mb()
growth = {}
for b in sorted(sizes):
    run(b)
    growth[b] = peak_mb() - base
print(json.dumps(growth))
"""

with tempfile.TemporaryDirectory() as folder:
    path = served.save(Path(folder) / "esasrec.pt")
    peaks = {}
    for method in ("rec.recommend", "model.recommend"):
        result = subprocess.run([sys.executable, "-c", PEAK_MEMORY_PROBE, str(path), method, json.dumps(BATCH_SIZES)],
                                capture_output=True, text=True, check=True)
        peaks.update({(method, int(b)): mb for b, mb in json.loads(result.stdout.strip().splitlines()[-1]).items()})

n_scores = served.model_config.n_items + 1
chunk = served.train_config.eval_batch_size
latency["ms per batch"] = latency["seconds"] * 1e3
latency["ms per user"] = latency["ms per batch"] / latency["batch"]
latency["users per second"] = latency["batch"] / latency["seconds"]
latency["peak memory growth, MB (CPU)"] = [peaks[(m, b)] for m, b in zip(latency["method"], latency["batch"])]
latency["score matrix, MB"] = [min(b, chunk if m == "rec.recommend" else b) * n_scores * 4 / 2**20
                               for m, b in zip(latency["method"], latency["batch"])]
print(f"device: {served.device}, CPU threads: {torch.get_num_threads()}, catalogue: {n_scores - 1:,} items")
per_user = latency.pivot(index="batch", columns="method", values="ms per user")
for method in per_user:
    print(f"{method}: a user costs {per_user[method].iloc[-1] / per_user[method].iloc[0]:.0%} as much in a batch "
          f"of {per_user.index[-1]:,} as alone")
latency.drop(columns="seconds").round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=90)
sns.lineplot(data=latency, x="batch", y="ms per batch", hue="method", marker="o", ax=axes[0])
sns.lineplot(data=latency, x="batch", y="ms per user", hue="method", marker="o", ax=axes[1])
for ax, title in zip(axes, ("latency of one call", "latency per user")):
    ax.set(xscale="log", yscale="log", xlabel="users per call", title=title, xticks=BATCH_SIZES)
    ax.xaxis.set_major_formatter(ticker.StrMethodFormatter("{x:g}"))
    ax.yaxis.set_major_formatter(ticker.StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# Batching is where the throughput is: one matrix product serves the whole batch, while a
# single-user call pays the fixed overheads (Python, data-frame and id bookkeeping, kernel
# launches) alone. The lines above the table say how much cheaper a user is inside the largest
# batch than alone, for each serving path; the right panel shows where the per-user cost levels
# off, once scoring the catalogue dominates. The gap between the two paths at batch 1 is the
# public `recommend`'s bookkeeping on top of the model. Memory follows the score matrix: `model.recommend`
# holds `B × (I + 1)` floats at once, while `rec.recommend` scores at most `eval_batch_size` users
# at a time, so its score matrix is capped (last column) and the rest of its peak is top-k
# bookkeeping and the result frame; compare the two memory columns. For catalogues of
# millions of items the same structure calls for an approximate nearest-neighbour index over the
# item embeddings instead of exact scoring, since the user vector and the item table are all a
# dot-product model needs.
#
# ## 4. Training speed: against RecTools, and where it comes from
#
# RecTools 0.19 ships the reference eSASRec. `benchmarks/compare_rectools.py` trains both on the
# same train file with the paper's configuration for the same number of epochs, each in its own
# process and its own virtual environment, has each recommend top-10 for the same test users,
# and scores both lists with the same code. The cell below reads the committed tables (2 CPU
# threads on the 2-core development machine; `benchmarks/README.md` has the commands). The
# ML-1M row uses data generated with MovieLens-1M's shape (6,040 users, 3,706 items, about 1M
# interactions), since the real file cannot be redistributed: its accuracy columns are not
# meaningful, its speed and memory columns are.

# %%
BENCH = next((d / "benchmarks" / "results" for d in (Path.cwd(), Path.cwd().parent)
              if (d / "benchmarks" / "results").is_dir()), None)
print("benchmark results:", BENCH.resolve() if BENCH else "not found (they live in a clone of the repository)")
COMPARE_COLUMNS = {"sec_per_epoch": "s/epoch", "peak_mb": "peak RSS, MB", "recommend_seconds": "recommend, s",
                   "ndcg@10": "NDCG@10", "recall@10": "Recall@10"}


def mean_std(row: dict, key: str, digits: int) -> str:
    std = row.get(f"{key}_std")
    return f"{row[f'{key}_mean']:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


compare_rows = []
for path in sorted(BENCH.glob("compare_rectools_*_cpu.json")) if BENCH else []:
    table = json.loads(path.read_text())
    for row in table["summary"]:
        compare_rows.append({"benchmark": row["dataset"], "implementation": row["implementation"], "runs": row["n_runs"],
                             "epochs": table["provenance"]["epochs"]}
                            | {label: mean_std(row, key, 4 if "@" in key else 1) for key, label in COMPARE_COLUMNS.items()}
                            | {"speed-up": f"{row['speedup']:.1f}x" if row.get("speedup") else ""})
compare = pd.DataFrame(compare_rows)
compare.set_index(["benchmark", "implementation"]) if len(compare) else "no comparison tables found"

# %% [markdown]
# Quality after equal epochs matches within seed noise (the two implementations compute the
# same function: the parity check in `benchmarks/parity_rectools.py` copies RecTools' weights
# into ours and reproduces its logits and loss to about 1e-7). The speed comes from the training
# step, which `benchmarks/speed_choices.py` takes apart: it times the package's step on the
# same Beauty batches, then reverts its choices one at a time until it is a plain loop of the
# kind RecTools runs (rungs are cumulative, so each bar is the cost of one more reverted
# choice on top of the ones above it):

# %%
choices_path = BENCH / "speed_choices_cpu.json" if BENCH else None
if choices_path and choices_path.is_file():
    choices = json.loads(choices_path.read_text())
    steps = pd.DataFrame(choices["rows"])
    print(f"{choices['provenance']['device']}, {choices['provenance']['threads']} threads, "
          f"{choices['provenance']['batches_timed']} batches x {choices['provenance']['repeats']} passes; "
          f"real positions are {choices['provenance']['real_share_of_cut_cells']:.0%} of a cut batch's cells")
    fig, ax = plt.subplots(figsize=(8, 4), dpi=90)
    sns.barplot(data=steps, y="name", x="sec_per_epoch", color="tab:blue", ax=ax)
    ax.bar_label(ax.containers[0], fmt="%.1f s", padding=3)
    ax.set(xscale="log", xlabel="seconds per epoch (log scale)", ylabel="",
           title="Beauty eSASRec training step, choices reverted one at a time")
    fig.tight_layout()
    plt.show()
    plt.close(fig)
    display(steps[["name", "sec_per_epoch", "ms_per_step", "vs_previous", "vs_esasrec"]].round(2))
else:
    print("speed_choices_cpu.json not found")

# %% [markdown]
# What each choice is, where it lives in the package, and what the committed run measured
# (`benchmarks/results/speed_choices_cpu.md`, 2 threads, two timed passes per rung, so
# differences under about 10% are noise):
#
# - **Compiled loss** (`TrainConfig.compile`, `train._compiled_loss`): under `torch.compile`
#   the candidate scores `h · E[c]` become one fused loop that reads the 1 + k candidate rows
#   in place, and the backward a fused scatter-add; the (N, 1 + k, D) tensor is never written.
#   Rung 1 shows what the eager loss costs instead.
# - **Catalogue product + gather** (`losses.candidate_logits`, `GATHER_RATIO`): without the
#   compiler, one (N, D) × (D, I) product and a gather of the 1 + k columns runs at matrix-product
#   speed and beats materialising the candidate vectors (rung 2) on catalogues up to roughly
#   64 × (1 + k) items.
# - **Packing** (`layers.Packing`): everything in a block but attention acts on one position
#   at a time, so it runs on the real positions only, packed into an (N, D) matrix. On Beauty
#   real positions are about 15% of a batch's cells (rung 3).
# - **Loss on real positions**: the loss sees N rows, not B × W rows with a mask. With 256
#   negatives the candidate scoring is most of the step, so this is the largest single saving
#   (rung 4): a plain loop spends most of its time scoring negatives for padding.
# - **Cut to the longest row**: each batch is only as wide as its longest history. A batch of
#   128 random Beauty users usually holds someone with a full 50-item window, so the cut saves
#   less here than on datasets of short histories, and most of what it saves is padding work
#   that packing already removes (rung 5 measures it with packing reverted).
# - **`is_causal` attention on right-padded rows** (`layers.CausalSelfAttention`): no mask
#   tensor, so PyTorch may pick its fused causal kernels. At L = 50 on this CPU an explicit
#   float mask (rung 6) cost nothing measurable; the choice is there for GPUs and long sequences,
#   which this table does not measure.
# - **Negatives on the device** (`losses.sample_negatives`): one `torch.randint` where the
#   batch lives. On a CPU it makes no measurable difference (rung 7); on a GPU it saves a
#   host-to-device copy of an (N, k) tensor per step.
# - **Precision**: bf16 autocast is the default on CUDA only (`TrainConfig.precision="auto"`).
#   The bf16 rows measure it on this CPU (it has AVX-512 BF16): a step of at most about 10% less,
#   not enough to change the CPU default without a quality check at full training length.
#
# The bottom rung lands near RecTools' own seconds per epoch in the table above: what makes a
# plain loop slow is scoring negatives for padding, not the framework around it.
#
# GPU figures come from `benchmarks/gpu_check.py` when a GPU is available (see
# `benchmarks/README.md`).
#
# ## 5. What to watch in an online A/B test
#
# Offline numbers choose which models deserve an A/B test; they do not predict its outcome. The
# paper's time-split findings say what to look for beyond the headline metric. First, the offline
# view from this book's time-split runs, with accuracy, popularity and the debiased metric side
# by side:

# %%
time_runs = {name: read_run("time", name) for name in STAGES}
reference = next((run for run in time_runs.values() if run), None)
rows = {name: run["metrics"] for name, run in time_runs.items() if run}
rows |= reference["baselines"] if reference else {}
offline = pd.DataFrame({name: {label: metrics.get(m) for m, label in SHOWN.items()} for name, metrics in rows.items()}).T
if len(offline):
    offline["rank by NDCG@10"] = offline["NDCG@10"].rank(ascending=False, method="min").astype(int)
    offline["rank by debiased NDCG@10"] = offline["debiased NDCG@10"].rank(ascending=False, method="min").astype(int)
    top_ndcg = offline["NDCG@10"].idxmax()
    top_debiased = offline["debiased NDCG@10"].idxmax()
    print(f"best by NDCG@10: {top_ndcg}; best by debiased NDCG@10: {top_debiased}; "
          f"highest ARP (most popular items): {offline['ARP@10'].idxmax()}; "
          f"widest coverage: {offline['Coverage@10'].idxmax()}")
else:
    print("no time-split results yet")
offline.round(4)

# %% [markdown]
# How to read this before going online:
#
# - **Evaluate offline on a time split.** A global time cut (chapter 1) trains on the past and
#   tests on the future for every user at once, as a deployed model experiences it; leave-one-out
#   mixes periods and lets the model learn from interactions that happened after some test items.
#   That is why the paper makes the time split its main protocol and uses leave-one-out only to
#   compare with published academic numbers. Section 1 printed whether the three stages come out
#   in the same order on both protocols in this book's runs; a leave-one-out win alone is weak
#   evidence for an online win.
# - **Popularity is a strong, cheap baseline on a time split.** On ML-20M the paper's
#   "Popular (last 7 days)" beats 1-negative SASRec and even eSASRec on HR@10 and NDCG@10
#   (REFERENCE §4), while covering a fraction of the catalogue. Keep a popularity arm, or at least
#   its offline numbers, as the bar the model must clear; compare against it in the table above.
# - **Accuracy and coverage pull against each other.** The paper's point is that eSASRec lies on
#   the accuracy–coverage Pareto front; its logQ experiments raise accuracy by lowering coverage.
#   Online, low coverage means a few items get most impressions: click-through can rise in the
#   short term while the long tail starves and the logged data the next model trains on narrows
#   (a feedback loop). Log **catalogue coverage of impressions** and **the share of impressions
#   going to the top 1% of items** as guardrails, next to the primary metric.
# - **Discount popularity when comparing.** ARP above measures how popular the recommended items
#   are over the whole training period (so a "last 7 days" list of recent hits can score low on
#   it); the debiased NDCG down-weights hits on the most popular test items. A model whose lead
#   shrinks or flips under debiasing (compare the two rank columns) wins mostly on bestsellers,
#   which users often find without a recommender; its online gain in incremental purchases or
#   discovery is likely smaller than raw NDCG suggests.
# - **The primary online metric** should be the business outcome the recommendations serve
#   (purchases, add-to-basket, watch time per user), measured per user over whole weekly cycles,
#   with an A/A test first to validate the split and the variance. Watch **latency** (p95/p99 of
#   the serving call measured above, at production batch sizes) and **novelty effects**: a new
#   model's recommendations look fresh in the first days.
# - **One change per test.** Following section 1, test the loss swap against the running SASRec,
#   then the layer swap against the winner; each test then answers one question.

# %%
from esasrec.provenance import provenance; provenance(DATASET, STARTED)
