"""Parity with RecTools 0.19: our LiGR model and sampled-softmax loss compute the same function.

`rectools_parity_dump.py` (run in the RecTools venv) builds a RecTools eSASRec model, runs a
fixed left-padded batch with fixed negatives through RecTools' own code, and saves the weights,
the sequence outputs, the candidate logits, the training-step loss and the gradients. This
script copies those weights into `esasrec.model.SeqRecModel` and compares, in fp32, at every
real (non-padding) position. The dump from a real RecTools run is committed at
benchmarks/results/parity/rectools_parity.pt, so the check runs anywhere (tests/test_parity.py).

Usage: python benchmarks/parity_rectools.py [DUMP]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from esasrec.losses import candidate_logits, sampled_softmax_loss
from esasrec.model import ModelConfig, SeqRecModel

DEFAULT_DUMP = Path(__file__).parent / "results" / "parity" / "rectools_parity.pt"

# RecTools name -> ours; "{i}" is the block index.
BLOCK_NAMES = {
    "multi_head_attn.in_proj_weight": "attn.in_proj.weight",  # packed (3d, d), rows q, k, v in both
    "multi_head_attn.in_proj_bias": "attn.in_proj.bias",
    "multi_head_attn.out_proj.weight": "attn.out_proj.weight",
    "multi_head_attn.out_proj.bias": "attn.out_proj.bias",
    "layer_norm_1.weight": "attn_norm.weight",
    "layer_norm_1.bias": "attn_norm.bias",
    "layer_norm_2.weight": "ffn_norm.weight",
    "layer_norm_2.bias": "ffn_norm.bias",
    "feed_forward.ff_linear_1.weight": "w1.weight",  # SiLU branch
    "feed_forward.ff_linear_3.weight": "w3.weight",  # linear branch
    "feed_forward.ff_linear_2.weight": "w2.weight",  # down projection
    "gating_linear_1.weight": "attn_gate.weight",
    "gating_linear_1.bias": "attn_gate.bias",
    "gating_linear_2.weight": "ffn_gate.weight",
    "gating_linear_2.bias": "ffn_gate.bias",
}
TOP_NAMES = {
    "item_model.item_net_blocks.0.ids_emb.weight": "item_emb.weight",
    "pos_encoding_layer.pos_emb.weight": "pos_emb.weight",
}


def rectools_to_ours(name: str) -> str:
    """Our parameter name for a RecTools state_dict key."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    prefix = "transformer_layers.transformer_blocks."
    index, rest = name[len(prefix):].split(".", 1)
    return f"blocks.{index}.{BLOCK_NAMES[rest]}"


def check_parity(dump_path: Path = DEFAULT_DUMP) -> dict[str, float]:
    """Max absolute differences between RecTools' dumped results and ours on the same weights."""
    dump = torch.load(dump_path, map_location="cpu", weights_only=False)
    cfg = dump["config"]
    config = ModelConfig(n_items=cfg["n_items"], d_model=cfg["d_model"], n_blocks=cfg["n_blocks"],
                         n_heads=cfg["n_heads"], dropout=cfg["dropout"], max_len=cfg["max_len"],
                         block=cfg["block"], ffn_mult=cfg["ffn_mult"], loss="sampled_softmax",
                         n_negatives=cfg["n_negatives"])
    model = SeqRecModel(config)
    state = {rectools_to_ours(k): v for k, v in dump["state_dict"].items()}
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise AssertionError(f"parameters not mapped one to one: {sorted(missing)}")
    model.load_state_dict(state)
    model.eval()

    x, y, negatives = dump["x"], dump["y"], dump["negatives"]  # (B, L), (B, L), (B, L, k)
    real = y != 0  # RecTools' target weights: 1 at real targets
    h = model.encode(x)  # (B, L, D), left-padded like RecTools
    cand = torch.cat([y[..., None], negatives], dim=-1)[real]  # (N, 1 + k)
    logits = candidate_logits(h[real], model.item_emb.weight, cand)
    model.train()  # dropout is 0: the training-mode loss equals RecTools' training_step
    h_train = model.encode(x)[real]
    loss = sampled_softmax_loss(h_train, model.item_emb.weight, y[real], negatives[real])
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    grad_diff = max(
        (grads[rectools_to_ours(k)] - g).abs().max().item()
        for k, g in dump["grads"].items()
        # RecTools' padding row gets no gradient; ours neither (padding_idx=0): compare all rows.
    )
    return {
        "sequence_output": (h[real] - dump["seq_out"][real]).abs().max().item(),
        "logits": (logits - dump["logits"][real]).abs().max().item(),
        "sampled_softmax_loss": (loss.detach() - dump["loss"]).abs().item(),
        "gradients": grad_diff,
    }


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_DUMP
    dump = torch.load(path, map_location="cpu", weights_only=False)
    print(f"RecTools dump: {path} (versions {dump['versions']})")
    diffs = check_parity(path)
    for key, value in diffs.items():
        print(f"  max |ours - RecTools| {key:<22} {value:.2e}  {'ok' if value < 1e-5 else 'MISMATCH'}")
    return 0 if all(v < 1e-5 for v in diffs.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
