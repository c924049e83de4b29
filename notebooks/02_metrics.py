# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 2. Metrics and baselines
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/esasrec/esasrec/blob/main/notebooks/02_metrics.ipynb)
#
# A recommender is judged by the top of its list. For each test user it returns its best $K$
# items (the paper uses $K = 10$), and a metric compares that list with the items the user
# actually interacted with in the test window. This chapter defines the metrics the eSASRec paper
# reports, works each one out by hand on a tiny example, checks the package's vectorised code
# against a naive loop, and then scores the simplest recommender there is, "recommend what is
# popular", on the time split of Chapter 1. Every model in later chapters has to beat it.

# %%
# On Colab, install the package first (elsewhere this cell does nothing).
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "esasrec[plot] @ git+https://github.com/esasrec/esasrec"], check=True)

# %%
import time
from esasrec.provenance import notebook_mode
STARTED = time.time()
FAST = notebook_mode() == "fast"          # ESASREC_FAST=1: tiny settings on the bundled data (CI)
DATASET = "movielens-small" if FAST else "beauty"
TEST_DAYS = 60                            # the paper's time-split window
K = 10                                    # the paper's cut-off

# %%
import inspect
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from esasrec.baselines import PopularRecommender
from esasrec.data import load_dataset
from esasrec.metrics import _accuracy, _debias_keep, evaluate_recommendations
from esasrec.metrics import ranking_metrics
from esasrec.split import leave_one_out, time_split

sns.set_theme(style="whitegrid")
plt.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 90})
pd.set_option("display.precision", 4)


