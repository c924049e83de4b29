"""Where esasrec's training speed comes from: its choices reverted one at a time, timed on Beauty.

The training step of ``SequentialRecommender`` makes six choices a plain PyTorch loop does not
(REFERENCE §5, ``esasrec/train.py``). This script times one training step (forward, loss,
backward, Adam) on the same real Amazon Beauty batches (leave-one-out train split, the paper's
eSASRec configuration) for a ladder of variants. Rung 0 is the package's own step; each later
rung reverts one more choice, so the last rung is a plain loop of the kind RecTools runs:

0. esasrec as shipped: the loss under ``torch.compile`` (a fused gather that never writes the
   (N, 1+k, D) candidate tensor), per-position work on packed real positions only, each batch
   cut to its longest row, ``is_causal`` attention, negatives drawn with ``torch.randint`` on the
   model's device, fp32 on CPU;
1. eager loss: at Beauty's catalogue size ``candidate_logits`` scores the whole catalogue with one
   matrix product and gathers the 1 + k columns (``GATHER_RATIO``);
2. eager loss that gathers the candidate vectors into an (N, 1+k, D) tensor;
3. no packing: embeddings, LayerNorms, gates and feed-forward run on all B x W positions;
4. the loss on all B x W positions, padding masked out after the fact;
5. no cut: every batch at the full width L = 50;
6. an explicit float (B, 1, L, L) causal mask instead of ``is_causal`` (what RecTools passes to
   its attention; it rules out the fused causal kernel);
7. negatives drawn on the host with NumPy per batch, then copied to a tensor.

Plus the package's step under bf16 autocast (``--precision bf16``), eager and compiled.

Each variant starts from the same initial weights and runs the same ``--batches`` batches (a
fixed random sample of one epoch's batches); seconds per epoch = the time of those steps x
(batches per epoch / ``--batches``). The figure is the median over ``--repeats`` timed passes,
after one untimed warm-up pass (which also compiles). Before timing, the script checks that
rungs 0-6 compute the same loss on one batch with the same weights and negatives (rung 7 only
changes where the negatives come from) and stops if they do not.

Rungs 3-6 rebuild the model's forward with the package's own modules (``Packing``,
``forward_packed``) and, for rung 6, a stand-in for ``F.scaled_dot_product_attention`` inside
``esasrec.layers`` that builds the mask; nothing in the package is changed for good.

Usage (from the repository root, the project's Python, Beauty in the data cache)::

    python benchmarks/speed_choices.py                        # writes benchmarks/results/speed_choices_cpu.{md,json}
    python benchmarks/speed_choices.py --batches 8 --repeats 1 --max-users 3000 --results-dir /tmp/smoke   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import esasrec.layers as layers
import esasrec.losses as losses
from esasrec import __version__ as esasrec_version
from esasrec.data import load_dataset
from esasrec.layers import Packing
from esasrec.model import SeqRecModel
from esasrec.presets import preset
from esasrec.sequences import IdMap
from esasrec.split import leave_one_out
from esasrec.train import _autocast, _compiled_loss, resolve_device, training_sequences

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Variant:
    """One training-step variant; the defaults are the package's own choices."""

    name: str
    compile: bool = True
    gather: str = "auto"  # "auto": the package's choice | "materialise": (N, 1+k, D) candidate tensor
    pack: bool = True  # per-position work on real positions only
    loss_on_all: bool = False  # loss on all B x W positions, padding masked afterwards
    cut: bool = True  # cut each batch to its longest row
    float_mask: bool = False  # explicit (B, 1, L, L) float mask instead of is_causal
    host_negatives: bool = False  # NumPy negatives per batch, copied to a tensor
    precision: str = "fp32"


