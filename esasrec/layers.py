"""Transformer blocks: the original SASRec block and the LiGR block eSASRec uses (REFERENCE §1.1, §1.2).

Both blocks take the residual stream ``h`` of shape (B, L, D) and ``pad_mask`` (B, L), True at
padding, and return the new stream with padding positions zeroed; the model calls their
``forward_packed`` on real positions only (below).

Sequences reach the blocks *right*-padded (real items first, padding after them; the model
rolls its left-padded input, see ``model.py``). With right padding a causal mask alone already
keeps every real position away from padding, because padding only ever lies in a real
position's future. So attention runs with ``is_causal=True`` and no explicit mask, which lets
PyTorch pick its fused flash / memory-efficient kernels; a padded query sees real items and
earlier padding, so it is never fully masked and never produces NaN. Its output is zeroed anyway.

Only attention needs the (B, L) layout. Everything else in a block (LayerNorms, projections,
gates, feed-forward) acts on each position alone, so the model runs those on the N real
positions packed into one (N, D) matrix (``Packing``) and spends no work on padding: on Amazon
Beauty, with a mean history of 9 items in rows of up to 50, that is about 5x fewer rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Packing", "CausalSelfAttention", "SASRecBlock", "LiGRBlock"]


class Packing:
    """Moves per-position values between the padded (B, L, ...) layout and packed (N, ...) rows."""

    def __init__(self, pad_mask: torch.Tensor, n_real: int | None = None):
        """``n_real``: the number of real positions, given when the caller knows it on the host and
        every row is right-padded (real items first); then nothing is read back from the device."""
        self.shape = pad_mask.shape  # (B, L)
        if n_real is None:
            self.index = (~pad_mask).reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real items
        else:
            # Row b's real positions are b * L + 0 .. len_b - 1. nonzero() would have to read N back
            # from the device to size its result; repeat_interleave is told it (output_size).
            B, L = self.shape
            lengths = (~pad_mask).sum(1)  # (B,)
            rows = torch.repeat_interleave(torch.arange(B, device=pad_mask.device), lengths, output_size=n_real)  # (N,)
            starts = lengths.cumsum(0) - lengths  # (B,) packed index of each row's first item
            self.index = rows * L + torch.arange(n_real, device=pad_mask.device) - starts[rows]  # (N,)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> (N, ...)"""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, L, ...), zeros at padding."""
        out = x.new_zeros(self.shape[0] * self.shape[1], *x.shape[1:])
        return out.index_copy(0, self.index, x).view(*self.shape, *x.shape[1:])


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention through ``F.scaled_dot_product_attention``.

    Parameters mirror ``nn.MultiheadAttention``: one packed ``in_proj`` (3D x D) for q, k, v and
    an ``out_proj``, both with bias.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, packing: Packing, kv: torch.Tensor | None = None) -> torch.Tensor:
        """Attention over packed rows: queries from ``x`` (N, D), keys/values from ``kv`` (default ``x``)."""
        D = x.shape[-1]
        if kv is None:
            qkv = self.in_proj(x)  # (N, 3D)
        else:
            # SASRec's block queries with LN(h) but takes keys and values from h itself.
            w, b = self.in_proj.weight, self.in_proj.bias
            qkv = torch.cat([F.linear(x, w[:D], b[:D]), F.linear(kv, w[D:], b[D:])], dim=-1)  # (N, 3D)
        B, L = packing.shape
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)
                   for t in packing.unpack(qkv).chunk(3, dim=-1))  # 3 x (B, H, L, D/H)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, D/H)
        return self.out_proj(packing.pack(out.transpose(1, 2).reshape(B, L, D)))  # (N, D)


class _Block(nn.Module):
    """Shared entry point: blocks run on packed rows; called on (B, L, D) they pack and unpack."""

    def forward(self, h: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D) right-padded stream, pad_mask (B, L) True at padding -> (B, L, D), padding zero."""
        packing = Packing(pad_mask)
        return packing.unpack(self.forward_packed(packing.pack(h), packing))


class SASRecBlock(_Block):
    """Kang & McAuley's block: q = LN(h); h = q + MHA(q, h, h); f = LN(h); h = f + Dropout(FFN(f))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, ffn_mult: int = 1):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        # SASRec's feed-forward is d -> d (ffn_mult=1); the option exists for ablations.
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward_packed(self, h: torch.Tensor, packing: Packing) -> torch.Tensor:
        """(N, D) packed stream -> (N, D)."""
        q = self.attn_norm(h)
        h = q + self.attn(q, packing, kv=h)  # the residual starts from the normalised query, as in SASRec
        f = self.ffn_norm(h)
        return f + self.ffn(f)


class LiGRBlock(_Block):
    """LiGR: pre-LN attention and SwiGLU, each added through a sigmoid gate computed from ``h``.

        a = MHA(LN1(h));  h = h + sigmoid(G1 h + b1) * Dropout(a)
        f = W2 Dropout(SiLU(W1 LN2(h)) * W3 LN2(h));  h = h + sigmoid(G2 h + b2) * Dropout(f)
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, ffn_mult: int = 4):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.attn_gate = nn.Linear(d_model, d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.w1 = nn.Linear(d_model, ffn_mult * d_model, bias=False)
        self.w3 = nn.Linear(d_model, ffn_mult * d_model, bias=False)
        self.w2 = nn.Linear(ffn_mult * d_model, d_model, bias=False)
        self.ffn_gate = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def swiglu(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.dropout(F.silu(self.w1(x)) * self.w3(x)))  # (N, D)

    def forward_packed(self, h: torch.Tensor, packing: Packing) -> torch.Tensor:
        """(N, D) packed stream -> (N, D)."""
        # Gates read the un-normalised stream h, not LN(h) (LiGR, arXiv 2502.03417).
        h = h + torch.sigmoid(self.attn_gate(h)) * self.dropout(self.attn(self.attn_norm(h), packing))
        return h + torch.sigmoid(self.ffn_gate(h)) * self.dropout(self.swiglu(self.ffn_norm(h)))