def show_source(obj) -> None:
    """Render the source code of a package object as a highlighted code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


# %% [markdown]
# ## 1. The metrics
#
# Relevance is binary: for test user $u$, $R_u$ is the set of items $u$ interacted with in the
# test window (one item under leave-one-out, often several under the time split), and
# $\mathrm{top}_K(u)$ is the recommended list, best first, with $\mathrm{rel}_u(r) = 1$ when the
# item at rank $r$ is in $R_u$. Every accuracy metric is a per-user number averaged over the test
# users $U$:
#
# - **HR@K** (hit rate): $\mathbb{1}[\,|R_u \cap \mathrm{top}_K(u)| > 0\,]$, did anything relevant make the list?
# - **Recall@K**: $|R_u \cap \mathrm{top}_K(u)| \,/\, |R_u|$, the share of the relevant items found.
#   Under leave-one-out, $|R_u| = 1$ and Recall equals HR.
# - **NDCG@K**: hits near the top count more, by a logarithmic discount, normalised by the best
#   possible list:
#
#   $$\mathrm{DCG}_u = \sum_{r=1}^{K} \frac{\mathrm{rel}_u(r)}{\log_2(r+1)}, \qquad
#     \mathrm{IDCG}_u = \sum_{r=1}^{\min(|R_u|, K)} \frac{1}{\log_2(r+1)}, \qquad
#     \mathrm{NDCG}_u = \frac{\mathrm{DCG}_u}{\mathrm{IDCG}_u}.$$
# - **MRR@K**: $1 / (\text{rank of the first hit})$, or 0 without a hit.
#
# Two beyond-accuracy metrics describe the lists themselves:
#
# - **Coverage@K**: the share of the catalogue $I$ (the items in train) that appears in at least
#   one user's list, $|\bigcup_u \mathrm{top}_K(u)| \,/\, |I|$. A recommender that shows everybody
#   the same ten items has the smallest possible coverage.
# - **ARP@K** (average recommendation popularity): the mean over users of the mean popularity of
#   their recommended items, where an item's popularity is the share of train users who interacted
#   with it. High ARP means the lists are made of blockbusters.
#
# ## 2. A tiny example, by hand
#
# Four users in train and eight items `a`…`h`; three of the users have test items, and each gets
# a list of $K = 3$ recommendations.

# %%
# NBVAL_CHECK_OUTPUT
tiny_train = pd.DataFrame(
    [("ann", "a"), ("ann", "b"),
     ("bob", "a"), ("bob", "c"),
     ("cat", "a"), ("cat", "d"),
     ("dan", "b"), ("dan", "e"), ("dan", "f"), ("dan", "g"), ("dan", "h")],
    columns=["user_id", "item_id"])
tiny_test = pd.DataFrame(
    [("ann", "c"), ("ann", "e"),
     ("bob", "e"),
     ("cat", "b"), ("cat", "e"), ("cat", "g")],
    columns=["user_id", "item_id"])
tiny_lists = {"ann": ["d", "e", "f"], "bob": ["b", "d", "f"], "cat": ["g", "f", "e"]}
tiny_recs = pd.DataFrame(
    [(user, item, rank)
     for user, items in tiny_lists.items() for rank, item in enumerate(items, start=1)],
    columns=["user_id", "item_id", "rank"])
relevant = tiny_test.groupby("user_id")["item_id"].agg(set)
for user, items in tiny_lists.items():
    shown = " ".join(item + ("*" if item in relevant[user] else " ") for item in items)
    print(f"{user}: relevant {sorted(relevant[user])}, recommended {shown}")
print("(* = hit)")

# %% [markdown]
# Worked out with the formulas above (K = 3):
#
# - **ann** has two relevant items and hits `e` at rank 2: HR 1, Recall 1/2, MRR 1/2,
#   NDCG $= \frac{1/\log_2 3}{1 + 1/\log_2 3}$.
# - **bob** misses: every metric is 0.
# - **cat** has three relevant items and hits at ranks 1 and 3: HR 1, Recall 2/3, MRR 1,
#   NDCG $= \frac{1 + 1/\log_2 4}{1 + 1/\log_2 3 + 1/\log_2 4}$.
# - **Coverage**: the lists use `b d e f g`, five of the eight train items.
# - **ARP**: of the four train users, `b` was taken by two, `d e f g` by one each.
#
# The package's data-frame entry point, `evaluate_recommendations`, takes recommendations and
# test pairs with raw ids and the train frame (which defines the catalogue and the popularity):

# %%
# NBVAL_CHECK_OUTPUT
tiny_metrics = evaluate_recommendations(tiny_recs, tiny_test, tiny_train, k=3,
                                        debias=False)
for name, value in tiny_metrics.items():
    print(f"{name:<12} {round(value, 4)}")

# %% [markdown]
# ### A naive reference
#
# The same metrics written as plainly as possible: a loop over users, a loop over ranks, the
# discount spelled out as `1 / math.log2(rank + 1)`. It is slow and obviously right, which is
# what a reference should be.

# %%
def naive_metrics(recs, test, train, k: int) -> dict:
    """HR, Recall, NDCG, MRR, Coverage and ARP at k by explicit loops (a reference)."""
    relevant = {}
    for user, item in zip(test["user_id"], test["item_id"]):
        relevant.setdefault(user, set()).add(item)
    lists = {}
    for rank, user, item in sorted(zip(recs["rank"], recs["user_id"], recs["item_id"]),
                                   key=lambda t: t[0]):
        if rank <= k:
            lists.setdefault(user, []).append(item)
    train_users_of = {}
    for user, item in zip(train["user_id"], train["item_id"]):
        train_users_of.setdefault(item, set()).add(user)
    n_train_users = len(set(train["user_id"]))

    totals = {"hr": 0.0, "recall": 0.0, "ndcg": 0.0, "mrr": 0.0}
    shown, popularity_means = set(), []
    for user, rel in relevant.items():
        items = lists.get(user, [])
        hits = [item in rel for item in items]
        dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(hits, start=1)
                  if hit)
        idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
        totals["hr"] += 1.0 if any(hits) else 0.0
        totals["recall"] += sum(hits) / len(rel)
        totals["ndcg"] += dcg / idcg
        totals["mrr"] += 1 / (hits.index(True) + 1) if any(hits) else 0.0
        shown.update(items)
        if items:
            popularity = [len(train_users_of[item]) / n_train_users for item in items]
            popularity_means.append(sum(popularity) / len(popularity))
    out = {f"{name}@{k}": total / len(relevant) for name, total in totals.items()}
    out[f"coverage@{k}"] = len(shown) / len(train_users_of)
    out[f"arp@{k}"] = sum(popularity_means) / len(popularity_means)
    return out


def assert_same_metrics(package: dict, naive: dict) -> None:
    """The package's metrics equal the naive ones (each metric the naive version has)."""
    names = list(naive)
    torch.testing.assert_close(
        torch.tensor([package[n] for n in names], dtype=torch.float64),
        torch.tensor([naive[n] for n in names], dtype=torch.float64))


