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
# # Chapter 5. LiGR layers
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/esasrec/esasrec/blob/main/notebooks/05_ligr.ipynb)
#
# Chapter 4 changed SASRec's *loss*. This chapter changes its *layers*. eSASRec
# (Tikhonovich et al., RecSys 2025, arXiv 2508.06450) replaces the original SASRec
# Transformer block with the block LinkedIn introduced for its feed ranking, LiGR
# (arXiv 2502.03417). Three things change:
#
# 1. **Pre-LayerNorm with an un-normalised residual stream.** SASRec normalises the stream
#    and continues from the normalised value (`h = LN(h) + MHA(LN(h), h, h)`); LiGR leaves
#    the stream `h` alone and only normalises the input of each sub-layer, so nothing
#    rescales the stream between blocks.
# 2. **Gated residuals.** Each sub-layer's output is added through a learned sigmoid gate
#    computed from the stream itself, one value per dimension and position.
# 3. **SwiGLU feed-forward** (Shazeer 2020) instead of SASRec's `Linear → ReLU → Linear` of
#    width d.
#
# With $\sigma$ the sigmoid and $\odot$ the element-wise product (REFERENCE §1.2):
#
# $$
# \begin{aligned}
# a &= \mathrm{MHA}(\mathrm{LN}_1(h)) & h &\leftarrow h + \sigma(G_1 h + b_1) \odot \mathrm{Dropout}(a)\\
# f &= W_2\,\mathrm{Dropout}\big(\mathrm{SiLU}(W_1 \mathrm{LN}_2(h)) \odot W_3 \mathrm{LN}_2(h)\big) &
# h &\leftarrow h + \sigma(G_2 h + b_2) \odot \mathrm{Dropout}(f)
# \end{aligned}
# $$
#
# There is no LayerNorm after the last block. We read the package's block, probe it, check it
# against a version written out with loops, train eSASRec and look at the gates it learned,
# and finally stack more layers of each kind.

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
TEST_DAYS = 60                            # the paper's time-split window
EPOCHS = 1 if FAST else 8                 # the eSASRec run whose gates we inspect (paper: up to 200)
SIZES = dict(d_model=32, max_len=20, n_negatives=64) if FAST else {}  # full mode: the paper's Beauty sizes
SWEEP_DEPTHS = [1, 2] if FAST else [1, 2, 4]
SWEEP_EPOCHS = 1 if FAST else 2           # every point of the depth sweep gets the same short budget
COMPILE = not FAST                        # torch.compile the loss: ~30-60 s once, faster steps after
GATE_USERS = 256 if FAST else 1024        # users whose real positions feed the gate histograms
SEED = 0

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

# Without ipywidgets, importing tqdm.auto (esasrec.train) warns "IProgress not found"; training runs
# here with progress=False, so the warning is noise.
warnings.filterwarnings("ignore", message="IProgress not found")

from esasrec.data import load_dataset
from esasrec.layers import LiGRBlock, SASRecBlock
from esasrec.model import ModelConfig, SeqRecModel
from esasrec.presets import preset
from esasrec.split import holdout_last, time_split
from esasrec.train import SequentialRecommender

torch.manual_seed(SEED)
sns.set_theme(style="whitegrid")
pd.set_option("display.width", 160)


