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
# # Chapter 1. Data and the time-based split
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/esasrec/esasrec/blob/main/notebooks/01_data.ipynb)
#
# A sequential recommender learns from an interaction log: who did what, and when. Before any
# model, this chapter answers two questions that decide what every later number means:
# what does the data look like, and how is it cut into a training part and a test part?
# The eSASRec paper (Tikhonovich et al., 2025) reports results under two protocols, the
# academic *leave-one-out* split and a production-like *global time split*; we build both,
# look at their statistics, and measure how much of the future leave-one-out lets a model see.

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
TEST_DAYS = 60                            # the paper's window for its time split

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from esasrec.data import DATASETS, load_dataset
from esasrec.split import DAY, holdout_last, leave_one_out, time_split

sns.set_theme(style="whitegrid")
plt.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 90})
pd.set_option("display.precision", 4)


def show_source(obj) -> None:
    """Render the source code of a package object as a highlighted code block."""
    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


# %% [markdown]
# ## 1. The interaction log
#
# Everything in the package starts from one tidy frame with three columns: `user_id`,
# `item_id` and `timestamp` (integer unix seconds). `esasrec.data.load_dataset` returns it for a
# built-in dataset (downloading it once into a cache folder, checked by sha256), a CSV or Parquet
# file, or a DataFrame. Rows keep the order of the source file and are never sorted: when two
# interactions of a user share a timestamp, the file order decides which came first.
#
# In full mode this book uses **Amazon Beauty**, the 5-core subset of the Amazon review data as
# preprocessed for S3-Rec (Zhou et al., 2020) and used by the eSASRec paper: every user and item
# has at least five reviews, and a review counts as an interaction. Its timestamps have day
# granularity, so same-day ties are common. Fast mode uses the MovieLens latest-small ratings that
# ship with the package.

# %%
info = DATASETS[DATASET]
print(f"{info.name}: {info.description}")
print(f"licence: {info.licence}")
df = load_dataset(DATASET)
df.head()

# %%
n_users, n_items = df["user_id"].nunique(), df["item_id"].nunique()
history = df.groupby("user_id").size()
summary = pd.Series({
    "interactions": f"{len(df):,}",
    "users": f"{n_users:,}",
    "items": f"{n_items:,}",
    "density (interactions / users x items)": f"{len(df) / (n_users * n_items):.4%}",
    "median history length": f"{history.median():.0f}",
    "mean history length": f"{history.mean():.1f}",
    "first interaction": str(pd.Timestamp(df["timestamp"].min(), unit="s").date()),
    "last interaction": str(pd.Timestamp(df["timestamp"].max(), unit="s").date()),
    "rows sharing a (user, timestamp)":
        f"{df.duplicated(['user_id', 'timestamp'], keep=False).mean():.2%}",
})
summary.to_frame(DATASET)

# %% [markdown]
# The last row is the share of interactions that tie in time with another interaction of the
# same user: for those, only the file order says which came first.
#
# ## 2. What the data looks like
#
# **History lengths.** The model reads each user's history as a sequence, truncated to the last
# `max_len` items (50 for Beauty in the paper). Most histories are short and a few are long
# (note the log scales):

# %%
users_per_length = history.value_counts().sort_index()
fig, ax = plt.subplots()
ax.plot(users_per_length.index, users_per_length.to_numpy(), ".", ms=5)
ax.set(xscale="log", yscale="log",
       xlabel="history length: interactions per user (log scale)",
       ylabel="users (log scale)",
       title=f"{DATASET}: how many users have each history length")
ax.axvline(50, color="tab:red", linestyle="--",
           label="max_len = 50 (the paper's Beauty setting)")