naive_tiny = naive_metrics(tiny_recs, tiny_test, tiny_train, k=3)
assert_same_metrics(tiny_metrics, naive_tiny)
print("evaluate_recommendations == naive loops on the tiny example:",
      ", ".join(naive_tiny))

# %% [markdown]
# ### How the package computes them
#
# The package never loops over users. `ranking_metrics` works on internal ids: a `(U, K)` tensor
# of recommended item ids and the relevance pairs. It looks every recommended cell up among the
# relevant pairs at once, giving a boolean hit matrix, and `_accuracy` turns that matrix into all
# four per-user accuracy metrics with a few tensor operations: DCG is one matrix-vector product
# with the discount vector, IDCG is a cumulative sum of the same discounts indexed by the number
# of relevant items, and the first hit is an `argmax`.

# %%
show_source(_accuracy)

# %% [markdown]
# Probe it with the tiny example's hit matrix (rows ann, bob, cat; columns ranks 1 to 3) and the
# number of relevant items of each user:

# %%
# NBVAL_CHECK_OUTPUT
tiny_hits = torch.tensor([[False, True, False],
                          [False, False, False],
                          [True, False, True]])   # (U, K)
tiny_n_rel = torch.tensor([2, 1, 3])              # (U,)
per_user = _accuracy(tiny_hits, tiny_n_rel)
print(pd.DataFrame({name: values.numpy() for name, values in per_user.items()},
                   index=["ann", "bob", "cat"]).round(4))

# %% [markdown]
# These are the per-user numbers worked out above; their column means are HR, Recall, NDCG and
# MRR. The rest of `ranking_metrics` (below) validates its input, builds the hit matrix, and adds
# Coverage, ARP and the debiased metrics. Its doctest is another hand-worked example.

# %%
show_source(ranking_metrics)

# %% [markdown]
# ## 3. Debiased metrics
#
# Test windows are dominated by a few blockbuster items. A model that recommends them scores well
# on HR and NDCG while telling users little they would not have found anyway. The paper therefore
# also reports *debiased* HR and NDCG (following RecTools): an item's test popularity is the number
# of test users who have it; items more popular than $Q_3 + 1.5\,\mathrm{IQR}$ of the test items'
# popularities (the usual box-plot outlier fence) are down-sampled, keeping a random subset of
# exactly that many of their (user, item) pairs; then HR and NDCG are computed as before on the
# remaining pairs (a user left with no pair drops out).

# %%
show_source(_debias_keep)

# %% [markdown]
# In the tiny example `e` is relevant for all three test users and every other test item for one,
# so `e` is above the fence and keeps a random two of its three pairs. A naive version lists every
# possible down-sample and its HR and NDCG, with the naive loops of the previous section:

# %%
# NBVAL_CHECK_OUTPUT
test_popularity = tiny_test["item_id"].value_counts().sort_index()
q1, q3 = np.percentile(test_popularity.to_numpy(), [25, 75])
cap = math.floor(q3 + 1.5 * (q3 - q1))
print(f"test popularity {test_popularity.to_dict()}; Q1 = {q1}, Q3 = {q3}, cap = {cap}")
over_cap = test_popularity[test_popularity > cap].index
possible = {}
choices_per_item = [itertools.combinations(tiny_test.index[tiny_test["item_id"] == item],
                                           cap)
                    for item in over_cap]