def show_source(obj):
    """Render the package's real source of ``obj`` as a code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


# %% [markdown]
# ## 1. The two blocks side by side
#
# Here is the original SASRec block as the package implements it (Kang & McAuley's layout,
# REFERENCE §1.1). Note the first residual: it starts from the *normalised* query `q`.

# %%
show_source(SASRecBlock)

# %% [markdown]
# And the LiGR block. Attention and the feed-forward read `LN(h)`, but the residual is added to
# `h` itself, through `sigmoid(attn_gate(h))` and `sigmoid(ffn_gate(h))`. Both gates are full
# $d \times d$ linear maps with bias, computed from the un-normalised stream. Blocks work on the
# packed real positions, an `(N, D)` matrix (chapter 3); only attention unpacks them into
# `(B, L, D)`.

# %%
show_source(LiGRBlock)

# %% [markdown]
# ## 2. SwiGLU
#
# The feed-forward is a gated linear unit with a SiLU ("swish") gate:
# $\mathrm{SwiGLU}(x) = W_2\,(\mathrm{SiLU}(W_1 x) \odot W_3 x)$ with
# $\mathrm{SiLU}(z) = z\,\sigma(z)$, hidden size $m \cdot d$ and no biases. One branch decides
# how much of the other passes, per hidden unit. SiLU is a smooth ReLU that lets a little
# negative signal through and has a non-zero gradient everywhere.

# %%
z = torch.linspace(-5, 5, 201)
fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
ax.plot(z, F.relu(z), label="ReLU(z) (SASRec's FFN)")
ax.plot(z, F.silu(z), label="SiLU(z) = z·σ(z) (SwiGLU's gate)")
ax.plot(z, torch.sigmoid(z), label="σ(z) (LiGR's residual gates)", linestyle="--")
ax.set(xlabel="z", ylabel="activation", title="Activations in the two blocks")
ax.legend()
plt.show()
plt.close(fig)

# %% [markdown]
# ## 3. Probing the block on a tiny input
#
# Three sequences of up to five items, $d = 8$, two heads, right-padded as the model passes
# them to its blocks (padding after the real items, `pad_mask` True at padding). The block
# keeps the shape, leaves padding at zero, and is causal: changing the last real item of a
# sequence leaves every earlier position untouched.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
tiny = LiGRBlock(d_model=8, n_heads=2, dropout=0.0, ffn_mult=4).eval()
lengths = torch.tensor([5, 3, 1])
pad_mask = torch.arange(5)[None, :] >= lengths[:, None]  # (B, L), True at padding
h = torch.randn(3, 5, 8).masked_fill(pad_mask[..., None], 0.0)  # (B, L, D)
with torch.no_grad():
    out = tiny(h, pad_mask)  # (B, L, D)
    changed = h.clone()
    changed[0, 4] = torch.randn(8)  # a new last item for sequence 0
    out_changed = tiny(changed, pad_mask)
print("input", tuple(h.shape), "-> output", tuple(out.shape))
print("padding positions all zero:", bool((out[pad_mask] == 0).all()))
print("positions 0-3 of sequence 0 unchanged:", torch.equal(out[0, :4], out_changed[0, :4]))
print("position 4 of sequence 0 changed:", not torch.equal(out[0, 4], out_changed[0, 4]))
print("parameters:", {name: tuple(p.shape) for name, p in tiny.named_parameters()})

# %% [markdown]
# ## 4. A naive LiGR block to check against
#
# The version below spells everything out: LayerNorm from its mean and variance, attention as
# a loop over sequences, heads and query positions with an explicit softmax over the keys each
# query may see (earlier or equal *and* not padding), the gates and SwiGLU from the raw weight
# matrices. It masks padding explicitly, so unlike the package's block it also accepts
# left-padded input. We copy the package block's weights into it and compare in eval mode
# (dropout off).


# %%
class NaiveLiGR:
    """LiGR written out with loops; weights copied from a package ``LiGRBlock``."""

    def __init__(self, block: LiGRBlock):
        self.n_heads = block.attn.n_heads
        self.params = {name: p.detach().clone() for name, p in block.named_parameters()}

    @staticmethod
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * weight + bias

    def attention(self, x, pad_mask):
        p = self.params
        B, L, D = x.shape
        dh = D // self.n_heads
        w_q, w_k, w_v = p["attn.in_proj.weight"].split(D)
        b_q, b_k, b_v = p["attn.in_proj.bias"].split(D)
        out = torch.zeros(B, L, D)
        for b in range(B):
            for t in range(L):
                if pad_mask[b, t]:
                    continue
                visible = [s for s in range(t + 1) if not pad_mask[b, s]]
                heads = []
                for head in range(self.n_heads):
                    cols = slice(head * dh, (head + 1) * dh)
                    q = x[b, t] @ w_q[cols].T + b_q[cols]
                    scores = torch.stack([q @ (x[b, s] @ w_k[cols].T + b_k[cols]) / dh ** 0.5 for s in visible])
                    weights = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
                    heads.append(sum(w * (x[b, s] @ w_v[cols].T + b_v[cols]) for w, s in zip(weights, visible)))
                out[b, t] = torch.cat(heads) @ p["attn.out_proj.weight"].T + p["attn.out_proj.bias"]
        return out

    def __call__(self, h, pad_mask):
        p = self.params
        a = self.attention(self.layer_norm(h, p["attn_norm.weight"], p["attn_norm.bias"]), pad_mask)
        h = h + torch.sigmoid(h @ p["attn_gate.weight"].T + p["attn_gate.bias"]) * a
        x = self.layer_norm(h, p["ffn_norm.weight"], p["ffn_norm.bias"])
        f = (F.silu(x @ p["w1.weight"].T) * (x @ p["w3.weight"].T)) @ p["w2.weight"].T
        h = h + torch.sigmoid(h @ p["ffn_gate.weight"].T + p["ffn_gate.bias"]) * f
        return h.masked_fill(pad_mask[..., None], 0.0)


# %%
# NBVAL_CHECK_OUTPUT
naive = NaiveLiGR(tiny)
with torch.no_grad():
    torch.testing.assert_close(tiny(h, pad_mask), naive(h, pad_mask))
print("package LiGRBlock == naive loops (right padding)")

# %% [markdown]
# The package block runs attention with a causal mask only and no padding mask. That is correct
# because the model hands it right-padded rows, where padding only ever lies in a real
# position's future. The whole model takes *left*-padded histories and rolls them; the check
# below runs a full one-block eSASRec model against the naive block on left-padded ids, with
# embeddings built by hand (positions counted from the most recent item, no $\sqrt{d}$ scaling,
# no final LayerNorm for LiGR).

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
tiny_model = SeqRecModel(ModelConfig(n_items=20, d_model=8, n_heads=2, n_blocks=2, dropout=0.0, max_len=6)).eval()
ids = torch.tensor([[0, 0, 3, 7, 7, 1], [0, 0, 0, 0, 0, 12], [5, 6, 2, 9, 4, 8]])  # (B, L), left-padded
left_pad = ids == 0
positions = torch.arange(5, -1, -1).expand(3, -1)  # (B, L): 0 = the last column = the most recent item
with torch.no_grad():
    stream = tiny_model.item_emb.weight[ids] + tiny_model.pos_emb.weight[positions]
    stream = stream.masked_fill(left_pad[..., None], 0.0)
    for block in tiny_model.blocks:
        stream = NaiveLiGR(block)(stream, left_pad)
    torch.testing.assert_close(tiny_model.encode(ids), stream)
print("SeqRecModel(block='ligr').encode == embeddings + naive LiGR blocks (left padding)")

# %% [markdown]
# ## 5. Training eSASRec on Beauty's time split
#
# Now the real thing: the `esasrec` preset (LiGR layers + sampled softmax with 256 negatives,
# the paper's Beauty sizes: $d = 64$, one block, one head, dropout 0.2, $m = 4$, $L = 50$) on
# the global time split with a 60-day test window (REFERENCE §2.1). The last train item of 2,048
# users is held out for validation; the preset keeps the epoch with the best validation NDCG@10.
# The budget is cut to the `EPOCHS` of the parameters cell instead of the paper's 200 with
# patience 50, so the model is not fully converged; chapter 6 reads the full-length runs.

# %%
df = load_dataset(DATASET)
train, test, split_stats = time_split(df, test_days=TEST_DAYS)
train_rest, valid = holdout_last(train, n_users=2048, seed=SEED)
print(split_stats)
print(f"validation: {valid['user_id'].nunique():,} users' last train item held out")

# %%
model_config, train_config = preset("esasrec", DATASET, "time", epochs=EPOCHS, patience=EPOCHS,
                                    compile=COMPILE, seed=SEED, progress=False, **SIZES)
print(model_config)
rec = SequentialRecommender(model_config, train_config).fit(train_rest, valid)
history = pd.DataFrame(rec.history)
print(f"{len(history)} epochs in {rec.train_seconds:.0f} s on {rec.device}; best epoch {rec.best_epoch}")
esasrec_metrics = rec.evaluate(test)
pd.Series(esasrec_metrics).round(4).to_frame("eSASRec").T

# %%
fig, (ax_loss, ax_ndcg) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=90)
ax_loss.plot(history["epoch"], history["loss"], marker="o", label="train")
ax_loss.plot(history["epoch"], history["val_loss"], marker="o", label="validation")
ax_loss.set(xlabel="epoch", ylabel="sampled-softmax loss", title="training objective")
ax_ndcg.plot(history["epoch"], history["val_ndcg@10"], marker="o", color="C2")
ax_ndcg.set(xlabel="epoch", ylabel="validation NDCG@10", title="early-stopping metric")
for ax in (ax_loss, ax_ndcg):
    ax.axvline(rec.best_epoch, color="grey", linestyle=":", label="restored epoch")
ax_loss.legend()
fig.suptitle(f"eSASRec on {DATASET}, time split")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# ## 6. What did the gates learn?
#
# At initialisation the gate projections are small random maps, so $\sigma(G h + b)$ sits near
# 0.5 everywhere: every sub-layer is added at about half strength. After training each
# dimension can open (towards 1) or close (towards 0) its residual branch, per position. We
# record the gate logits with forward hooks on `model.blocks[i].attn_gate` and
# `model.blocks[i].ffn_gate` while encoding the histories of a batch of users. Because blocks run
# on packed rows, the hooks see exactly the real (non-padding) positions. For comparison we
# rebuild the model with the same seed, which gives exactly the weights training started from.

# %%
def gate_values(model: SeqRecModel, histories: torch.Tensor) -> pd.DataFrame:
    """sigmoid(gate logits) of every block's two gates over the real positions of ``histories``."""
    captured = []

    def hook_for(block_index, gate):
        def hook(module, inputs, output):  # output: (N, D) logits of the N real positions
            captured.append((block_index, gate, torch.sigmoid(output).flatten().cpu()))
        return hook

    handles = [getattr(block, gate).register_forward_hook(hook_for(i, gate.replace("_gate", "")))
               for i, block in enumerate(model.blocks) for gate in ("attn_gate", "ffn_gate")]
    try:
        model.eval()
        with torch.no_grad():
            model.encode(histories)
    finally:
        for handle in handles:
            handle.remove()
    return pd.concat([pd.DataFrame({"block": i, "gate": gate, "value": v.numpy()}) for i, gate, v in captured])


