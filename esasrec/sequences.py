"""From interaction frames to tensors: id mappings and padded sequence matrices.

This is where data frames stop. Items get internal ids 1..I (0 is padding) and each user a row
of one left-padded id matrix, built once with vectorised pandas/numpy (no per-user loop) and then
sliced into batches on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from esasrec.split import time_order

__all__ = ["IdMap", "Histories", "build_histories"]


class IdMap:
    """Raw ids <-> internal ids ``offset .. offset + n - 1`` in order of first appearance."""

    def __init__(self, raw_ids, offset: int = 1):
        self.index = pd.Index(pd.unique(pd.Series(raw_ids)))
        self.offset = offset

    def __len__(self) -> int:
        return len(self.index)

    def encode(self, raw_ids, unknown: int = -1) -> np.ndarray:
        """Internal ids for ``raw_ids``; ids never seen map to ``unknown``."""
        pos = self.index.get_indexer(pd.Series(raw_ids))
        return np.where(pos >= 0, pos + self.offset, unknown).astype(np.int64)

    def decode(self, ids) -> np.ndarray:
        """Raw ids for internal ids (numpy array or tensor)."""
        ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        return self.index.to_numpy()[ids - self.offset]

    def to_list(self) -> list:
        return self.index.tolist()

    @classmethod
    def from_list(cls, raw_ids: list, offset: int = 1) -> "IdMap":
        return cls(raw_ids, offset=offset)


@dataclass
class Histories:
    """Every user's time-ordered items as one left-padded matrix plus CSR lists of seen items.

    Attributes:
        users: IdMap of raw user ids -> rows 0..U-1.
        seqs: (U, width) int64, the last ``width`` items of each user, left-padded with 0.
        seen_indptr, seen_indices: CSR of all items each user interacted with (for exclusion).
    """

    users: IdMap
    seqs: torch.Tensor
    seen_indptr: torch.Tensor
    seen_indices: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return (self.seqs != 0).sum(1)


def build_histories(df: pd.DataFrame, items: IdMap, width: int, users: IdMap | None = None) -> Histories:
    """Left-padded matrix of each user's last ``width`` known items, in time order.

    Items not in ``items`` (cold) are dropped from the histories. Users of ``users`` without any
    interaction in ``df`` get an all-padding row.

    >>> df = pd.DataFrame({"user_id": [7, 7, 8, 7], "item_id": ["a", "b", "a", "c"], "timestamp": [1, 2, 3, 3]})
    >>> h = build_histories(df, IdMap(df["item_id"]), width=2)
    >>> h.seqs.tolist()
    [[2, 3], [0, 1]]
    """
    users = users if users is not None else IdMap(df["user_id"], offset=0)
    ordered = time_order(df)
    item_ids = items.encode(ordered["item_id"].to_numpy())
    rows = users.encode(ordered["user_id"].to_numpy())
    keep = (item_ids > 0) & (rows >= 0)
    item_ids, rows = item_ids[keep], rows[keep]  # grouped by row, time-ordered within a row

    n_users = len(users)
    counts = np.bincount(rows, minlength=n_users)
    # Rows are sorted by user only when the IdMap follows first appearance in time_order;
    # sort stably by row to make the CSR layout independent of that.
    order = np.argsort(rows, kind="stable")
    rows, item_ids = rows[order], item_ids[order]
    indptr = np.concatenate([[0], np.cumsum(counts)])
    pos_from_end = indptr[rows + 1] - 1 - np.arange(len(rows))  # 0 = the user's latest item
    recent = pos_from_end < width
    seqs = np.zeros((n_users, width), dtype=np.int64)
    seqs[rows[recent], width - 1 - pos_from_end[recent]] = item_ids[recent]
    return Histories(
        users=users,
        seqs=torch.from_numpy(seqs),
        seen_indptr=torch.from_numpy(indptr.astype(np.int64)),
        seen_indices=torch.from_numpy(item_ids.astype(np.int64)),
    )
