"""Metrics: hand-computed cases, a brute-force per-user reference, ir_measures, and top-k retrieval."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from esasrec.errors import DataError
from esasrec.metrics import (
    METRIC_NAMES,
    _debias_keep,
    evaluate_recommendations,
    ranking_metrics,
    topk_from_scores,
)

D2, D4 = 1 / math.log2(3), 1 / math.log2(5)  # discounts of ranks 2 and 4


def t(x):
    return torch.tensor(x, dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# Hand-computed cases


def test_hand_computed_several_items_no_hit_and_cold_item():
    # user 0: relevant {2, 5}, hits 2 at rank 2 and 5 at rank 4
    # user 1: relevant {7}, no hit
    # user 2: relevant {1, 99}; 99 is outside the catalogue (never hit, still relevant); hits 1 at rank 1
    # user 3: no test pair -> not evaluated (its items must not count for coverage)
    topk = t([[1, 2, 3, 5], [1, 2, 3, 4], [1, 0, 0, 0], [8, 9, 10, 6]])
    rows, items = t([0, 0, 1, 2, 2, 0]), t([2, 5, 7, 1, 99, 2])  # the duplicate (0, 2) counts once
    pop = torch.arange(11, dtype=torch.float64) / 10  # popularity of item i = i / 10
    m = ranking_metrics(topk, rows, items, n_items=10, k=4, item_popularity=pop, debias=False)
    ndcg0 = (D2 + D4) / (1 + D2)
    ndcg2 = 1 / (1 + D2)
    expected = {
        "hr@4": 2 / 3,
        "recall@4": (1 + 0 + 0.5) / 3,
        "ndcg@4": (ndcg0 + 0 + ndcg2) / 3,
        "mrr@4": (1 / 2 + 0 + 1) / 3,
        "coverage@4": 5 / 10,  # {1, 2, 3, 4, 5}
        "arp@4": (1.1 / 4 + 1.0 / 4 + 0.1 / 1) / 3,  # padding 0 is not an item: user 2 has one rec
    }
    assert m.keys() == expected.keys()
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, abs=1e-12), name


def test_k_cuts_the_table_and_ndcg_ideal_is_capped_at_k():
    topk = t([[4, 1, 2, 3]])
    m = ranking_metrics(topk, t([0, 0, 0]), t([1, 2, 3]), n_items=4, k=2, debias=False)
    # only [4, 1] counts; IDCG over min(3, 2) = 2 positions
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["ndcg@2"] == pytest.approx(D2 / (1 + D2))
    assert m["mrr@2"] == pytest.approx(0.5)


def test_all_metric_keys_present_with_popularity_and_debias():
    m = ranking_metrics(t([[1, 2]]), t([0]), t([1]), n_items=2, k=2, item_popularity=torch.ones(3))
    assert list(m) == [f"{name}@2" for name in METRIC_NAMES]


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="k must be"):
        ranking_metrics(t([[1, 2]]), t([0]), t([1]), n_items=2, k=3)
    with pytest.raises(ValueError, match="twice"):
        ranking_metrics(t([[1, 1]]), t([0]), t([1]), n_items=2, k=2)
    with pytest.raises(ValueError, match="test_items"):
        ranking_metrics(t([[1, 2]]), t([0]), t([0]), n_items=2, k=2)
    with pytest.raises(ValueError, match="test_rows"):
        ranking_metrics(t([[1, 2]]), t([1]), t([1]), n_items=2, k=2)


# ----------------------------------------------------------------------------------------------
# Random data: brute-force reference and ir_measures


def random_case(seed, n_users=60, n_items=30, width=10):
    """Top-k rows of varying length (some empty), test pairs with duplicates, cold items and untested users."""
    rng = np.random.default_rng(seed)
    topk = np.zeros((n_users, width), dtype=np.int64)
    for u in range(n_users):
        n = rng.choice([0, 3, width, width, width])
        topk[u, :n] = rng.choice(np.arange(1, n_items + 1), size=n, replace=False)
    rows, items = [], []
    for u in range(n_users):
        if rng.random() < 0.2:  # no test pair: ignored
            continue
        n = rng.integers(1, 6)
        # popular items 1..5 are over-represented so that debiasing has outliers to cut
        cand = np.concatenate([rng.integers(1, 6, size=n), rng.integers(1, n_items + 4, size=n)])
        chosen = rng.choice(cand, size=n)
        rows += [u] * n
        items += chosen.tolist()  # may repeat an item (a duplicate pair) or exceed n_items (cold)
    pop = rng.random(n_items + 1)
    pop[0] = 0.0
    return torch.from_numpy(topk), t(rows), t(items), torch.from_numpy(pop), n_items


def brute_force(topk, rows, items, n_items, k, pop):
    """Per-user pure-Python reference of every metric except the debiased ones."""
    relevant = {}
    for u, i in zip(rows.tolist(), items.tolist()):
        relevant.setdefault(u, set()).add(i)
    per_user = {name: [] for name in ("hr", "recall", "ndcg", "mrr", "arp")}
    recommended = set()
    for u, rel in relevant.items():
        recs = topk[u, :k].tolist()
        recommended |= {i for i in recs if i != 0}
        hits = [r for r, i in enumerate(recs, start=1) if i != 0 and i in rel]
        per_user["hr"].append(1.0 if hits else 0.0)
        per_user["recall"].append(len(hits) / len(rel))
        dcg = sum(1 / math.log2(r + 1) for r in hits)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(rel), k) + 1))
        per_user["ndcg"].append(dcg / idcg)
        per_user["mrr"].append(1 / hits[0] if hits else 0.0)
        nonzero = [i for i in recs if i != 0]
        if nonzero:
            per_user["arp"].append(sum(pop[i] for i in nonzero) / len(nonzero))
    out = {f"{name}@{k}": sum(v) / len(v) for name, v in per_user.items()}
    out[f"coverage@{k}"] = len(recommended) / n_items
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_matches_brute_force_reference(seed, k):
    topk, rows, items, pop, n_items = random_case(seed)
    m = ranking_metrics(topk, rows, items, n_items=n_items, k=k, item_popularity=pop, debias=False)
    ref = brute_force(topk, rows, items, n_items, k, pop.tolist())
    assert m.keys() == ref.keys()
    for name in ref:
        assert m[name] == pytest.approx(ref[name], abs=1e-12), name


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_ir_measures(seed):
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import RR, R, Success, nDCG

    topk, rows, items, _, n_items = random_case(seed)
    k = 10
    m = ranking_metrics(topk, rows, items, n_items=n_items, k=k, debias=False)

    qrels = pd.DataFrame({"query_id": rows.numpy().astype(str), "doc_id": items.numpy().astype(str)})
    qrels = qrels.drop_duplicates().assign(relevance=1)
    u, pos = np.nonzero(topk.numpy())
    run = pd.DataFrame(
        {"query_id": u.astype(str), "doc_id": topk.numpy()[u, pos].astype(str), "score": (k - pos).astype(float)}
    )
    measures = {"hr": Success @ k, "recall": R @ k, "ndcg": nDCG @ k, "mrr": RR @ k}
    values = {measure: {} for measure in measures.values()}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, run):
        values[metric.measure][metric.query_id] = metric.value
    test_users = qrels["query_id"].unique()
    for name, measure in measures.items():
        # a test user absent from the run (no recommendations) scores 0, as in ours
        theirs = np.mean([values[measure].get(q, 0.0) for q in test_users])
        assert m[f"{name}@{k}"] == pytest.approx(theirs, abs=1e-6), name


# ----------------------------------------------------------------------------------------------
# Debiasing


def test_debias_hand_computed_outlier():
    # Item 1 is relevant to users 0..19, items 2..10 to one user each (users 20..28):
    # popularities [20, 1 x 9] -> Q1 = Q3 = 1, cap = 1, so item 1 keeps one random pair.
    # Everybody gets item 1 first; users 20..24 hit their own item at rank 2, users 25..28 miss.
    rows = list(range(20)) + list(range(20, 29))
    items = [1] * 20 + list(range(2, 11))
    topk = [[1, 11]] * 20 + [[1, 2 + j] for j in range(5)] + [[1, 11]] * 4
    for seed in (0, 1, 2):
        m = ranking_metrics(t(topk), t(rows), t(items), n_items=11, k=2, seed=seed)
        assert m["hr@2"] == pytest.approx(25 / 29)
        assert m["ndcg@2"] == pytest.approx((20 + 5 * D2) / 29)
        # one of users 0..19 stays (whichever the seed picks, it scores 1), 19 are dropped
        assert m["debiased_hr@2"] == pytest.approx(6 / 10)
        assert m["debiased_ndcg@2"] == pytest.approx((1 + 5 * D2) / 10)


def test_debias_without_outliers_equals_plain():
    # every item has exactly two test users: IQR = 0, cap = 2, nothing is cut
    topk, _, _, _, n_items = random_case(5, n_users=40)
    rows = t(list(range(40)))
    items = t([1 + u // 2 for u in range(40)])
    m = ranking_metrics(topk, rows, items, n_items=n_items, k=10)
    assert m["debiased_hr@10"] == m["hr@10"]
    assert m["debiased_ndcg@10"] == m["ndcg@10"]


def test_debias_keeps_exactly_cap_pairs_like_rectools():
    _, rows, items, _, _ = random_case(7, n_users=300)
    pairs = pd.DataFrame({"user": rows.numpy(), "item": items.numpy()}).drop_duplicates()
    # the cap as RecTools' DebiasConfig(iqr_coef=1.5) computes it, with pandas
    pop = pairs.groupby("item")["user"].nunique()
    q1, q3 = pop.quantile([0.25, 0.75])
    cap = int(q3 + 1.5 * (q3 - q1))
    assert (pop > cap).any(), "fixture must contain outliers"
    key = torch.unique(t(pairs["user"].to_numpy()) * 1000 + t(pairs["item"].to_numpy()))
    rel_items = key % 1000
    kept = {}
    for seed in (0, 1):
        keep = _debias_keep(rel_items, seed)
        counts = pd.Series(rel_items[keep].numpy()).value_counts()
        assert counts.sort_index().to_dict() == pop.clip(upper=cap).sort_index().to_dict()
        kept[seed] = keep
    assert torch.equal(_debias_keep(rel_items, 0), kept[0])  # reproducible
    assert not torch.equal(kept[0], kept[1])  # and actually random


# ----------------------------------------------------------------------------------------------
# Top-k retrieval


def reference_topk(scores, k, seen):
    """Sort every row by (-score, id) in Python, skipping padding and seen items; pad with 0."""
    out = []
    for u, row in enumerate(scores.tolist()):
        cands = sorted((-s, i) for i, s in enumerate(row) if i > 0 and i not in seen.get(u, ()) and s != -math.inf)
        ids = [i for _, i in cands[:k]]
        out.append(ids + [0] * (k - len(ids)))
    return torch.tensor(out, dtype=torch.int64)


def test_topk_ties_seen_and_chunking():
    gen = torch.Generator().manual_seed(0)
    n_users, n_items, k = 7, 12, 5
    # integer scores in a small range make many ties, including across the k-th place
    scores = torch.randint(0, 3, (n_users, n_items + 1), generator=gen).float()
    scores[0, 0] = 100.0  # the padding column must lose even with the best score
    scores[1] = -0.0  # -0.0 and 0.0 are equal: order by id only
    scores[1, ::2] = 0.0
    seen = {0: [3, 5], 2: list(range(1, n_items + 1)), 4: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    indptr = np.cumsum([0] + [len(seen.get(u, [])) for u in range(n_users)])
    indices = np.concatenate([seen.get(u, []) for u in range(n_users)]).astype(np.int64)
    calls = []

    def score_fn(rows):
        calls.append(len(rows))
        return scores[rows]

    expected = reference_topk(scores, k, seen)
    assert (expected[2] == 0).all() and (expected[4, 2:] == 0).all()  # the fixture covers padding
    for chunk in (1, 3, n_users, 100):
        calls.clear()
        got = topk_from_scores(score_fn, n_users, k, seen_indptr=indptr, seen_indices=indices, chunk_size=chunk)
        assert torch.equal(got, expected), chunk
        assert max(calls) == min(chunk, n_users)
    assert 0 not in expected[0].tolist()


def test_topk_k_larger_than_catalogue_and_neg_inf_scores():
    scores = torch.tensor([[5.0, 1.0, float("-inf"), 2.0]])
    got = topk_from_scores(lambda rows: scores[rows], 1, 6)
    assert got.tolist() == [[3, 1, 0, 0, 0, 0]]
    m = ranking_metrics(got, t([0]), t([2]), n_items=3, k=6, debias=False)
    assert m["hr@6"] == 0.0  # 0 (no item) is a miss even though it fills the row


def test_topk_does_not_modify_scores_and_rejects_nan():
    row = torch.tensor([0.0, 1.0, 2.0])
    topk_from_scores(lambda rows: row.expand(len(rows), -1), 3, 2, seen_indptr=[0, 1, 1, 1], seen_indices=[2])
    assert row.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="NaN"):
        topk_from_scores(lambda rows: torch.full((len(rows), 3), float("nan")), 2, 1)
    with pytest.raises(ValueError, match="n_users \\+ 1"):
        topk_from_scores(lambda rows: torch.zeros(len(rows), 3), 2, 1, seen_indptr=[0, 1], seen_indices=[1])


# ----------------------------------------------------------------------------------------------
# Data-frame front end


def test_evaluate_recommendations_equals_ranking_metrics_on_raw_ids():
    topk, rows, items, _, n_items = random_case(3)
    k = 10
    # raw ids: users "u<row>", items "i<id>"; catalogue = train items 1..n_items; test items above are cold
    train = pd.DataFrame(
        {"user_id": ["t0"] * n_items + ["t1", "t1"], "item_id": [f"i{i}" for i in range(1, n_items + 1)] + ["i1", "i2"]}
    )
    u, pos = np.nonzero(topk.numpy())
    recs = pd.DataFrame(
        {"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in topk.numpy()[u, pos]], "rank": pos + 1}
    )
    recs = recs.sample(frac=1.0, random_state=0)  # row order must not matter
    test = pd.DataFrame({"user_id": [f"u{x}" for x in rows.tolist()], "item_id": [f"i{x}" for x in items.tolist()]})
    got = evaluate_recommendations(recs, test, train, k=k, seed=4)

    # the same table on internal ids: rows renumbered in order of first appearance in test
    order = list(dict.fromkeys(rows.tolist()))
    new_row = {old: new for new, old in enumerate(order)}
    pop = torch.zeros(n_items + 1, dtype=torch.float64)
    pop[1:] = 0.5  # train users t0 and t1: t0 has every item, t1 only items 1 and 2
    pop[1:3] = 1.0
    # cold test items get ids n_items + 1, + 2, ... in order of first appearance
    cold = {i: n_items + 1 + j for j, i in enumerate(dict.fromkeys(i for i in items.tolist() if i > n_items))}
    assert cold, "fixture must contain cold test items"
    expected = ranking_metrics(
        topk[order],
        t([new_row[r] for r in rows.tolist()]),
        t([cold.get(i, i) for i in items.tolist()]),
        n_items=n_items,
        k=k,
        item_popularity=pop,
        seed=4,
    )
    assert got.pop("n_test_users") == len(order)
    assert got.keys() == expected.keys()
    for name in expected:  # same pairs in the same order, so the debiased subset is the same too
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_evaluate_recommendations_hand_case_and_errors():
    train = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [10, 20, 30, 40]})
    test = pd.DataFrame({"user_id": [1, 1, 2, 4], "item_id": [30, 50, 20, 10]})  # 50 is cold; user 4 has no recs
    recs = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "item_id": [40, 30, 10, 20, 10, 10],
            "rank": [1, 2, 3, 4, 1, 1],  # user 2's item 20 is at rank 4 > k; user 3 is not a test user
        }
    )
    m = evaluate_recommendations(recs, test, train, k=3, debias=False)
    # user 1: {30, 50}, hit at rank 2; user 2: {20}, no hit within k; user 4: {10}, no recs
    assert m["n_test_users"] == 3
    assert m["hr@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(0.5 / 3)
    assert m["ndcg@3"] == pytest.approx(D2 / (1 + D2) / 3)
    assert m["coverage@3"] == pytest.approx(3 / 4)  # {40, 30, 10}
    # popularity = train users per item / 3 users: 40 -> 1/3, 30 -> 1/3, 10 -> 1/3
    assert m["arp@3"] == pytest.approx(1 / 3)

    with pytest.raises(DataError, match="rank"):
        evaluate_recommendations(recs.drop(columns="rank"), test, train)
    with pytest.raises(DataError, match="not in the train catalogue"):
        evaluate_recommendations(recs.assign(item_id=[99, 30, 10, 20, 10, 10]), test, train, k=3)
    with pytest.raises(DataError, match="same \\(user_id, rank\\)"):
        evaluate_recommendations(recs.assign(rank=[1, 1, 3, 4, 1, 1]), test, train, k=3)
    with pytest.raises(DataError, match="integers"):
        evaluate_recommendations(recs.assign(rank=[1.5, 2, 3, 4, 1, 1]), test, train, k=3)