def ladder() -> list[Variant]:
    """Rung 0 is the package; each rung reverts one more choice (cumulative)."""
    rungs = [Variant("0. esasrec (as shipped)")]
    for name, change in [
        ("1. eager loss (catalogue product + gather)", dict(compile=False)),
        ("2. eager loss, (N, 1+k, D) candidate tensor", dict(gather="materialise")),
        ("3. no packing: all B x W positions", dict(pack=False)),
        ("4. loss on all B x W positions, masked", dict(loss_on_all=True)),
        ("5. no cut: full width L = 50", dict(cut=False)),
        ("6. float (B, 1, L, L) attention mask", dict(float_mask=True)),
        ("7. negatives drawn on the host (NumPy)", dict(host_negatives=True)),
    ]:
        rungs.append(replace(rungs[-1], name=name, **change))
    return rungs + [Variant("esasrec, bf16 autocast (compiled)", precision="bf16"),
                    Variant("esasrec, bf16 autocast (eager)", compile=False, precision="bf16")]


# ------------------------------------------------------------------------------- the pieces
class _FloatMaskSDPA:
    """Stands in for ``torch.nn.functional`` inside ``esasrec.layers``: attention with an explicit
    additive float mask (0 on and below the diagonal, -inf above) in place of ``is_causal``."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def scaled_dot_product_attention(q, k, v, is_causal=False, dropout_p=0.0):
        B, L = q.shape[0], q.shape[-2]
        mask = torch.full((L, L), float("-inf"), device=q.device, dtype=q.dtype).triu(1)
        mask = mask.expand(B, 1, L, L).contiguous()  # materialised per batch, as a float mask is
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


@contextlib.contextmanager
def patched(v: Variant):
    saved = (layers.F, losses.GATHER_RATIO)
    if v.float_mask:
        layers.F = _FloatMaskSDPA()
    if v.gather == "materialise":
        losses.GATHER_RATIO = 0  # always the (N, C, D) einsum branch
    try:
        yield
    finally:
        layers.F, losses.GATHER_RATIO = saved


def encode(model: SeqRecModel, inputs: torch.Tensor, n_real: int, pack: bool):
    """(h, packing): h holds the real positions (N, D), or all B x W positions when not ``pack``."""
    if pack:
        return model.encode_packed(inputs, n_real=n_real)
    B, W = inputs.shape
    real = inputs != 0
    everything = Packing(torch.zeros_like(real))  # every position counts as a row
    pos = (real.sum(1, keepdim=True) - 1 - torch.arange(W, device=inputs.device)).clamp_min(0)
    h = model.emb_dropout(model.item_emb(inputs) + model.pos_emb(pos)).reshape(B * W, -1)
    for block in model.blocks:
        h = block.forward_packed(h, everything)
    return model.final_norm(h), everything


def masked_sampled_softmax(h_all, item_emb, targets_all, negatives_all):
    """Sampled softmax over all B x W positions, padding (target 0) masked out, as a plain loop does."""
    logits = losses.candidate_logits(h_all, item_emb, torch.cat([targets_all[:, None], negatives_all], 1))
    per_row = F.cross_entropy(logits.float(), torch.zeros(len(h_all), dtype=torch.long, device=h_all.device),
                              reduction="none")
    real = (targets_all != 0).float()
    return (per_row * real).sum() / real.sum()


class Step:
    """One variant's training step on a right-padded batch (B, W + 1)."""

    def __init__(self, v: Variant, mc, init_state: dict, device: torch.device, seed: int = 0):
        self.v, self.mc, self.device = v, mc, device
        self.model = SeqRecModel(mc).to(device)
        self.model.load_state_dict(init_state)
        self.model.train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.98))
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.loss_fn = _compiled_loss() if v.compile else losses.loss_with_negatives

    def negatives(self, n: int) -> torch.Tensor:
        k, n_items = self.mc.n_negatives, self.mc.n_items
        if self.v.host_negatives:
            return torch.from_numpy(self.rng.integers(1, n_items + 1, size=(n, k))).to(self.device)
        return losses.sample_negatives(n, k, n_items, generator=self.gen, device=self.device)

    def loss(self, batch: torch.Tensor, n_real: int, negatives: torch.Tensor | None = None) -> torch.Tensor:
        targets = batch[:, 1:]
        inputs = batch[:, :-1] * (targets != 0)
        with _autocast(self.device, self.v.precision):
            h, packing = encode(self.model, inputs, n_real, self.v.pack)
            if self.v.loss_on_all:
                flat = targets.reshape(-1)
                if negatives is None:
                    negatives = self.negatives(len(flat))
                return masked_sampled_softmax(h, self.model.item_emb.weight, flat, negatives)
            if not self.v.pack:  # keep the real rows of the all-positions stream
                packing = Packing(inputs == 0, n_real)
                h = packing.pack(h.view(*inputs.shape, -1))
            if negatives is None:
                negatives = self.negatives(n_real)
            return self.loss_fn("sampled_softmax", h, self.model.item_emb.weight, packing.pack(targets), negatives)

    def __call__(self, batch: torch.Tensor, n_real: int) -> None:
        loss = self.loss(batch, n_real)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