ax.legend()
plt.show()
quantiles = history.quantile([0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
print("history length quantiles:", ", ".join(f"{q:.0%} {v:g}" for q, v in quantiles.items()))
print(f"users with more than 50 interactions: {(history > 50).mean():.2%}")

# %% [markdown]
# **The long tail of items.** Sort items by how many interactions they have and plot that count
# against the item's rank. A straight-ish line on log-log axes is the familiar long tail: a few
# head items collect a large share of all interactions. This matters twice later: a popularity
# baseline is strong exactly because of the head (Chapter 2), and a loss that samples negatives
# uniformly mostly draws tail items (Chapter 4).

# %%
item_counts = df["item_id"].value_counts().to_numpy()  # sorted, most popular first
rank = np.arange(1, len(item_counts) + 1)
fig, ax = plt.subplots()
ax.plot(rank, item_counts)
ax.set(xscale="log", yscale="log", xlabel="item rank by popularity (log scale)",
       ylabel="interactions (log scale)", title=f"{DATASET}: item popularity")
plt.show()
share = np.cumsum(item_counts) / item_counts.sum()
for top in (0.01, 0.1, 0.2):
    n_top = max(1, int(round(top * len(item_counts))))
    print(f"top {top:>4.0%} of items ({n_top:>5,}) hold {share[n_top - 1]:.1%} "
          "of the interactions")

# %% [markdown]
# **Interactions over time.** The paper's production-like protocol cuts the timeline once, for
# everybody: the last 60 days are the test window (shaded) and everything before them is train.

# %%
train, test, stats = time_split(df, test_days=TEST_DAYS)
cut = pd.Timestamp(stats.window_start, unit="s")
when = pd.to_datetime(df["timestamp"], unit="s")
start = when.quantile(0.01)  # a long, nearly empty prefix would hide the window
week = when[when >= start].dt.to_period("W").dt.start_time
weekly = week.value_counts().sort_index()
fig, ax = plt.subplots()
ax.plot(weekly.index, weekly.to_numpy(), lw=1)
ax.axvspan(cut, pd.Timestamp(stats.window_end, unit="s"), color="tab:red", alpha=0.2,
           label=f"test window: last {TEST_DAYS} days")
ax.axvline(cut, color="tab:red", lw=1)
ax.set(xlabel="week", ylabel="interactions per week",
       title=f"{DATASET}: interactions over time (from the 1st percentile of time)")
ax.legend(loc="upper left")
plt.show()
in_window = (df["timestamp"] >= stats.window_start).mean()
print(f"global cut: {cut.date()}; interactions at or after it: {in_window:.2%}")

# %% [markdown]
# ## 3. The global time split
#
# The time split of the eSASRec paper puts one cut on the timeline. Train is *every* interaction before the cut, from every user; the test window is
# what happens after it. A test interaction is kept only if the model could possibly predict it:
#
# - the user has a training history (otherwise the user is *cold*);
# - the item appears in train (otherwise the item is *cold* and cannot be scored);
# - the (user, item) pair is not already in train (recommenders exclude seen items);
# - a pair repeated inside the window counts once (each test user has a *set* of relevant items).
#
# This is the package's implementation; the window ends at the end of the day of the last
# interaction, so "the last 60 days" are 60 whole days:

# %%
show_source(time_split)

# %% [markdown]
# A probe on a hand-made log with explicit timestamps (in days): three users, a cut two days
# before the end of day 9. User 3 has no history before the cut (cold); user 1's test item `b`
# is one they already had in train (seen); item `z` never appears in train (cold item). Only
# user 2's interaction with `b` survives.

# %%
# NBVAL_CHECK_OUTPUT
toy = pd.DataFrame({
    "user_id":   [1,   1,   2,   2,   2,   1,   3,   2],
    "item_id":   ["a", "b", "a", "c", "b", "b", "c", "z"],
    "timestamp": [0,   2,   1,   5,   8,   8,   9,   9],
})
toy["timestamp"] *= DAY
toy_train, toy_test, toy_stats = time_split(toy, test_days=2)
print("train:", toy_train[["user_id", "item_id"]].values.tolist())
print("test: ", toy_test[["user_id", "item_id"]].values.tolist())
print(toy_stats)

# %% [markdown]
# To check the package, here is the same protocol written as naively as possible: one pass over
# the rows in file order, a Python set for each filter. It runs on the toy log and on the whole
# dataset, and must select exactly the same rows.

# %%
def naive_time_split_rows(log: pd.DataFrame, days: float) -> tuple[list, list]:
    """Row labels of train and test, by explicit loops (a reference for time_split)."""
    last_day_end = (log["timestamp"].max() // DAY + 1) * DAY
    cut = last_day_end - days * DAY
    rows = list(zip(log.index, log["user_id"], log["item_id"], log["timestamp"]))
    train_rows, train_users, train_items, train_pairs = [], set(), set(), set()
    for row, user, item, ts in rows:
        if ts < cut:
            train_rows.append(row)
            train_users.add(user)
            train_items.add(item)
            train_pairs.add((user, item))
    test_rows, test_pairs = [], set()
    for row, user, item, ts in rows:
        if ts < cut or user not in train_users or item not in train_items:
            continue
        if (user, item) not in train_pairs and (user, item) not in test_pairs:
            test_rows.append(row)
            test_pairs.add((user, item))
    return train_rows, test_rows


for name, log, days, split_train, split_test in [("toy", toy, 2, toy_train, toy_test),
                                                  (DATASET, df, TEST_DAYS, train, test)]:
    naive_train, naive_test = naive_time_split_rows(log, days)
    assert naive_train == split_train.index.tolist()
    assert naive_test == split_test.index.tolist()
    print(f"{name}: time_split selects the same {len(naive_train):,} train and "
          f"{len(naive_test):,} test rows as the loops")

# %% [markdown]
# ## 4. Leave-one-out, and the future it leaks
#
# The academic protocol most sequential-recommendation papers use (SASRec among them) is
# *leave-one-out*: for each user, the last interaction is the test item and everything before it
# is train (the one before the last serves as validation). It is simple and gives every user a
# test item, but it has no notion of a common "now". User A's test purchase may have happened in
# 2012 while user B's training history runs until 2014: the model is trained on interactions that
# happened *after* the ones it is asked to predict, including other users' later interactions with
# the very item it should recommend. In production that information does not exist yet.
#
# The package's `leave_one_out` keeps the same test filters as the time split:

# %%
show_source(leave_one_out)

# %%
loo_train, loo_test, loo_stats = leave_one_out(df)
print(loo_stats)

# %% [markdown]
# How much future does each protocol show the model? For every test interaction at time $t$ we
# count the training interactions that happen strictly after $t$, and check whether the test
# item itself appears in train after $t$ (someone else interacted with it later). By construction
# both numbers are zero for the time split; the function measures them for either protocol.

# %%
def future_leak(split_train: pd.DataFrame, split_test: pd.DataFrame):
    """Leak summary of a split; per test interaction, the share of train in its future."""
    train_times = np.sort(split_train["timestamp"].to_numpy())
    test_times = split_test["timestamp"].to_numpy()
    n_later = len(train_times) - np.searchsorted(train_times, test_times, side="right")
    item_last_train_time = split_train.groupby("item_id")["timestamp"].max()
    last_seen = split_test["item_id"].map(item_last_train_time).to_numpy()
    summary = pd.Series({
        "share with any train interaction later": (n_later > 0).mean(),
        "median share of train that is later": np.median(n_later / len(train_times)),
        "share whose item appears in train later": (last_seen > test_times).mean(),
    })
    return summary, n_later / len(train_times)


loo_leak, loo_later_share = future_leak(loo_train, loo_test)
time_leak, _ = future_leak(train, test)
leak_table = pd.DataFrame({"leave-one-out": loo_leak,
                           f"time split ({TEST_DAYS} days)": time_leak})
leak_table.loc["share before the global cut"] = [
    (loo_test["timestamp"] < stats.window_start).mean(),
    (test["timestamp"] < stats.window_start).mean()]
print(f"test interactions: leave-one-out {len(loo_test):,}, time split {len(test):,}")
leak_table.round(4)

# %%
fig, ax = plt.subplots()
sns.histplot(loo_later_share, bins=50, ax=ax)
ax.set(xlabel="share of the training interactions that happen after the test interaction",
       ylabel="leave-one-out test interactions",
       title=f"{DATASET}: how much of train is in each test item's future")
plt.show()

# %% [markdown]
# The table and the histogram above are the leak, measured. Under leave-one-out almost every test
# interaction has training data from its own future, a sizeable share of the whole training set
# typically lies after it, and for most test interactions the model has already seen other users
# take up the very item it must predict, later in time. Most leave-one-out test interactions are
# not even in the last 60 days: they are scattered over the whole timeline (the last row). Under
# the time split every one of these numbers is zero by construction.
#
# This is why the paper treats the time split as its production-like protocol, and
# why a popularity baseline looks very different under the two (Chapter 2): "what is popular now"
# is only well defined when there is one "now". Leave-one-out stays in the book because the
# headline comparisons with published models (ActionPiece, HSTU, FuXi-α) are made under it.
#
# ## 5. The split statistics
#
# Both splitters return a `SplitStats` record of what was kept and what each filter removed.
# Side by side:

# %%
print(stats)
print(loo_stats)
stats_table = pd.DataFrame({"time split": stats.as_dict(),
                            "leave-one-out": loo_stats.as_dict()})
stats_table.drop(["protocol", "window_start", "window_end"])

# %% [markdown]
# Look at the time split's removal counts. The cold-user filter removes test
# interactions of users who first appear in the window: in a real service they would be served by
# a cold-start fallback, not by a sequential model. The cold-item filter removes items released
# inside the window. Leave-one-out keeps almost every user, but each with exactly one test item;
# the time split keeps fewer users, each with all of their window's items as the relevant set,
# which is why Recall and HR differ under it (Chapter 2).
#
# Later chapters also hold out a validation fold for early stopping: the paper takes the last
# training interaction of 2048 random users (`holdout_last`). The model never trains on those
# interactions and never sees the test window:

# %%
train_rest, valid = holdout_last(train, n_users=2048)
print(f"train for fitting: {len(train_rest):,} rows")
print(f"validation: {len(valid):,} rows, {valid['user_id'].nunique():,} users")
assert valid["timestamp"].max() < stats.window_start

# %% [markdown]
# **Summary.** The data is a log of (user, item, time). Its users have short histories and its
# items a long tail. The global time split cuts it once, trains on the past and tests on the next
# 60 days, with cold users, cold items and already-seen pairs removed; leave-one-out tests each
# user's last interaction and, as measured above, lets the model learn from the future. Chapter 2
# defines the metrics on these splits and the popularity baselines every model has to beat.

# %%
from esasrec.provenance import provenance; provenance(DATASET, STARTED)