users = rec.histories.seqs[torch.randperm(len(rec.histories.seqs), generator=torch.Generator().manual_seed(SEED))[:GATE_USERS]]
users = users.to(rec.device)
torch.manual_seed(SEED)
untrained = SeqRecModel(rec.model_config).to(rec.device)
gates = pd.concat([gate_values(untrained, users).assign(model="at initialisation"),
                   gate_values(rec.model, users).assign(model="trained")])
n_positions = int((users != 0).sum())
print(f"{GATE_USERS} users, {n_positions:,} real positions x d={rec.model_config.d_model} gate values per gate")
summary = gates.groupby(["model", "block", "gate"])["value"].describe(percentiles=[0.1, 0.5, 0.9])
summary["share < 0.1"] = gates.groupby(["model", "block", "gate"])["value"].apply(lambda v: (v < 0.1).mean())
summary["share > 0.9"] = gates.groupby(["model", "block", "gate"])["value"].apply(lambda v: (v > 0.9).mean())
spread = gates.groupby(["gate", "model"])["value"].std().unstack()
for gate, row in spread.iterrows():
    print(f"{gate} gates: standard deviation {row['at initialisation']:.3f} at initialisation, "
          f"{row['trained']:.3f} trained ({row['trained'] / row['at initialisation']:.1f}x)")