for kept in itertools.product(*choices_per_item):
    kept_rows = [row for rows in kept for row in rows]
    keep = ~tiny_test["item_id"].isin(over_cap) | tiny_test.index.isin(kept_rows)
    dropped_pairs = tiny_test.loc[~keep, ["user_id", "item_id"]].values
    dropped = ", ".join(f"({user}, {item})" for user, item in dropped_pairs)
    m = naive_metrics(tiny_recs, tiny_test[keep], tiny_train, k=3)
    possible[dropped] = (m["hr@3"], m["ndcg@3"])
    print(f"drop {dropped}: HR@3 {m['hr@3']:.4f}, NDCG@3 {m['ndcg@3']:.4f}")

# %% [markdown]
# Dropping bob's only pair removes bob, a miss, from the average, which is why one down-sample
# raises HR. The package draws one of these down-samples with a seeded generator; for each seed
# its result must be one of the rows above:

# %%
for seed in range(6):
    m = evaluate_recommendations(tiny_recs, tiny_test, tiny_train, k=3, seed=seed)
    got = torch.tensor([m["debiased_hr@3"], m["debiased_ndcg@3"]], dtype=torch.float64)
    distance = {drop: float((got - torch.tensor(values, dtype=torch.float64)).abs().sum())
                for drop, values in possible.items()}
    dropped = min(distance, key=distance.get)
    torch.testing.assert_close(got, torch.tensor(possible[dropped], dtype=torch.float64))
    print(f"seed {seed}: debiased HR@3 {got[0]:.4f}, NDCG@3 {got[1]:.4f} = drop {dropped}")

# %% [markdown]
# ## 4. Popularity baselines on the time split
#
# The simplest recommender ranks items by how many distinct train users interacted with them and
# shows each user the top $K$ they have not seen. The paper's baselines are two versions of it
# (from RecTools): **Popular**, counting the whole training period, and **Popular (last 7
# days)**, counting only the last week before the cut, "what is popular right now". Here is the
# package's version; ties go to the item seen first in train:

# %%
show_source(PopularRecommender.fit)

# %% [markdown]
# `recommend` scores every item with the same popularity row and reuses the model's top-k routine
# (`esasrec.metrics.topk_from_scores`), so baselines and models exclude seen items and break ties
# by exactly the same rule. Both baselines on the 60-day time split of Chapter 1:

# %%
df = load_dataset(DATASET)
train, test, stats = time_split(df, test_days=TEST_DAYS)
print(stats)
test_users = test["user_id"].unique()
baselines = {"Popular": PopularRecommender(),
             "Popular (last 7 days)": PopularRecommender(days=7)}
time_recs = {name: model.fit(train).recommend(test_users, k=K)
             for name, model in baselines.items()}
time_results = pd.DataFrame({name: evaluate_recommendations(recs, test, train, k=K)
                             for name, recs in time_recs.items()}).T
print(f"test users: {len(test_users):,}")
time_results.drop(columns="n_test_users").T.round(4)

# %% [markdown]
# The same naive loops check the real evaluation (every accuracy metric, coverage and ARP). The
# naive popularity ranking is a second check, of the baseline itself: count distinct users per
# item in a dictionary, sort, and walk down the list for each user skipping what they saw.

