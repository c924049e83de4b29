"""Recompute a RecTools parity dump with plain torch ops, to pin down the weight mapping.

Reads the file written by ``rectools_parity_dump.py`` and re-derives the sequence outputs,
the [positive, negatives] logits and the sampled-softmax loss from the saved state_dict
with an explicit, loop-free re-implementation of RecTools' eSASRec (the math described in
``RECTOOLS_NOTES.md``), then asserts they match RecTools' own values. Needs only torch, so
it runs in either virtual environment.

Usage: python benchmarks/check_rectools_dump.py benchmarks/runs/parity/rectools_parity.pt
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F


def layer_norm(h: torch.Tensor, sd: dict, prefix: str, eps: float) -> torch.Tensor:
    return F.layer_norm(h, h.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def ligr_block(h: torch.Tensor, allowed: torch.Tensor, sd: dict, p: str, n_heads: int, eps: float) -> torch.Tensor:
    """One LiGR block; `allowed` (B, L, L) is True where query t may attend to key s."""
    B, L, D = h.shape
    dh = D // n_heads
    a_in = layer_norm(h, sd, f"{p}.layer_norm_1", eps)  # (B, L, D)
    w_q, w_k, w_v = sd[f"{p}.multi_head_attn.in_proj_weight"].chunk(3)  # each (D, D), rows q | k | v
    b_q, b_k, b_v = sd[f"{p}.multi_head_attn.in_proj_bias"].chunk(3)  # each (D,)
    q = (a_in @ w_q.T + b_q).view(B, L, n_heads, dh).transpose(1, 2)  # (B, H, L, dh)
    k = (a_in @ w_k.T + b_k).view(B, L, n_heads, dh).transpose(1, 2)
    v = (a_in @ w_v.T + b_v).view(B, L, n_heads, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, H, L, L)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    attn = scores.softmax(-1) @ v  # (B, H, L, dh)
    attn = attn.transpose(1, 2).reshape(B, L, D)
    attn = attn @ sd[f"{p}.multi_head_attn.out_proj.weight"].T + sd[f"{p}.multi_head_attn.out_proj.bias"]
    gate_1 = torch.sigmoid(h @ sd[f"{p}.gating_linear_1.weight"].T + sd[f"{p}.gating_linear_1.bias"])
    h = h + gate_1 * attn
    f_in = layer_norm(h, sd, f"{p}.layer_norm_2", eps)
    w1 = sd[f"{p}.feed_forward.ff_linear_1.weight"]  # (m D, D), SiLU branch
    w3 = sd[f"{p}.feed_forward.ff_linear_3.weight"]  # (m D, D), linear branch
    w2 = sd[f"{p}.feed_forward.ff_linear_2.weight"]  # (D, m D)
    ff = (F.silu(f_in @ w1.T) * (f_in @ w3.T)) @ w2.T
    gate_2 = torch.sigmoid(h @ sd[f"{p}.gating_linear_2.weight"].T + sd[f"{p}.gating_linear_2.bias"])
    return h + gate_2 * ff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump")
    args = parser.parse_args()
    dump = torch.load(args.dump, weights_only=False)
    cfg, sd = dump["config"], dump["state_dict"]
    x, y, negatives = dump["x"], dump["y"], dump["negatives"]
    B, L = x.shape

    item_emb = sd["item_model.item_net_blocks.0.ids_emb.weight"]  # (I + 1, D); row 0 = padding, not zero
    pos_emb = sd["pos_encoding_layer.pos_emb.weight"]  # (L, D); row 0 = most recent position
    h = item_emb[x] + pos_emb.flip(0)  # position t (0 = leftmost) gets pos_emb[L - 1 - t]

    pad = x == 0  # (B, L)
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))  # (L, L)
    allowed = causal & ~pad[:, None, :]  # (B, L, L): no future keys, no padding keys
    allowed = allowed | torch.eye(L, dtype=torch.bool)  # the diagonal is always allowed
    for block in range(cfg["n_blocks"]):
        h = ligr_block(h, allowed, sd, f"transformer_layers.transformer_blocks.{block}", cfg["n_heads"],
                       cfg["layer_norm_eps"])
    torch.testing.assert_close(h, dump["seq_out"], rtol=1e-5, atol=1e-5)  # includes padded rows

    candidates = torch.cat([y[..., None], negatives], -1)  # (B, L, 1 + N)
    logits = (item_emb[candidates] * h[:, :, None, :]).sum(-1)  # (B, L, 1 + N)
    torch.testing.assert_close(logits, dump["logits"], rtol=1e-5, atol=1e-5)

    ce = torch.logsumexp(logits, -1) - logits[..., 0]  # (B, L); positive at index 0
    loss = ce[y != 0].mean()
    torch.testing.assert_close(loss, dump["loss"], rtol=1e-5, atol=1e-6)

    full = h @ item_emb.T  # (B, L, I + 1), includes the padding item's column
    torch.testing.assert_close(full, dump["full_logits"], rtol=1e-5, atol=1e-5)
    full_ce = torch.logsumexp(full, -1) - full.gather(-1, y[..., None]).squeeze(-1)
    torch.testing.assert_close(full_ce[y != 0].mean(), dump["loss_full_softmax"], rtol=1e-5, atol=1e-6)
    print(f"ok: seq_out, logits, loss {loss.item():.6f} and full-softmax loss reproduced from {args.dump}")


if __name__ == "__main__":
    main()