# --------------------------------------------------------------------------------- data
def beauty_batches(args, max_len: int):
    """Right-padded training rows (U, L + 1) of Beauty's leave-one-out train split, as fit() builds them."""
    df = load_dataset("beauty", args.data_dir, download=args.download)
    train, _, _ = leave_one_out(df)
    if args.max_users:
        keep = np.random.default_rng(0).permutation(train["user_id"].unique())[: args.max_users]
        train = train[train["user_id"].isin(keep)]
    items = IdMap(train["item_id"])
    seqs, lengths = training_sequences(train, items, max_len)
    return seqs, lengths, len(items)


def sample_batches(seqs, lengths, batch_size: int, n: int, max_len: int, seed: int = 0):
    """``n`` of one shuffled epoch's batches: (full-width batch, cut batch, n_real) each; and batches per epoch."""
    perm = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(seed))
    starts = list(range(0, len(perm), batch_size))
    chosen = np.random.default_rng(seed).choice(len(starts), size=min(n, len(starts)), replace=False)
    out = []
    for i in sorted(chosen):
        rows = perm[starts[i]:starts[i] + batch_size]
        width = int(lengths[rows].max()) - 1
        full = seqs[rows, : max_len + 1]
        out.append((full, full[:, : width + 1].contiguous(), int((lengths[rows] - 1).sum())))
    return out, len(starts)


def check_same_loss(rungs, mc, init, device, batches) -> float:
    """All rungs but host negatives compute the same loss on one batch, weights and negatives."""
    full, cut, n_real = batches[0]
    W = full.shape[1] - 1
    negs_real = torch.randint(1, mc.n_items + 1, (n_real, mc.n_negatives), generator=torch.Generator().manual_seed(1))
    values = {}
    for v in rungs:
        if v.host_negatives or v.precision != "fp32":
            continue
        step = Step(replace(v, compile=False), mc, init, device)  # eager: compiling here would double the warm-up
        step.model.eval()  # no dropout, so every rung sees the same network
        batch = cut if v.cut else full
        negatives = negs_real
        if v.loss_on_all:  # the same negatives at the real positions, arbitrary ones at padding
            targets = batch[:, 1:]
            negatives = torch.randint(1, mc.n_items + 1, (targets.numel(), mc.n_negatives))
            negatives[Packing(targets == 0, n_real).index] = negs_real
        with patched(v), torch.no_grad():
            values[v.name] = float(step.loss(batch.to(device), n_real, negatives.to(device)))
    spread = max(values.values()) - min(values.values())
    print(f"[check] loss of one batch under rungs 0-6 (eager, eval mode, same negatives): "
          f"{min(values.values()):.6f} .. {max(values.values()):.6f} (spread {spread:.2e}, W={W})", flush=True)
    if spread > 1e-4:
        raise SystemExit(f"rungs disagree on the loss: {values}")
    return spread


