"""Evaluation protocols: the paper's global time split, leave-one-out, and a validation holdout.

Every function takes and returns interaction frames with columns ``user_id, item_id, timestamp``
and keeps the input's row order, because equal timestamps are broken by file order
(REFERENCE §2.2). Nothing here looks at scores or models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from esasrec.errors import DataError

DAY = 86_400  # seconds

__all__ = ["SplitStats", "time_split", "leave_one_out", "holdout_last", "time_order", "DAY"]


@dataclass
class SplitStats:
    """What a split kept and what each test filter removed (counts of interaction rows)."""

    protocol: str
    train_rows: int
    train_users: int
    train_items: int
    test_rows: int
    test_users: int
    test_items: int
    removed_cold_users: int
    removed_cold_items: int
    removed_seen: int
    removed_repeats: int
    window_start: int | None = None  # unix seconds; time split only
    window_end: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"split: {self.protocol}"]
        if self.window_start is not None:
            start = pd.Timestamp(self.window_start, unit="s").date()
            end = pd.Timestamp(self.window_end, unit="s").date()
            lines.append(f"  test window     [{start}, {end})")
        lines += [
            f"  train           {self.train_rows:>10,} rows {self.train_users:>8,} users {self.train_items:>8,} items",
            f"  test            {self.test_rows:>10,} rows {self.test_users:>8,} users {self.test_items:>8,} items",
            f"  removed from test: cold users {self.removed_cold_users:,}, cold items {self.removed_cold_items:,}, "
            f"seen in train {self.removed_seen:,}, repeats {self.removed_repeats:,}",
        ]
        return "\n".join(lines)


def time_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by user, each user's rows by time; equal times keep the input order.

    >>> df = pd.DataFrame({"user_id": [2, 1, 2, 1], "item_id": [10, 11, 12, 13], "timestamp": [5, 7, 5, 3]})
    >>> time_order(df)["item_id"].tolist()
    [13, 11, 10, 12]
    """
    by_time = df.sort_values("timestamp", kind="stable")
    return by_time.sort_values("user_id", kind="stable")


def _filter_test(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop cold users, cold items, pairs seen in train, and repeated pairs, in that order."""
    removed = {}
    keep = test["user_id"].isin(train["user_id"].unique())
    removed["removed_cold_users"] = int((~keep).sum())
    test = test[keep]
    keep = test["item_id"].isin(train["item_id"].unique())
    removed["removed_cold_items"] = int((~keep).sum())
    test = test[keep]
    train_pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
    seen = pd.MultiIndex.from_frame(test[["user_id", "item_id"]]).isin(train_pairs)
    removed["removed_seen"] = int(seen.sum())
    test = test[~seen]
    # A test user's relevant set is a set: an item bought twice in the window counts once.
    repeat = test.duplicated(["user_id", "item_id"], keep="first").to_numpy()
    removed["removed_repeats"] = int(repeat.sum())
    return test[~repeat], removed


def _stats(protocol: str, train: pd.DataFrame, test: pd.DataFrame, removed: dict, **extra) -> SplitStats:
    return SplitStats(
        protocol=protocol,
        train_rows=len(train),
        train_users=train["user_id"].nunique(),
        train_items=train["item_id"].nunique(),
        test_rows=len(test),
        test_users=test["user_id"].nunique(),
        test_items=test["item_id"].nunique(),
        **removed,
        **extra,
    )


def time_split(
    df: pd.DataFrame, test_days: float = 60, *, cut: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, SplitStats]:
    """The paper's global temporal split (REFERENCE §2.1).

    The test window is the last ``test_days`` days of the whole timeline, ending at the end of the
    day of the last interaction; or, with ``cut``, everything at or after that unix time. Train is
    every interaction before the window; test is the window minus cold users, cold items, pairs
    already seen in train and repeated pairs.

    Args:
        df: interactions ``user_id, item_id, timestamp`` (unix seconds), in file order.
        test_days: window length in days (ignored when ``cut`` is given).
        cut: explicit window start, unix seconds.

    Returns:
        ``(train, test, stats)``; both frames keep ``df``'s row order.

    >>> df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 1, 2, 2],
    ...                    "timestamp": [0, 5 * DAY, DAY, 9 * DAY, 9 * DAY]})
    >>> train, test, stats = time_split(df, test_days=2)
    >>> train["item_id"].tolist(), test["item_id"].tolist()
    ([1, 2, 1], [2])
    >>> stats.removed_cold_users, stats.removed_cold_items
    (1, 0)
    """
    if len(df) == 0:
        raise DataError("time_split got no interactions: the input frame is empty.")
    ts = df["timestamp"].to_numpy()
    window_end = (int(ts.max()) // DAY + 1) * DAY
    if cut is None:
        if not 0 < test_days < math.inf:
            raise DataError(f"test_days must be a positive number of days, got {test_days}.")
        # Round up: a window of 1.5 days must not take in the second before it starts.
        cut = math.ceil(window_end - test_days * DAY)
    in_test = ts >= cut
    train, test = df[~in_test], df[in_test]
    if len(train) == 0:
        first = pd.Timestamp(int(ts.min()), unit="s").date()
        raise DataError(
            f"The test window starting {pd.Timestamp(cut, unit='s').date()} covers all interactions "
            f"(the data starts {first}); choose fewer test days or a later cut."
        )
    test, removed = _filter_test(train, test)
    return train, test, _stats("time", train, test, removed, window_start=int(cut), window_end=window_end)


def _last_per_user(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask (aligned with df's rows) of each user's last interaction in time order."""
    ordered = time_order(df)
    last_index = ordered.index[~ordered["user_id"].duplicated(keep="last").to_numpy()]
    return df.index.isin(last_index)


def leave_one_out(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, SplitStats]:
    """Each user's last interaction is test, the rest is train (REFERENCE §2.2).

    Ties in time keep the file order, so the last row of a user among equal timestamps is test.
    Test rows are filtered like the time split (users with one interaction are cold).

    >>> df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [5, 6, 7, 7, 6], "timestamp": [1, 2, 2, 1, 3]})
    >>> train, test, _ = leave_one_out(df)
    >>> train["item_id"].tolist(), test["item_id"].tolist()
    ([5, 6, 7], [7, 6])
    """
    if len(df) == 0:
        raise DataError("leave_one_out got no interactions: the input frame is empty.")
    df = df.reset_index(drop=True)
    last = _last_per_user(df)
    train, test = df[~last], df[last]
    test, removed = _filter_test(train, test)
    return train, test, _stats("loo", train, test, removed)


def holdout_last(
    train: pd.DataFrame, n_users: int | None = None, *, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last train interaction of some users as a validation fold for early stopping.

    Only users with at least two train interactions are eligible (the rest would lose their
    whole history). ``n_users=None`` takes every eligible user (leave-one-out's validation item);
    otherwise a seeded random sample of that many (the paper's time split uses 2048).

    Returns:
        ``(train_rest, valid)``, both in ``train``'s row order.
    """
    train = train.reset_index(drop=True)
    counts = train["user_id"].value_counts()
    eligible = counts.index[counts.to_numpy() >= 2].to_numpy()
    if n_users is not None and n_users < len(eligible):
        rng = np.random.default_rng(seed)
        eligible = rng.choice(np.sort(eligible), size=n_users, replace=False)
    is_last = _last_per_user(train) & train["user_id"].isin(eligible).to_numpy()
    return train[~is_last], train[is_last]
