"""Splitters (REFERENCE §2): properties on random tie-heavy frames, checked against brute force.

Each synthetic frame carries a ``row`` column (its file position), so rows can be followed
through a splitter whatever it does with the index.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esasrec.errors import DataError
from esasrec.split import DAY, holdout_last, leave_one_out, time_order, time_split

SEEDS = range(8)
BASE = 19_000 * DAY  # a midnight (2022-01-08)


def random_frame(seed: int, n_rows: int = 300, n_users: int = 25, n_items: int = 30) -> pd.DataFrame:
    """Interactions over 30 days with few distinct times (many ties), repeats and one-row users."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_rows)
    users[:3] = [n_users, n_users + 1, n_users + 2]  # users with a single interaction
    items = rng.integers(0, n_items, n_rows)
    offsets = np.array([0, 3_600, DAY // 2, DAY - 1])
    times = BASE + rng.integers(0, 30, n_rows) * DAY + rng.choice(offsets, n_rows)
    df = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times, "row": np.arange(n_rows)})
    if seed % 2:  # string ids on odd seeds
        df["user_id"] = "u" + df["user_id"].astype(str)
        df["item_id"] = "i" + df["item_id"].astype(str)
    return df


def brute_filter(train_rows: list[dict], window_rows: list[dict]) -> tuple[list[int], dict]:
    """REFERENCE §2.1 test filters, row by row: cold user, cold item, seen in train, repeat."""
    users = {r["user_id"] for r in train_rows}
    items = {r["item_id"] for r in train_rows}
    pairs = {(r["user_id"], r["item_id"]) for r in train_rows}
    kept, kept_pairs = [], set()
    removed = dict.fromkeys(["removed_cold_users", "removed_cold_items", "removed_seen", "removed_repeats"], 0)
    for r in window_rows:
        pair = (r["user_id"], r["item_id"])
        if r["user_id"] not in users:
            removed["removed_cold_users"] += 1
        elif r["item_id"] not in items:
            removed["removed_cold_items"] += 1
        elif pair in pairs:
            removed["removed_seen"] += 1
        elif pair in kept_pairs:
            removed["removed_repeats"] += 1
        else:
            kept.append(r["row"])
            kept_pairs.add(pair)
    return kept, removed


def brute_last(df: pd.DataFrame) -> dict:
    """{user: row of the user's last interaction}: latest time, ties -> later file row."""
    last = {}
    for r in df.to_dict("records"):
        best = last.get(r["user_id"])
        if best is None or (r["timestamp"], r["row"]) > (best["timestamp"], best["row"]):
            last[r["user_id"]] = r
    return {u: r["row"] for u, r in last.items()}


def is_subset_in_order(part: pd.DataFrame, df: pd.DataFrame) -> bool:
    rows = part["row"].to_numpy()
    return bool(np.all(np.diff(rows) > 0)) and part.reset_index(drop=True).equals(
        df.set_index("row", drop=False).loc[rows].reset_index(drop=True)
    )


