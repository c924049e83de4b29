"""Dump a RecTools 0.19.0 eSASRec forward pass and loss, for parity tests of our model.

Runs inside ``benchmarks/.rectools-venv`` (see ``setup_rectools.sh``). Builds RecTools'
eSASRec (``SASRecModel`` with ``LiGRLayers``, sampled softmax, key padding mask) on a
20-item toy dataset through RecTools' own construction path, initialises it with RecTools'
own Xavier init, runs a fixed left-padded batch through it in eval mode with dropout 0 and
saves everything with ``torch.save``. The file format is documented in
``benchmarks/RECTOOLS_NOTES.md`` ("Parity dump").

Usage: benchmarks/.rectools-venv/bin/python benchmarks/rectools_parity_dump.py OUT.pt
"""

from __future__ import annotations

import argparse
import importlib.metadata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_lightning import seed_everything

from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.item_net import IdEmbeddingsItemNet
from rectools.models.nn.transformers.ligr import LiGRLayers

N_ITEMS = 20
D_MODEL = 16
N_BLOCKS = 2
N_HEADS = 2
FFN_MULT = 4
MAX_LEN = 8
N_NEGATIVES = 5

# Training sessions (external item ids, time order). Shifted-sequence collate turns a session
# s into x = s[:-1], y = s[1:], keeping the last MAX_LEN + 1 items, left-padded with 0.
SESSIONS = [
    [3, 7, 1, 12, 7, 20, 5, 9, 14, 2, 11],  # longer than MAX_LEN + 1: truncated from the left
    [4, 18, 6, 13],  # short: 3 inputs, 5 padded positions
    [19, 8],  # one input item
]


def toy_dataset() -> Dataset:
    """Interactions whose items appear in time order 1..20, so internal id == external id.

    RecTools builds its item id map from the train interactions left after keeping each
    user's last MAX_LEN + 1, so the catalogue users get at most MAX_LEN + 1 items each.
    """
    rows = []
    t = 0
    for start in range(1, N_ITEMS + 1, MAX_LEN + 1):  # catalogue users first: items in id order
        for item in range(start, min(start + MAX_LEN + 1, N_ITEMS + 1)):
            rows.append((f"catalogue_{start}", item, t))
            t += 1
    for user, session in enumerate(SESSIONS):
        for item in session:
            rows.append((f"user_{user}", item, t))
            t += 1
    df = pd.DataFrame(rows, columns=[Columns.User, Columns.Item, "t"])
    df[Columns.Weight] = 1.0
    df[Columns.Datetime] = pd.to_datetime(df.pop("t"), unit="s")
    return Dataset.construct(df)


def versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("rectools", "torch", "pytorch-lightning", "numpy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output .pt file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-perturb", action="store_true",
                        help="keep RecTools' init of 1-D parameters (LayerNorm 1/0, zero attention biases)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    seed_everything(args.seed)

    model = SASRecModel(
        transformer_layers_type=LiGRLayers,
        transformer_layers_kwargs={"ff_factors_multiplier": FFN_MULT},
        item_net_block_types=(IdEmbeddingsItemNet,),
        loss="sampled_softmax",
        n_negatives=N_NEGATIVES,
        use_key_padding_mask=True,
        use_causal_attn=True,
        n_factors=D_MODEL,
        n_blocks=N_BLOCKS,
        n_heads=N_HEADS,
        dropout_rate=0.0,
        session_max_len=MAX_LEN,
        batch_size=len(SESSIONS) + 1,
    )
    # The same construction fit() performs before training (data preparator, item net,
    # backbone, lightning module), without starting a Trainer.
    model._build_model_from_dataset(toy_dataset())
    lightning_model = model.lightning_model
    torch_model = model.torch_model
    preparator = model.data_preparator

    external = preparator.item_id_map.external_ids  # index = internal id
    item_id_map = {ext: int(i) for i, ext in enumerate(external) if i >= preparator.n_item_extra_tokens}
    assert all(item_id_map[item] == item for item in range(1, N_ITEMS + 1)), item_id_map
    assert len(item_id_map) == N_ITEMS

    # RecTools' real init: TransformerLightningModule.on_train_start -> _xavier_normal_init.
    lightning_model._xavier_normal_init()
    if not args.no_perturb:
        # LayerNorms start at 1/0 and attention biases at 0: perturb every 1-D parameter so a
        # mis-mapped LayerNorm or bias shows up in the comparison.
        gen = torch.Generator().manual_seed(args.seed + 1)
        with torch.no_grad():
            for param in torch_model.parameters():
                if param.dim() == 1:
                    param.add_(0.1 * torch.randn(param.shape, generator=gen))

    # Batch: RecTools' own train collate for the real sessions, plus one fully padded row.
    internal_sessions = [[item_id_map[i] for i in s[-(MAX_LEN + 1):]] for s in SESSIONS]
    batch = preparator._collate_fn_train([(s, [1.0] * len(s), {}) for s in internal_sessions])
    x = torch.cat([batch["x"], torch.zeros(1, MAX_LEN, dtype=torch.long)])  # (B, L)
    y = torch.cat([batch["y"], torch.zeros(1, MAX_LEN, dtype=torch.long)])  # (B, L)
    yw = torch.cat([batch["yw"], torch.zeros(1, MAX_LEN)])  # (B, L)
    batch = {"x": x, "y": y, "yw": yw}
    # Negatives from RecTools' CatalogUniformSampler: uniform over internal ids 1..I, per
    # position, with replacement; seeded here so they are known.
    torch.manual_seed(args.seed + 2)
    negatives = preparator.negative_sampler.get_negatives(
        batch, lowest_id=preparator.n_item_extra_tokens, highest_id=preparator.item_id_map.size
    )  # (B, L, N)
    negatives[0, -1, 2] = y[0, -1]  # RecTools allows a negative equal to the positive: cover it
    batch["negatives"] = negatives

    torch_model.eval()
    with torch.no_grad():
        item_embs = torch_model.item_model.get_all_embeddings()  # (I + 1, D), row 0 = padding
        seq_out = torch_model.encode_sessions(batch, item_embs)  # (B, L, D)
        logits = lightning_model.get_batch_logits(batch)  # (B, L, 1 + N): [positive, negatives]
        full_logits = torch_model(batch=batch)  # (B, L, I + 1), column 0 = padding item
        # _calc_sampled_softmax_loss swaps columns in place, so it gets a copy.
        loss_eval = lightning_model.loss_calculator(logits.clone(), y, yw)
        loss_full_softmax = lightning_model._calc_softmax_loss(full_logits.clone(), y, yw)

    # The loss exactly as Lightning's training step computes it (train mode, dropout 0).
    torch_model.train()
    torch_model.zero_grad()
    loss = lightning_model.training_step(batch, 0)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in torch_model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(loss.detach(), loss_eval)

    padding_token = external[0]
    out = {
        "format_version": 1,
        "config": {
            "n_items": N_ITEMS, "d_model": D_MODEL, "n_blocks": N_BLOCKS, "n_heads": N_HEADS,
            "ffn_mult": FFN_MULT, "max_len": MAX_LEN, "n_negatives": N_NEGATIVES, "dropout": 0.0,
            "block": "ligr", "loss": "sampled_softmax", "use_key_padding_mask": True,
            "use_causal_attn": True, "seed": args.seed, "perturbed_1d_params": not args.no_perturb,
            "layer_norm_eps": 1e-5, "logits_t": lightning_model.logits_t,
            "adam_betas": lightning_model.adam_betas, "lr": lightning_model.lr,
            "rectools_config": model.get_config(simple_types=True),
        },
        "state_dict": {k: v.detach().clone() for k, v in torch_model.state_dict().items()},
        "item_id_map": item_id_map,
        "padding_token": str(padding_token),
        "padding_internal_id": 0,
        "x": x,
        "y": y,
        "yw": yw,
        "negatives": negatives,
        "item_embs": item_embs,
        "seq_out": seq_out,
        "logits": logits,
        "full_logits": full_logits,
        "loss": loss.detach(),
        "loss_full_softmax": loss_full_softmax,
        "grads": grads,
        "versions": versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out)
    assert not torch.isnan(seq_out).any()
    print(f"wrote {args.out}: loss {loss.item():.6f}, full-softmax loss {loss_full_softmax.item():.6f}")
    for name, tensor in out["state_dict"].items():
        print(f"  {name:75s} {tuple(tensor.shape)}")


if __name__ == "__main__":
    main()