def time_variant(v: Variant, mc, init, device, batches, repeats: int) -> list[float]:
    step = Step(v, mc, init, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    on_device = [((cut if v.cut else full).to(device), n_real) for full, cut, n_real in batches]
    times = []
    with patched(v):
        for rep in range(repeats + 1):  # pass 0 warms up (and compiles)
            sync()
            t0 = time.perf_counter()
            for batch, n_real in on_device:
                step(batch, n_real)
            sync()
            if rep:
                times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------------------- reporting
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=60, help="batches timed per pass (a fixed sample of one epoch)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per variant (after one warm-up pass)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-users", type=int, default=None, help="subsample users (smoke tests)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    from compare_rectools import cpu_model, git_state  # this folder is on sys.path when run as a script

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    started = time.perf_counter()
    load_start = os.getloadavg()
    mc, tc = preset("esasrec", "beauty")
    seqs, lengths, n_items = beauty_batches(args, mc.max_len)
    mc.n_items = n_items
    batches, per_epoch = sample_batches(seqs, lengths, tc.batch_size, args.batches, mc.max_len)
    torch.manual_seed(0)
    init = SeqRecModel(mc).state_dict()
    real_share = sum(n for _, _, n in batches) / sum(c.shape[0] * (c.shape[1] - 1) for _, c, _ in batches)
    print(f"[speed] Beauty loo train: {len(seqs):,} rows, {n_items:,} items, {per_epoch} batches per epoch; "
          f"timing {len(batches)} of them; real positions are {real_share:.0%} of the cut batches' cells", flush=True)

    rungs = ladder()
    spread = check_same_loss(rungs, mc, init, device, batches)
    rows = []
    for v in rungs:
        times = time_variant(v, mc, init, device, batches, args.repeats)
        sec_epoch = statistics.median(times) * per_epoch / len(batches)
        rows.append({**asdict(v), "sec_per_epoch": sec_epoch, "ms_per_step": 1e3 * statistics.median(times) / len(batches),
                     "passes_seconds": times})
        print(f"[speed] {v.name:<48} {sec_epoch:7.2f} s/epoch  ({rows[-1]['ms_per_step']:.1f} ms/step)", flush=True)

    base = rows[0]["sec_per_epoch"]
    ladder_rows = [r for r in rows if r["name"][0].isdigit()]
    for prev, r in zip([None] + ladder_rows[:-1], ladder_rows):
        r["vs_previous"] = None if prev is None else r["sec_per_epoch"] / prev["sec_per_epoch"]
    for r in rows:
        r["vs_esasrec"] = r["sec_per_epoch"] / base

    prov = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["speed_choices.py", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - started,
        "esasrec": esasrec_version, "torch": torch.__version__, "python": platform.python_version(),
        "git": git_state(), "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "device": str(device), "threads": args.threads,
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "batches_timed": len(batches), "batches_per_epoch": per_epoch, "repeats": args.repeats,
        "real_share_of_cut_cells": real_share, "loss_check_spread": spread,
        "config": {k: getattr(mc, k) for k in ("d_model", "n_blocks", "n_heads", "dropout", "max_len",
                                                  "ffn_mult", "n_negatives", "n_items")} | {"batch_size": tc.batch_size},
    }
    result = {"rows": rows, "provenance": prov}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"speed_choices_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    prov = result["provenance"]
    lines = [f"# Where the training speed comes from ({prov['device']}, {prov['threads']} threads)", "",
             "Beauty, leave-one-out train split, eSASRec paper configuration "
             f"({', '.join(f'{k}={v}' for k, v in prov['config'].items())}). "
             f"Seconds per epoch = median of {prov['repeats']} timed passes over the same "
             f"{prov['batches_timed']} batches x {prov['batches_per_epoch']}/{prov['batches_timed']}. "
             "Rungs are cumulative: each reverts one more of the package's choices.", "",
             "| variant | sec/epoch | ms/step | x previous rung | x esasrec |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        prev = "" if r.get("vs_previous") is None else f"{r['vs_previous']:.2f}"
        lines.append(f"| {r['name']} | {r['sec_per_epoch']:.2f} | {r['ms_per_step']:.1f} | {prev} | {r['vs_esasrec']:.2f} |")
    lines += ["", "## Provenance", "", f"- command: `{prov['command']}`",
              f"- date: {prov['date']}; wall {prov['wall_seconds']:.0f} s",
              f"- esasrec {prov['esasrec']}, torch {prov['torch']}, python {prov['python']}",
              f"- git: {prov['git']['commit']} (dirty: {prov['git']['dirty']})",
              f"- CPU: {prov['cpu']}; load average at start {tuple(round(x, 2) for x in prov['load_average_start'])}, "
              f"at end {tuple(round(x, 2) for x in prov['load_average_end'])}",
              f"- loss check: rungs 0-6 agree to {prov['loss_check_spread']:.1e} on one batch (same weights and negatives)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
