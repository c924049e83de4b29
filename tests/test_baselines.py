"""PopularRecommender: popularity order, tie rule, seen exclusion, the days window, and its evaluation."""

import pandas as pd
import pytest

from esasrec.baselines import PopularRecommender
from esasrec.errors import DataError
from esasrec.metrics import evaluate_recommendations
from esasrec.split import DAY


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


# Distinct users per item: a 3 (u1 twice counts once), b 2, c 2, d 1.
# First seen: d (t=0), c (t=1), b (t=2), a (t=3) -> the b/c tie goes to c.
TRAIN = frame(
    [
        ("u1", "d", 0),
        ("u2", "c", 1),
        ("u1", "b", 2),
        ("u1", "a", 3),
        ("u1", "a", 4),
        ("u2", "a", 5),
        ("u3", "a", 6),
        ("u3", "b", 7),
        ("u4", "c", 8),
    ]
)


def recs_of(recs):
    return {u: g.sort_values("rank")["item_id"].tolist() for u, g in recs.groupby("user_id", sort=False)}


def test_popular_order_with_tie_rule_and_unknown_user():
    recs = PopularRecommender().fit(TRAIN).recommend(["new"], k=10, exclude_seen=False)
    assert recs["item_id"].tolist() == ["a", "c", "b", "d"]  # k > catalogue: 4 rows only
    assert recs["rank"].tolist() == [1, 2, 3, 4]
    assert list(recs.columns) == ["user_id", "item_id", "rank"]


def test_seen_items_excluded_and_train_override():
    model = PopularRecommender().fit(TRAIN)
    recs = model.recommend(["u1", "u2", "u4", "u1"], k=2)  # duplicate user dropped
    assert recs_of(recs) == {"u1": ["c"], "u2": ["b", "d"], "u4": ["a", "b"]}
    # another seen table (e.g. train + validation) replaces the fitted one
    other = pd.DataFrame({"user_id": ["u4", "u4"], "item_id": ["a", "zzz"]})  # unknown items are ignored
    assert recs_of(model.recommend(["u4"], k=2, train=other)) == {"u4": ["c", "b"]}
    assert recs_of(model.recommend(["u1"], k=2, exclude_seen=False)) == {"u1": ["a", "c"]}


def test_days_window_counts_only_recent_interactions():
    # end of train t = 10 days; window [3 days, 10 days] includes its start
    train = frame(
        [
            ("u1", "old", 0),
            ("u2", "old", 1),
            ("u3", "old", 2),  # most popular overall, but before the window
            ("u1", "edge", 3 * DAY),  # exactly at the window start: counted
            ("u2", "new", 5 * DAY),
            ("u3", "new", 10 * DAY),
        ]
    )
    overall = PopularRecommender().fit(train).recommend(["x"], k=3)
    assert overall["item_id"].tolist() == ["old", "new", "edge"]
    recent = PopularRecommender(days=7).fit(train).recommend(["x", "u1"], k=3)
    # items outside the window are not candidates at all, as in RecTools' PopularModel(period=...)
    assert recs_of(recent) == {"x": ["new", "edge"], "u1": ["new"]}
    shorter = PopularRecommender(days=6.5).fit(train).recommend(["x"], k=3)
    assert shorter["item_id"].tolist() == ["new"]


def test_evaluate_popular_output():
    test = pd.DataFrame({"user_id": ["u2", "u2", "u4", "u5"], "item_id": ["b", "d", "d", "a"]})
    recs = PopularRecommender().fit(TRAIN).recommend(test["user_id"].unique(), k=2)
    # u2 gets [b, d] (two hits), u4 gets [a, b] (miss), u5 is unknown: [a, c] (hit at rank 1)
    m = evaluate_recommendations(recs, test, TRAIN, k=2, debias=False)
    assert m["n_test_users"] == 3
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx(2 / 3)
    assert m["mrr@2"] == pytest.approx(2 / 3)
    assert m["coverage@2"] == pytest.approx(1.0)  # a, b, c, d
    # popularity / 4 train users: a 3, b 2, c 2, d 1
    assert m["arp@2"] == pytest.approx(((2 + 1) / 8 + (3 + 2) / 8 + (3 + 2) / 8) / 3)


def test_bad_input():
    with pytest.raises(DataError, match="timestamp"):
        PopularRecommender().fit(TRAIN.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="days"):
        PopularRecommender(days=0)
    with pytest.raises(RuntimeError, match="fit"):
        PopularRecommender().recommend(["u1"])