# ------------------------------------------------------------------------------- time split
@pytest.mark.parametrize("seed", SEEDS)
def test_time_split_matches_brute_force(seed):
    df = random_frame(seed)
    df.index = 10_000 - 7 * np.arange(len(df))  # a non-default index: it must survive
    test_days = [1, 3, 7.5, 10][seed % 4]
    train, test, stats = time_split(df, test_days=test_days)

    window_end = (df["timestamp"].max() // DAY + 1) * DAY
    cut = stats.window_start
    assert stats.window_end == window_end
    assert cut == window_end - test_days * DAY
    # Causality: nothing in train at/after the cut, nothing in test before it; train is all of the past.
    assert (train["timestamp"] < cut).all() and (test["timestamp"] >= cut).all()
    assert train["row"].tolist() == df.loc[df["timestamp"] < cut, "row"].tolist()
    # Rows are input rows (same index labels, same values), in input order.
    for part in (train, test):
        assert part.index.isin(df.index).all()
        pd.testing.assert_frame_equal(part, df.loc[part.index])
        assert is_subset_in_order(part, df)
    # The filters, against a row-by-row reference.
    window = df[df["timestamp"] >= cut]
    kept, removed = brute_filter(train.to_dict("records"), window.to_dict("records"))
    assert test["row"].tolist() == kept
    assert {k: getattr(stats, k) for k in removed} == removed
    assert stats.test_rows + sum(removed.values()) == len(window)
    assert test["user_id"].isin(train["user_id"]).all()
    assert test["item_id"].isin(train["item_id"]).all()
    train_pairs = set(zip(train["user_id"], train["item_id"]))
    assert not any(p in train_pairs for p in zip(test["user_id"], test["item_id"]))
    assert not test.duplicated(["user_id", "item_id"]).any()
    assert (stats.train_rows, stats.train_users, stats.train_items) == (
        len(train), train["user_id"].nunique(), train["item_id"].nunique())
    assert (stats.test_rows, stats.test_users, stats.test_items) == (
        len(test), test["user_id"].nunique(), test["item_id"].nunique())
    assert stats.protocol == "time"
    assert stats.as_dict()["window_start"] == cut


def test_time_split_filters_on_a_hand_example():
    df = pd.DataFrame({
        "user_id": [1, 1, 2, 1, 1, 1, 3, 2, 2],
        "item_id": [10, 11, 12, 12, 10, 13, 10, 12, 11],
        "timestamp": [0, DAY, DAY, 9 * DAY, 9 * DAY, 9 * DAY, 9 * DAY, 9 * DAY, 9 * DAY],
    })
    train, test, stats = time_split(df, test_days=2)
    assert train.index.tolist() == [0, 1, 2]
    # row 3: kept; 4: seen (1, 10); 5: cold item 13; 6: cold user 3; 7: seen (2, 12); 8: kept
    assert test.index.tolist() == [3, 8]
    removed = (stats.removed_cold_users, stats.removed_cold_items, stats.removed_seen, stats.removed_repeats)
    assert removed == (1, 1, 2, 0)


def test_time_split_counts_repeats_in_the_window_once():
    df = pd.DataFrame({"user_id": [1, 2, 1, 1, 1], "item_id": [10, 11, 11, 11, 11],
                       "timestamp": [0, 0, 9 * DAY, 9 * DAY + 5, 9 * DAY + 1]})
    _, test, stats = time_split(df, test_days=1)
    assert test.index.tolist() == [2]  # the first of the three in file order
    assert stats.removed_repeats == 2 and stats.test_rows == 1


@pytest.mark.parametrize("last_offset", [0, DAY // 2, DAY - 1], ids=["midnight", "noon", "23:59:59"])
def test_time_split_window_ends_at_the_end_of_the_last_day(last_offset):
    last = BASE + 10 * DAY + last_offset
    df = pd.DataFrame({
        "user_id": [1, 2, 1, 2, 1],
        "item_id": [1, 2, 2, 3, 3],
        "timestamp": [BASE, BASE + DAY, BASE + 10 * DAY - 1, BASE + 10 * DAY, last],
    })
    train, test, stats = time_split(df, test_days=1)
    assert stats.window_end == BASE + 11 * DAY  # the day of `last` ends at the next midnight
    assert stats.window_start == BASE + 10 * DAY
    # Last second before the window -> train; the window's first second (and `last`) -> window.
    assert train.index.tolist() == [0, 1, 2]
    assert stats.test_rows + stats.removed_cold_users + stats.removed_cold_items + stats.removed_seen \
        + stats.removed_repeats == 2
    assert "test window     [2022-01-18, 2022-01-19)" in str(stats)


def test_time_split_half_day_window():
    df = pd.DataFrame({"user_id": [1, 1, 1, 1], "item_id": [1, 2, 3, 1],
                       "timestamp": [BASE, BASE + DAY // 2 - 1, BASE + DAY // 2, BASE + DAY - 1]})
    train, _, stats = time_split(df, test_days=0.5)
    assert stats.window_start == BASE + DAY // 2
    assert train.index.tolist() == [0, 1]


def test_time_split_fractional_window_start_rounds_up():
    # 1/7 day = 12342.857 s: a row 12343 s before the window end is outside the window.
    end = BASE + DAY
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [BASE, end - 12343, end - 12342]})
    train, _, stats = time_split(df, test_days=1 / 7)
    assert stats.window_end == end
    assert stats.window_start >= end - DAY / 7
    assert train.index.tolist() == [0, 1]


def test_time_split_explicit_cut():
    df = random_frame(3)
    cut = BASE + 20 * DAY + 3_600
    train, test, stats = time_split(df, test_days=1, cut=cut)  # test_days is ignored
    assert stats.window_start == cut
    assert stats.window_end == (df["timestamp"].max() // DAY + 1) * DAY
    assert train["row"].tolist() == df.loc[df["timestamp"] < cut, "row"].tolist()
    assert (test["timestamp"] >= cut).all() and len(test) > 0
    window = df[df["timestamp"] >= cut]
    kept, _ = brute_filter(train.to_dict("records"), window.to_dict("records"))
    assert test["row"].tolist() == kept


@pytest.mark.parametrize("test_days", [0, -3])
def test_time_split_rejects_non_positive_days(test_days):
    with pytest.raises(DataError, match="test_days"):
        time_split(random_frame(0), test_days=test_days)


def test_time_split_rejects_nan_days():
    with pytest.raises(DataError):
        time_split(random_frame(0), test_days=float("nan"))


def test_time_split_rejects_a_window_covering_everything():
    df = random_frame(0)
    with pytest.raises(DataError, match="covers all interactions"):
        time_split(df, test_days=31)  # the data spans 30 days
    with pytest.raises(DataError, match="covers all interactions"):
        time_split(df, cut=int(df["timestamp"].min()))


def test_splitters_reject_an_empty_frame():
    empty = pd.DataFrame({"user_id": [], "item_id": [], "timestamp": []}).astype("int64")
    with pytest.raises(DataError, match="empty"):
        time_split(empty)
    with pytest.raises(DataError, match="empty"):
        leave_one_out(empty)


# ---------------------------------------------------------------------------- leave-one-out
@pytest.mark.parametrize("seed", SEEDS)
def test_leave_one_out_matches_brute_force(seed):
    df = random_frame(seed)
    train, test, stats = leave_one_out(df)
    last = brute_last(df)
    last_rows = sorted(last.values())
    # train + unfiltered test = input, disjoint, both in input order.
    assert train["row"].tolist() == sorted(set(df["row"]) - set(last_rows))
    assert is_subset_in_order(train, df) and is_subset_in_order(test, df)
    last_records = df.set_index("row", drop=False).loc[last_rows].to_dict("records")
    kept, removed = brute_filter(train.to_dict("records"), last_records)
    assert test["row"].tolist() == kept
    assert {k: getattr(stats, k) for k in removed} == removed
    assert stats.test_rows + sum(removed.values()) == df["user_id"].nunique()
    assert removed["removed_cold_users"] >= 3  # the one-row users
    assert not test["user_id"].duplicated().any()
    for user, row in zip(test["user_id"], test["row"]):
        assert last[user] == row
    assert test["item_id"].isin(train["item_id"]).all()
    assert stats.protocol == "loo" and stats.window_start is None


def test_leave_one_out_ties_go_to_the_later_row():
    df = pd.DataFrame({"user_id": [1, 2, 1, 1, 2, 2], "item_id": [1, 2, 3, 2, 1, 3],
                       "timestamp": [5, 7, 5, 4, 7, 6]})
    train, test, _ = leave_one_out(df)
    assert test["item_id"].tolist() == [3, 1]  # user 1: row 2 (t=5, later than row 0); user 2: row 4
    assert train["item_id"].tolist() == [1, 2, 2, 3]


def test_leave_one_out_filters_cold_and_seen():
    df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4], "item_id": [1, 1, 1, 9, 2, 1, 1],
                       "timestamp": [0, 1, 0, 1, 0, 1, 0]})
    _, test, stats = leave_one_out(df)
    assert test["user_id"].tolist() == [3]
    assert (stats.removed_cold_users, stats.removed_cold_items, stats.removed_seen) == (1, 1, 1)


# -------------------------------------------------------------------------------- holdout
@pytest.mark.parametrize("seed", SEEDS)
def test_holdout_all_eligible_users(seed):
    df = random_frame(seed)
    rest, valid = holdout_last(df)
    counts = df["user_id"].value_counts()
    eligible = set(counts.index[counts >= 2])
    assert set(valid["user_id"]) == eligible and len(valid) == len(eligible)
    last = brute_last(df)
    assert sorted(valid["row"]) == sorted(last[u] for u in eligible)
    assert rest["row"].tolist() == sorted(set(df["row"]) - set(valid["row"]))
    assert is_subset_in_order(rest, df) and is_subset_in_order(valid, df)
    assert set(rest["user_id"]) == set(df["user_id"])  # nobody loses the whole history


def big_train(n_users: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    users = np.repeat(np.arange(n_users), 3)
    users[-1] = n_users  # a one-row user
    n = len(users)
    return pd.DataFrame({"user_id": users, "item_id": rng.integers(0, 50, n),
                         "timestamp": rng.integers(0, 4, n) * DAY, "row": np.arange(n)})


def test_holdout_sample_of_k_users():
    df = big_train()
    last = brute_last(df)
    rest, valid = holdout_last(df, 40, seed=3)
    assert len(valid) == 40 and valid["user_id"].nunique() == 40
    assert all(last[u] == r for u, r in zip(valid["user_id"], valid["row"]))
    assert 600 not in set(valid["user_id"])  # never the one-row user (it is never eligible)
    assert len(rest) + len(valid) == len(df)
    again_rest, again = holdout_last(df, 40, seed=3)
    pd.testing.assert_frame_equal(again, valid)
    pd.testing.assert_frame_equal(again_rest, rest)
    _, other = holdout_last(df, 40, seed=4)
    assert set(other["user_id"]) != set(valid["user_id"])


def test_holdout_k_at_least_eligible_takes_everyone_and_single_row_users_stay():
    df = pd.DataFrame({"user_id": [1, 2, 2, 3, 3, 3], "item_id": [1, 2, 3, 4, 5, 6],
                       "timestamp": [0, 1, 1, 2, 0, 1], "row": range(6)})
    for n in (None, 2, 5):
        rest, valid = holdout_last(df, n)
        assert valid["row"].tolist() == [2, 3]  # user 2: tie -> later row; user 3: latest time
        assert rest["row"].tolist() == [0, 1, 4, 5]
    _, one = holdout_last(df, 1, seed=0)
    assert len(one) == 1 and one["row"].iloc[0] in (2, 3)


# ----------------------------------------------------------------------------- time_order
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_time_order_keeps_input_order_among_ties(seed):
    df = random_frame(seed)
    expected = sorted(df.to_dict("records"), key=lambda r: (r["user_id"], r["timestamp"], r["row"]))
    assert time_order(df)["row"].tolist() == [r["row"] for r in expected]


def test_time_order_hand_example():
    df = pd.DataFrame({"user_id": [1, 2, 1, 1, 2], "item_id": [30, 40, 10, 20, 50], "timestamp": [3, 1, 3, 2, 1]})
    assert time_order(df)["item_id"].tolist() == [20, 30, 10, 40, 50]


# ------------------------------------------------------------------------------------ Beauty
def _beauty_dir():
    candidates = [os.environ.get("ESASREC_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared" / "datasets",
                  "/work/shared/datasets"]
    for c in candidates:
        if c and (Path(c) / "beauty" / "Beauty.txt").is_file() and (Path(c) / "beauty" / "Beauty_time.txt").is_file():
            return Path(c)
    return None


BEAUTY = _beauty_dir()


@pytest.fixture(scope="module")
def beauty():
    from esasrec.data import load_dataset

    return load_dataset("beauty", data_dir=BEAUTY, download=False)


@pytest.mark.skipif(BEAUTY is None, reason="no offline Beauty copy (set ESASREC_DATA_DIR)")
def test_beauty_time_split_60_days(beauty):
    train, test, s = time_split(beauty, 60)
    assert s.test_rows + s.removed_cold_users + s.removed_cold_items + s.removed_seen + s.removed_repeats == 16_716
    assert s.train_rows == len(beauty) - 16_716 == len(train)
    assert (train["timestamp"] < s.window_start).all() and (test["timestamp"] >= s.window_start).all()


@pytest.mark.skipif(BEAUTY is None, reason="no offline Beauty copy (set ESASREC_DATA_DIR)")
def test_beauty_leave_one_out(beauty):
    train, test, s = leave_one_out(beauty)
    assert s.train_users == train["user_id"].nunique() == 22_363
    assert len(train) + s.test_rows + s.removed_cold_items + s.removed_seen + s.removed_cold_users == len(beauty)