# %%
def naive_popular_recs(train, users, k: int, days: float | None = None) -> pd.DataFrame:
    """Top-k most popular unseen items per user, by dictionaries and loops."""
    first_seen, users_of = {}, {}
    start = train["timestamp"].max() - days * 86_400 if days is not None else -math.inf
    log = zip(train["user_id"], train["item_id"], train["timestamp"])
    for order, (user, item, ts) in enumerate(sorted(log, key=lambda t: t[2])):
        first_seen.setdefault(item, order)
        if ts >= start:
            users_of.setdefault(item, set()).add(user)
    ranking = sorted(users_of, key=lambda item: (-len(users_of[item]), first_seen[item]))
    seen = {}
    for user, item in zip(train["user_id"], train["item_id"]):
        seen.setdefault(user, set()).add(item)
    rows = []
    for user in users:
        unseen = (item for item in ranking if item not in seen.get(user, set()))
        top = itertools.islice(unseen, k)
        rows += [(user, item, rank) for rank, item in enumerate(top, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


for (name, recs), days in zip(time_recs.items(), (None, 7)):
    naive_recs = naive_popular_recs(train, test_users, K, days)
    pd.testing.assert_frame_equal(recs.reset_index(drop=True), naive_recs,
                                  check_dtype=False)
    assert_same_metrics(time_results.loc[name].to_dict(),
                        naive_metrics(recs, test, train, K))
    print(f"{name}: same recommendations and metrics as the naive loops "
          f"({len(test_users):,} users)")

# %%
shown = ["hr@10", "recall@10", "ndcg@10", "mrr@10", "debiased_hr@10", "debiased_ndcg@10"]
long = time_results[shown].rename_axis("baseline").reset_index().melt(
    id_vars="baseline", var_name="metric", value_name="value")
fig, ax = plt.subplots()
sns.barplot(data=long, x="metric", y="value", hue="baseline", ax=ax)
ax.set(xlabel="", ylabel="value (higher is better)",
       title=f"{DATASET}, {TEST_DAYS}-day time split: popularity baselines at K = {K}")
ax.tick_params(axis="x", labelrotation=20)
plt.show()

# %%
ndcg = time_results["ndcg@10"]
ratio = ndcg["Popular (last 7 days)"] / ndcg["Popular"]
print(f"NDCG@10 of Popular (last 7 days) / Popular on the time split: {ratio:.2f}")
n_shown = (time_results["coverage@10"] * stats.train_items).round().astype(int)
print("items in anybody's top 10:",
      ", ".join(f"{name} {n:,}" for name, n in n_shown.items()))

# %% [markdown]
# What the run shows. On the time split the recent-popularity baseline is the stronger one (the
# ratio above): what users take up in the test window resembles what was popular just before
# it much more than what was popular over the whole history. Both baselines have tiny coverage,
# since almost every user gets almost the same ten items, and the debiased metrics fall well below
# the plain ones: the hits of a popularity baseline are mostly on the blockbusters that debiasing
# thins out. After debiasing, the gap between the two baselines also shrinks (compare the
# debiased bars with the plain ones): much of the recent baseline's advantage comes from
# predicting the window's blockbusters. These facts are the bar for the models: a sequential model should beat
# "Popular (last 7 days)" on accuracy, and it should do so with far larger coverage.
#
# The same baselines under leave-one-out tell a different story. "The last 7 days" means the
# last 7 days before the end of the training data, but most leave-one-out test interactions happen
# long before that (Chapter 1), so the baseline recommends items that were popular at a time
# unrelated to the user's test item:

# %%
loo_train, loo_test, _ = leave_one_out(df)
loo_users = loo_test["user_id"].unique()
loo_results = pd.DataFrame({
    name: evaluate_recommendations(model.fit(loo_train).recommend(loo_users, k=K),
                                   loo_test, loo_train, k=K)
    for name, model in baselines.items()}).T
columns = ["hr@10", "ndcg@10", "coverage@10"]
comparison = pd.concat({"time split": time_results[columns],
                        "leave-one-out": loo_results[columns]}, axis=1)
comparison.round(4)

# %% [markdown]
# Which baseline is "better" depends on the protocol, which is one more reason the paper's
# production-like numbers come from the time split. Chapter 3 builds SASRec and trains it on this
# split; its numbers go in the same table.

# %%
from esasrec.provenance import provenance; provenance(DATASET, STARTED)