summary.drop(columns="count").round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=90, sharey=True)
for ax, gate, title in zip(axes, ("attn", "ffn"), ("attention gate σ(G₁h + b₁)", "feed-forward gate σ(G₂h + b₂)")):
    sns.histplot(data=gates[(gates["gate"] == gate) & (gates["block"] == 0)], x="value", hue="model",
                 bins=50, binrange=(0, 1), stat="density", common_norm=False, element="step", ax=ax)
    ax.set(title=title, xlabel="gate value")
fig.suptitle("Block 0 gates over all real positions and dimensions")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# The untrained gates form a narrow bump around 0.5; the trained histograms show how far
# training pushed them and in which direction (the table above gives the medians and the shares
# of nearly closed and nearly open gates, the lines above it how much each kind of gate
# spread). A gate well below 1 means the block adds only part of a sub-layer's output to the
# stream at that position and dimension, and a gate near 0 shuts it out; SASRec's plain
# residual `h + f(h)` can only do that by shrinking `f` itself, for every position alike.
#
# Is the spread per position or per dimension? The next figure averages each of the $d$ gate
# dimensions over all real positions and sorts them. A flat line means the gate treats every
# dimension of the stream alike on average; a slope means some dimensions take in much more of
# that sub-layer's output than others.

# %%
trained_block0 = gates[(gates["model"] == "trained") & (gates["block"] == 0)]
per_dim = {gate: np.sort(trained_block0.loc[trained_block0["gate"] == gate, "value"].to_numpy()
                         .reshape(-1, rec.model_config.d_model).mean(0)) for gate in ("attn", "ffn")}
fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
ax.plot(per_dim["attn"], marker=".", label="attention gate")
ax.plot(per_dim["ffn"], marker=".", label="feed-forward gate")
ax.set(xlabel="stream dimension (each gate's dimensions sorted by their mean)", ylabel="mean gate value",
       title="Trained gates, mean over real positions (block 0)", ylim=(0, 1))
ax.legend()
plt.show()
plt.close(fig)

# %% [markdown]
# ## 7. Depth: SASRec blocks against LiGR blocks
#
# The paper reports that LiGR layers beat the original SASRec layers and keep training stably
# as layers are added, where SASRec layers degrade (REFERENCE §4, "Findings"). A small version
# of that experiment: both block types with the same loss (sampled softmax, 256 negatives), the
# same $d = 64$, $L = 50$, one head, dropout 0.2, and the same short budget of `SWEEP_EPOCHS`
# epochs with no early stopping, at each depth in `SWEEP_DEPTHS`. The SASRec blocks keep their
# original width-$d$ feed-forward (the `sasrec-ss` preset), the LiGR blocks a SwiGLU of width
# $4d$, as in the paper's comparison. A few epochs is far from convergence, so this measures
# how quickly each stack learns as much as where it ends.

# %%
sweep = []
for block_preset in ("sasrec-ss", "esasrec"):
    for depth in SWEEP_DEPTHS:
        mc, tc = preset(block_preset, DATASET, "time", n_blocks=depth, epochs=SWEEP_EPOCHS,
                        patience=SWEEP_EPOCHS, compile=COMPILE, seed=SEED, progress=False, **SIZES)
        run = SequentialRecommender(mc, tc).fit(train_rest)
        metrics = run.evaluate(test)
        sweep.append({"block": mc.block, "n_blocks": depth,
                      "parameters": sum(p.numel() for p in run.model.parameters()),
                      "seconds": run.train_seconds, "final train loss": run.history[-1]["loss"],
                      "hr@10": metrics["hr@10"], "ndcg@10": metrics["ndcg@10"],
                      "coverage@10": metrics["coverage@10"]})
sweep = pd.DataFrame(sweep)
print(f"d={mc.d_model}, L={mc.max_len}, {mc.n_negatives} negatives, batch {tc.batch_size}; budget: "
      f"{SWEEP_EPOCHS} epoch(s) per point, {sweep['seconds'].sum():.0f} s of training in all")
sweep.round(4)

# %%
fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
sns.lineplot(data=sweep, x="n_blocks", y="ndcg@10", hue="block", style="block", markers=True, dashes=False, ax=ax)
ax.set(xlabel="number of blocks", ylabel="test NDCG@10", xticks=SWEEP_DEPTHS,
       title=f"Depth at an equal budget of {SWEEP_EPOCHS} epoch(s), {DATASET} time split")
plt.show()
plt.close(fig)

# %%
by_depth = sweep.pivot(index="n_blocks", columns="block", values="ndcg@10")
by_depth["LiGR / SASRec"] = by_depth["ligr"] / by_depth["sasrec"]
print("test NDCG@10 by depth, and LiGR's ratio to SASRec at each depth:")
print(by_depth.round(4).to_string())

# %% [markdown]
# The ratio column compares the two block types at equal depth and budget. Read it with the
# budget in mind: each point is a single seed trained for a few epochs, so small differences
# are within run-to-run noise; the paper's claim about deep SASRec stacks collapsing concerns
# full-length training at up to 8 layers. What the sweep does show cheaply is whether adding
# layers helps or hurts each block type early in training; where the one-block models end up
# after longer training is chapter 6's question.
#
# Chapter 6 puts the loss and the layer type together in the full ablation grid.

# %%
from esasrec.provenance import provenance; provenance(DATASET, STARTED)
