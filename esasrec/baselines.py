"""Non-learned baselines: the paper's "Popular" and "Popular-7-days" (REFERENCE §4).

Recommendations go through :func:`esasrec.metrics.topk_from_scores` with one constant score row,
so a baseline and a model share the same exclusion of seen items and the same tie rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from esasrec.errors import DataError
from esasrec.metrics import topk_from_scores
from esasrec.split import DAY

__all__ = ["PopularRecommender"]


def _check_columns(df: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name} is missing column(s) {missing}; it needs {list(columns)} (has {list(df.columns)})")


class PopularRecommender:
    """Most popular items by number of distinct users, overall or over the last ``days`` of train.

    With ``days`` set, popularity counts only interactions with
    ``timestamp >= last train timestamp - days * 86400`` (RecTools' ``PopularModel(period=...)``,
    which the paper's "Popular-7-days" uses with ``days=7``), and only items seen in that window
    are candidates, so a user who has seen all of them gets fewer than k items.

    Ties on popularity: the item first seen earlier in train (by timestamp, then row order) ranks
    first. Internal item ids are assigned in that order, so this is also "lower internal id first",
    the rule of :func:`~esasrec.metrics.topk_from_scores`.

    >>> train = pd.DataFrame({"user_id": [1, 1, 2, 3, 3], "item_id": ["a", "b", "b", "c", "a"],
    ...                       "timestamp": [0, 1, 2, 3, 4]})
    >>> PopularRecommender().fit(train).recommend([1, 2, 9], k=2)
       user_id item_id  rank
    0        1       c     1
    1        2       a     1
    2        2       c     2
    3        9       a     1
    4        9       b     2
    """

    def __init__(self, days: float | None = None):
        if days is not None and not days > 0:
            raise ValueError(f"days must be positive or None, got {days}")
        self.days = days

    def fit(self, train: pd.DataFrame) -> "PopularRecommender":
        """Count distinct users per item (in the window when ``days`` is set).

        Args:
            train: columns user_id, item_id, timestamp (int unix seconds).

        Returns:
            self, with ``item_ids_`` (raw id of internal id ``i`` at position ``i - 1``) and
            ``popularity_`` (distinct users per internal id in the window, index 0 = padding).
        """
        _check_columns(train, "train", ("user_id", "item_id", "timestamp"))
        if len(train) == 0:
            raise DataError("train is empty: there is nothing to count")
        by_time = train.sort_values("timestamp", kind="stable")
        self.item_ids_ = pd.Index(pd.unique(by_time["item_id"]))  # internal id = position + 1
        window = train
        if self.days is not None:
            start = train["timestamp"].max() - self.days * DAY
            window = train[train["timestamp"] >= start]
        pairs = window[["user_id", "item_id"]].drop_duplicates()
        item_codes = torch.from_numpy(self.item_ids_.get_indexer(pairs["item_id"]).astype(np.int64) + 1)
        self.popularity_ = torch.bincount(item_codes, minlength=len(self.item_ids_) + 1)  # (I + 1,)
        self._seen = train[["user_id", "item_id"]]
        return self

    def recommend(
        self,
        users,
        k: int = 10,
        *,
        train: pd.DataFrame | None = None,
        exclude_seen: bool = True,
    ) -> pd.DataFrame:
        """Top-k popular items for each user, minus what the user saw.

        Args:
            users: raw user ids (duplicates are dropped; unknown users get the plain popular list).
            k: items per user.
            train: interactions whose (user_id, item_id) pairs are excluded; default: the fitted train.
            exclude_seen: exclude seen items at all.

        Returns:
            columns user_id, item_id, rank (1 = best), users in the given order.
        """
        if not hasattr(self, "popularity_"):
            raise RuntimeError("call fit(train) before recommend()")
        user_index = pd.Index(pd.unique(np.asarray(users)))
        n_users = len(user_index)
        # Items outside the window score -inf, which topk_from_scores never returns.
        score_row = torch.where(self.popularity_ > 0, self.popularity_.to(torch.float32), float("-inf"))  # (I + 1,)

        seen_indptr = seen_indices = None
        if exclude_seen:
            seen = self._seen if train is None else train
            _check_columns(seen, "train", ("user_id", "item_id"))
            rows = user_index.get_indexer(seen["user_id"])
            items = self.item_ids_.get_indexer(seen["item_id"]) + 1
            known = (rows >= 0) & (items > 0)  # items the model never saw cannot be recommended anyway
            rows, items = rows[known], items[known]
            order = np.argsort(rows, kind="stable")
            seen_indices = items[order].astype(np.int64)
            seen_indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_users))])

        topk = topk_from_scores(
            lambda r: score_row.expand(len(r), -1),  # a view: topk_from_scores does not write to it
            n_users,
            k,
            seen_indptr=seen_indptr,
            seen_indices=seen_indices,
        ).numpy()  # (U, k)
        rows, cols = np.nonzero(topk)  # row-major: users in order, ranks ascending
        return pd.DataFrame(
            {
                "user_id": user_index.take(rows),
                "item_id": self.item_ids_.take(topk[rows, cols] - 1),
                "rank": cols + 1,
            }
        )
