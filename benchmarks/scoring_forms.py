"""Candidate scoring on the ML-1M configuration: fused gather or catalogue product, eager or compiled.

``losses.candidate_logits`` scores the 1 + k candidates of each position either by gathering
their embeddings (under ``torch.compile`` a fused loop that never writes the (N, 1+k, D) tensor)
or by one (N, D) x (D, I) product over the whole catalogue and a gather of 1 + k columns. Under
compile it switches at ``COMPILED_GATHER_RATIO`` x (1 + k) catalogue rows. This script times whole
training steps (``speed_choices.Step``: forward, loss, backward, Adam) of the ML-1M configuration
(d 64, 2 blocks, L 200, 256 negatives, 3,706 items) with each form forced, on batches of
ML-1M-shaped random histories (6,040 users, log-normal lengths with median 96, clipped to
20..201), so no dataset is needed. Beauty's side of the comparison is rung 0 against rung 1 of
``speed_choices.py``.

    python benchmarks/scoring_forms.py            # prints seconds per epoch for each form
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

import esasrec.losses as losses
from esasrec.model import SeqRecModel
from esasrec.presets import preset

import speed_choices as sc  # this folder is on sys.path when run as a script



def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    mc, _ = preset("esasrec", "ml-1m")
    mc.n_items = 3706
    rng = np.random.default_rng(0)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(96), 1.04, 6040))), 20, mc.max_len + 1).astype(np.int64)
    lengths = torch.from_numpy(lengths)
    seqs = torch.randint(1, mc.n_items + 1, (6040, mc.max_len + 1), generator=torch.Generator().manual_seed(0))
    seqs[torch.arange(mc.max_len + 1) >= lengths[:, None]] = 0
    batches, per_epoch = sc.sample_batches(seqs, lengths, 128, args.batches, mc.max_len)
    torch.manual_seed(0)
    init = SeqRecModel(mc).state_dict()
    print(f"ML-1M shape: {per_epoch} batches per epoch, timing {len(batches)}; "
          f"real positions per batch {[n for _, _, n in batches]}; catalogue {mc.n_items + 1} rows = "
          f"{(mc.n_items + 1) / (mc.n_negatives + 1):.1f} x (1 + k); compiled switch at {losses.COMPILED_GATHER_RATIO} x (1 + k)")

    shipped = sc.Variant("shipped")
    forms = [("compiled, as shipped", shipped, None),
             ("compiled, fused gather forced", shipped, 0),
             ("compiled, catalogue product forced", shipped, 10 ** 9),
             ("eager (catalogue product at this size)", replace(shipped, compile=False), None),
             ("eager, bf16 autocast", replace(shipped, compile=False, precision="bf16"), None)]
    saved = losses.COMPILED_GATHER_RATIO
    out = {}
    for name, variant, ratio in forms:
        torch._dynamo.reset()  # the switch is decided at trace time: retrace for every form
        losses.COMPILED_GATHER_RATIO = saved if ratio is None else ratio
        try:
            times = sc.time_variant(variant, mc, init, torch.device("cpu"), batches, args.repeats)
        finally:
            losses.COMPILED_GATHER_RATIO = saved
        out[name] = min(times) * per_epoch / len(batches)
        print(f"{name:<42} {out[name]:6.1f} s/epoch", flush=True)
    return out


if __name__ == "__main__":
    main()
