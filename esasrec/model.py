"""The sequential recommender: item + position embeddings, a stack of blocks, tied scoring.

``SeqRecModel`` takes tensors of internal item ids (1..I, 0 = padding). Its public inputs are
left-padded (B, L), the layout REFERENCE §1 describes; internally each row is rolled so its real
items come first (right padding), which lets attention use a plain causal mask (see layers.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from esasrec.layers import LiGRBlock, Packing, SASRecBlock
from esasrec.losses import LOSSES

__all__ = ["ModelConfig", "SeqRecModel", "left_to_right", "right_to_left"]

BLOCKS = {"sasrec": SASRecBlock, "ligr": LiGRBlock}


@dataclass
class ModelConfig:
    """Architecture and loss. Defaults are the paper's eSASRec on Beauty (REFERENCE §3)."""

    n_items: int = 0  # catalogue size I; set from the data by the trainer
    d_model: int = 64
    n_blocks: int = 1
    n_heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    block: str = "ligr"  # "sasrec" | "ligr"
    ffn_mult: int = 4  # SwiGLU hidden = ffn_mult * d_model (SASRec blocks: FFN hidden size multiplier)
    loss: str = "sampled_softmax"  # "sampled_softmax" | "bce" | "gbce" | "softmax"
    n_negatives: int = 256
    gbce_t: float = 0.75
    shared_negatives: bool = False  # one set of negatives per batch instead of per position
    logq: bool = False  # subtract log item frequency from training logits

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def left_to_right(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Roll each left-padded row of ``x`` (B, L, ...) so its ``lengths`` real entries come first."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device) + (L - lengths)[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def right_to_left(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of ``left_to_right``."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device) - (L - lengths)[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class SeqRecModel(nn.Module):
    """SASRec / eSASRec: embeddings -> blocks -> (final LN for SASRec blocks) -> h · E[item]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.n_items < 1:
            raise ValueError("ModelConfig.n_items must be set to the catalogue size (>= 1)")
        self.config = config
        d = config.d_model
        self.item_emb = nn.Embedding(config.n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)  # index 0 = the most recent item
        self.emb_dropout = nn.Dropout(config.dropout)
        block = BLOCKS[config.block]
        self.blocks = nn.ModuleList(
            block(d, config.n_heads, config.dropout, config.ffn_mult) for _ in range(config.n_blocks)
        )
        # LiGR's gated residual stream is left un-normalised (REFERENCE §1.2).
        self.final_norm = nn.LayerNorm(d) if config.block == "sasrec" else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal for every weight with >= 2 dims (REFERENCE §1.4); padding row zero."""
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode_packed(self, item_ids: torch.Tensor, n_real: int | None = None) -> tuple[torch.Tensor, Packing]:
        """Hidden states of the real positions of right-padded ids (B, L): (N, D) and the packing.

        ``n_real``, the number of nonzero ids when the caller already knows it, spares a
        device-to-host sync (the trainer passes it; see ``Packing``).
        """
        B, L = item_ids.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len={self.config.max_len}")
        pad_mask = item_ids == 0  # (B, L)
        packing = Packing(pad_mask, n_real)
        lengths = (~pad_mask).sum(1, keepdim=True)  # (B, 1)
        pos = lengths - 1 - torch.arange(L, device=item_ids.device)  # (B, L), 0 = the most recent item
        # No sqrt(d) scaling of the item embedding (REFERENCE §1).
        h = self.item_emb(packing.pack(item_ids)) + self.pos_emb(packing.pack(pos))  # (N, D)
        h = self.emb_dropout(h)
        for block in self.blocks:
            h = block.forward_packed(h, packing)
        return self.final_norm(h), packing

    def encode_right_padded(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) for right-padded ids (B, L): real items first, then zeros."""
        h, packing = self.encode_packed(item_ids)
        return packing.unpack(h)

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) for left-padded ids (B, L); padding positions are zero."""
        lengths = (item_ids != 0).sum(1)
        h = self.encode_right_padded(left_to_right(item_ids, lengths))
        return right_to_left(h, lengths)

    def user_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The hidden state at the last position of each left-padded history (B, D)."""
        lengths = (item_ids != 0).sum(1)
        h = self.encode_right_padded(left_to_right(item_ids, lengths))  # (B, L, D)
        last = (lengths - 1).clamp_min(0)
        return h[torch.arange(len(h), device=h.device), last]  # (B, D)

    def score_all(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Scores of every id (B, I + 1); column 0 is padding and never a valid item."""
        return user_vectors @ self.item_emb.weight.T

    def score_candidates(self, user_vectors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of given candidate ids (B, C)."""
        return torch.einsum("bd,bcd->bc", user_vectors, self.item_emb(candidates))

    @torch.no_grad()
    def recommend(self, histories: torch.Tensor, k: int = 10, exclude_seen: bool = True) -> torch.Tensor:
        """Top-k item ids (B, k) for left-padded histories (B, L), best first.

        Excludes padding and, with ``exclude_seen``, every item in the given history; when fewer
        than k items remain, the row ends in 0 ("no item").
        """
        scores = self.score_all(self.user_vectors(histories)).float()  # (B, I + 1)
        scores[:, 0] = -torch.inf
        if exclude_seen:
            scores.scatter_(1, histories, -torch.inf)
        top = scores.topk(min(k, self.config.n_items), dim=1)
        # Fewer unseen items than k: the tail would be excluded items; report "no item" (0) instead.
        return top.indices.masked_fill(top.values == -torch.inf, 0)
