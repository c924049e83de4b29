"""Top-k retrieval and the paper's ranking metrics (REFERENCE §2.3), vectorised in torch.

Internal ids: items are ``1..n_items`` (0 is padding and is never recommended), users are row
indices ``0..U-1``. Three layers, each usable alone:

- :func:`topk_from_scores` turns any scoring function into a ``(U, k)`` table of item ids, in user
  chunks so that a 140k-user x 27k-item evaluation never holds the full score matrix;
- :func:`ranking_metrics` scores such a table against (user, item) relevance pairs: HR, Recall,
  NDCG, MRR, Coverage, ARP and the debiased HR/NDCG, with no per-user Python loop;
- :func:`evaluate_recommendations` does the same for a data frame of recommendations with raw ids,
  so baselines and external models are scored by exactly the same code as ours.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from esasrec.errors import DataError

__all__ = ["METRIC_NAMES", "topk_from_scores", "ranking_metrics", "evaluate_recommendations"]

METRIC_NAMES = ("hr", "recall", "ndcg", "mrr", "coverage", "arp", "debiased_hr", "debiased_ndcg")

# Debiasing cap = Q3 + IQR_COEF * IQR of test-item popularity (REFERENCE §2.3, RecTools' default).
IQR_COEF = 1.5


# ----------------------------------------------------------------------------------------------
# Top-k retrieval


def _topk_exact(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k column ids per row by (-score, id), skipping -inf cells and padding with 0.

    ``torch.topk`` does not promise which of several equal scores it keeps, and a stable sort of
    its k winners cannot repair a tie that straddles the k-th place. So topk only supplies the
    k-th largest score (well defined under ties); every finite cell at or above it is a candidate,
    and the candidates, usually about k per row, are ordered exactly by two stable sorts.

    Args:
        scores: float scores, -inf = excluded.  # (C, N)
        k: items per row, at most N.

    Returns:
        column ids, 0 where fewer than k cells are finite.  # (C, k)
    """
    n_rows = scores.shape[0]
    top_values = torch.topk(scores, k, dim=1, sorted=False).values  # (C, k)
    # topk ranks NaN above everything, so a NaN anywhere in a row shows up here: no extra pass.
    if torch.isnan(top_values).any():
        raise ValueError("score_fn returned NaN scores")
    # Clamping to the lowest finite float keeps -inf cells out in the same single comparison.
    threshold = top_values.min(1, keepdim=True).values.clamp(min=torch.finfo(scores.dtype).min)  # (C, 1)
    cand_row, cand_col = (scores >= threshold).nonzero(as_tuple=True)  # (M,), (M,)
    # nonzero is row-major, so ids ascend within a row; stable sorts keep that order among ties.
    order = torch.argsort(scores[cand_row, cand_col], descending=True, stable=True)  # (M,)
    order = order[torch.argsort(cand_row[order], stable=True)]  # (M,) by row, then -score, then id
    cand_row, cand_col = cand_row[order], cand_col[order]
    rank = torch.arange(len(cand_row), device=scores.device) - torch.searchsorted(cand_row, cand_row)  # (M,)
    keep = rank < k  # more than k candidates only when scores tie at the k-th place
    out = torch.zeros(n_rows, k, dtype=torch.int64, device=scores.device)  # (C, k)
    out[cand_row[keep], rank[keep]] = cand_col[keep]
    return out


def topk_from_scores(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    n_users: int,
    k: int,
    *,
    seen_indptr=None,
    seen_indices=None,
    chunk_size: int = 4096,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """Top-k item ids of every user, scored chunk by chunk, with padding and seen items excluded.

    Ties are exact and deterministic: among equal scores the lower item id ranks first, also across
    the k-th place (see ``_topk_exact``). Scores are compared as float32. An item whose score
    is -inf (column 0, a seen item, or -inf from ``score_fn``) is never returned; when fewer than k
    items remain the row is filled with 0, which the metrics count as a miss.

    Args:
        score_fn: ``score_fn(rows)`` with rows a LongTensor of user indices ``(C,)`` returns the
            scores of every item for those users, ``(C, I + 1)`` with column 0 = padding.
            It is called on ``rows`` placed on ``device`` (when given); the returned tensor is not
            modified, so it may be a view of model state.
        n_users: number of users U; rows ``0..U-1`` are scored.
        k: number of items per user.
        seen_indptr: CSR row pointers of the items to exclude, ``(U + 1,)``; user u's items are
            ``seen_indices[seen_indptr[u]:seen_indptr[u + 1]]``. Tensor or numpy array.
        seen_indices: CSR item ids ``(nnz,)`` in ``1..I``.
        chunk_size: users per call of ``score_fn``; memory is about 9 bytes x chunk_size x (I + 1)
            besides what ``score_fn`` itself holds.
        device: device for the rows passed to ``score_fn`` and for the top-k; default: wherever
            ``score_fn`` returns its scores.
        progress: show a tqdm bar over chunks.

    Returns:
        item ids on the CPU, best first.  # (U, k) int64

    >>> scores = torch.tensor([[0.0, 1.0, 3.0, 3.0, 2.0],   # items 2 and 3 tie
    ...                        [0.0, 5.0, 5.0, 5.0, 5.0]])  # all tie; user 1 has seen item 1
    >>> topk_from_scores(lambda rows: scores[rows], 2, 3,
    ...                  seen_indptr=[0, 0, 1], seen_indices=[1])
    tensor([[2, 3, 4],
            [2, 3, 4]])
    >>> topk_from_scores(lambda rows: scores[rows], 2, 5, seen_indptr=[0, 0, 1], seen_indices=[1])
    tensor([[2, 3, 4, 1, 0],
            [2, 3, 4, 0, 0]])
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if (seen_indptr is None) != (seen_indices is None):
        raise ValueError("pass both seen_indptr and seen_indices (CSR of seen items), or neither")
    if seen_indptr is not None:
        seen_indptr = torch.as_tensor(np.asarray(seen_indptr), dtype=torch.int64)
        seen_indices = torch.as_tensor(np.asarray(seen_indices), dtype=torch.int64)
        if seen_indptr.shape != (n_users + 1,):
            raise ValueError(
                f"seen_indptr must have n_users + 1 = {n_users + 1} entries, got {tuple(seen_indptr.shape)}"
            )
    out = torch.zeros(n_users, k, dtype=torch.int64)  # (U, k)
    starts = range(0, n_users, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="top-k", unit="chunk")
    n_cols = None
    for start in starts:
        end = min(start + chunk_size, n_users)
        rows = torch.arange(start, end, device=device)  # (C,)
        scores = score_fn(rows)  # (C, I + 1)
        if device is not None:
            scores = scores.to(device)
        if scores.dim() != 2 or scores.shape[0] != end - start:
            raise ValueError(
                f"score_fn returned shape {tuple(scores.shape)} for {end - start} rows; expected (C, n_items + 1)"
            )
        if n_cols is None:
            n_cols = scores.shape[1]
        elif scores.shape[1] != n_cols:
            raise ValueError(f"score_fn returned {scores.shape[1]} columns, earlier chunks had {n_cols}")
        # A copy we may write -inf into: score_fn's tensor may be model state or an expanded view.
        masked = scores.to(torch.float32, copy=True)  # (C, I + 1)
        del scores
        masked[:, 0] = float("-inf")
        if seen_indptr is not None:
            lo, hi = int(seen_indptr[start]), int(seen_indptr[end])
            counts = seen_indptr[start + 1 : end + 1] - seen_indptr[start:end]  # (C,)
            seen_rows = torch.repeat_interleave(torch.arange(end - start), counts)  # (nnz in chunk,)
            masked[seen_rows.to(masked.device), seen_indices[lo:hi].to(masked.device)] = float("-inf")
        k_eff = min(k, n_cols)  # topk needs k <= number of columns
        out[start:end, :k_eff] = _topk_exact(masked, k_eff).cpu()
        del masked
    return out


# ----------------------------------------------------------------------------------------------
# Metrics on internal ids


def _hits(top: torch.Tensor, rel_keys: torch.Tensor, stride: int) -> torch.Tensor:
    """Which recommended cells are relevant: (row, item) keys looked up in the sorted relevant keys."""
    rows = torch.arange(top.shape[0], dtype=torch.int64).unsqueeze(1)  # (U, 1)
    return torch.isin(rows * stride + top, rel_keys) & (top > 0)  # (U, K) bool


def _accuracy(hit: torch.Tensor, n_rel: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-user HR, Recall, NDCG, RR for the given users.

    Args:
        hit: relevance of each recommended position.  # (E, K) bool
        n_rel: number of relevant items per user, all >= 1.  # (E,)

    Returns:
        per-user values, float64.  # each (E,)
    """
    k = hit.shape[1]
    hit_f = hit.to(torch.float64)  # (E, K)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))  # (K,)
    ideal = torch.cumsum(discount, 0)  # (K,) IDCG for 1..K relevant items
    n_hits = hit_f.sum(1)  # (E,)
    dcg = hit_f @ discount  # (E,)
    idcg = ideal[n_rel.clamp(max=k) - 1]  # (E,)
    # argmax returns the first maximal position, i.e. the first hit when there is one.
    first = hit.to(torch.uint8).argmax(1)  # (E,)
    rr = torch.where(n_hits > 0, 1.0 / (first + 1).to(torch.float64), 0.0)  # (E,)
    return {
        "hr": (n_hits > 0).to(torch.float64),
        "recall": n_hits / n_rel.to(torch.float64),
        "ndcg": dcg / idcg,
        "mrr": rr,
    }


def _debias_keep(rel_items: torch.Tensor, seed: int) -> torch.Tensor:
    """Which relevance pairs survive down-sampling of test items above the popularity cap.

    Popularity of a test item = number of test users having it (pairs are distinct, so it is the
    item's number of pairs). cap = floor(Q3 + 1.5 IQR) over the test items' popularities, with
    linear-interpolated quartiles (numpy's and pandas' default, as RecTools uses). Each item above
    the cap keeps a uniformly random subset of exactly ``cap`` of its pairs.

    Args:
        rel_items: item of each distinct relevance pair.  # (P,)
        seed: seed of the torch.Generator that draws the subsets.

    Returns:
        keep mask.  # (P,) bool
    """
    item_pop = torch.bincount(rel_items)  # (max item + 1,)
    pops = item_pop[item_pop > 0].to(torch.float64)  # (n test items,)
    q1, q3 = torch.quantile(pops, torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    cap = int(np.floor(q3 + IQR_COEF * (q3 - q1)))
    outlier = item_pop > cap  # (max item + 1,)
    if not outlier.any():
        return torch.ones_like(rel_items, dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    # Shuffle the pairs, then group them by item keeping the shuffled order: the first `cap` pairs
    # of each group are a uniform random subset of that item's pairs.
    perm = torch.randperm(len(rel_items), generator=gen)  # (P,)
    order = perm[torch.argsort(rel_items[perm], stable=True)]  # (P,) pairs grouped by item
    grouped = rel_items[order]  # (P,) sorted items
    rank_in_item = torch.arange(len(order)) - torch.searchsorted(grouped, grouped)  # (P,)
    keep = torch.empty_like(rel_items, dtype=torch.bool)
    keep[order] = ~outlier[grouped] | (rank_in_item < cap)
    return keep


def ranking_metrics(
    topk: torch.Tensor,
    test_rows: torch.Tensor,
    test_items: torch.Tensor,
    *,
    n_items: int,
    k: int = 10,
    item_popularity: torch.Tensor | None = None,
    debias: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """HR, Recall, NDCG, MRR, Coverage, ARP and debiased HR/NDCG at k, averaged over test users.

    Binary relevance: the pairs ``(test_rows[j], test_items[j])`` (duplicates count once). Only
    users with at least one pair are evaluated. A test item outside ``1..n_items`` (not in the
    catalogue) can never be hit but still counts as relevant; 0 in ``topk`` is "no item" and
    never a hit.

    - hr: share of users with a hit; recall: hits / relevant; mrr: 1 / rank of the first hit.
    - ndcg: DCG = sum over hits at rank r of 1/log2(r+1), IDCG over min(relevant, k) hits.
    - coverage: distinct items in the evaluated users' top-k / n_items.
    - arp: mean over evaluated users of the mean ``item_popularity`` of their (nonzero) top-k items;
      users with no recommendation at all are left out of this mean. Only with item_popularity.
    - debiased_hr / debiased_ndcg (when ``debias``): the same after down-sampling test items more
      popular (in test users) than Q3 + 1.5 IQR to that cap; users left without pairs are dropped.

    Args:
        topk: recommended item ids, best first, 0 = none; only the first k columns are used.  # (U, K)
        test_rows: user row of each relevance pair, in ``0..U-1``.  # (T,)
        test_items: item of each relevance pair, >= 1.  # (T,)
        n_items: catalogue size I (coverage denominator).
        k: cut-off.
        item_popularity: e.g. distinct train users per item / train users, index = item id.  # (I + 1,)
        debias: also compute the debiased metrics.
        seed: seed of the debiasing down-sample.

    Returns:
        ``{"hr@k": ..., "recall@k": ..., "ndcg@k": ..., "mrr@k": ..., "coverage@k": ...,
        "arp@k": ..., "debiased_hr@k": ..., "debiased_ndcg@k": ...}`` as Python floats.

    User 0 has items 2 and 5 relevant and hits item 2 at rank 2; user 1 hits item 1 at rank 3:

    >>> topk = torch.tensor([[1, 2, 3], [4, 6, 1]])
    >>> m = ranking_metrics(topk, torch.tensor([0, 0, 1]), torch.tensor([2, 5, 1]),
    ...                     n_items=8, k=3, debias=False)
    >>> {name: round(value, 4) for name, value in m.items()}
    {'hr@3': 1.0, 'recall@3': 0.75, 'ndcg@3': 0.4434, 'mrr@3': 0.4167, 'coverage@3': 0.625}

    (ndcg: user 0 has (1/log2 3) / (1 + 1/log2 3) = 0.3869, user 1 has (1/log2 4) / 1 = 0.5.)
    """
    topk = torch.as_tensor(topk)
    test_rows = torch.as_tensor(test_rows).to(torch.int64)
    test_items = torch.as_tensor(test_items).to(torch.int64)
    if topk.dim() != 2 or topk.dtype.is_floating_point:
        raise ValueError(f"topk must be a 2-D integer tensor (U, K), got {topk.dtype} {tuple(topk.shape)}")
    topk = topk.to(torch.int64).cpu()
    n_users, width = topk.shape
    if k < 1 or width < k:
        raise ValueError(f"k must be between 1 and topk.shape[1] = {width}, got {k}")
    if test_rows.dim() != 1 or test_rows.shape != test_items.shape:
        raise ValueError(
            "test_rows and test_items must be 1-D of equal length, "
            f"got {tuple(test_rows.shape)} and {tuple(test_items.shape)}"
        )
    if len(test_rows) == 0:
        raise ValueError("no relevance pairs: test_rows is empty")
    if test_rows.min() < 0 or test_rows.max() >= n_users:
        raise ValueError(f"test_rows must be user rows in 0..{n_users - 1} (rows of topk)")
    if test_items.min() < 1:
        raise ValueError("test_items must be item ids >= 1 (0 is padding)")
    top = topk[:, :k]  # (U, k)
    if top.min() < 0 or top.max() > n_items:
        raise ValueError(f"topk must hold item ids in 0..n_items = 0..{n_items}")
    sorted_top = top.sort(1).values  # (U, k)
    if ((sorted_top[:, 1:] == sorted_top[:, :-1]) & (sorted_top[:, 1:] > 0)).any():
        raise ValueError("topk recommends the same item twice to one user")

    # Out-of-catalogue test items may exceed n_items, so the key stride must cover them too.
    stride = max(n_items, int(test_items.max())) + 1
    rel_keys = torch.unique(test_rows * stride + test_items)  # (P,) sorted, distinct pairs
    rel_rows, rel_items = rel_keys // stride, rel_keys % stride  # (P,), (P,)
    n_rel = torch.bincount(rel_rows, minlength=n_users)  # (U,)
    evaluated = n_rel > 0  # (U,)

    per_user = _accuracy(_hits(top, rel_keys, stride)[evaluated], n_rel[evaluated])
    out = {f"{name}@{k}": per_user[name].mean().item() for name in ("hr", "recall", "ndcg", "mrr")}
    top_eval = top[evaluated]  # (E, k)
    distinct = torch.unique(top_eval)
    out[f"coverage@{k}"] = int((distinct > 0).sum()) / n_items
    if item_popularity is not None:
        item_popularity = torch.as_tensor(item_popularity, dtype=torch.float64).cpu()
        if item_popularity.shape != (n_items + 1,):
            raise ValueError(
                f"item_popularity must have shape (n_items + 1,) = ({n_items + 1},), "
                f"got {tuple(item_popularity.shape)}"
            )
        present = (top_eval > 0).to(torch.float64)  # (E, k)
        n_recs = present.sum(1)  # (E,)
        pop_sum = (item_popularity[top_eval] * present).sum(1)  # (E,)
        has_recs = n_recs > 0
        out[f"arp@{k}"] = (pop_sum[has_recs] / n_recs[has_recs]).mean().item() if has_recs.any() else float("nan")
    if debias:
        keep = _debias_keep(rel_items, seed)  # (P,)
        kept_keys = rel_keys[keep]
        n_kept = torch.bincount(rel_rows[keep], minlength=n_users)  # (U,)
        still = n_kept > 0
        per_user = _accuracy(_hits(top, kept_keys, stride)[still], n_kept[still])
        out[f"debiased_hr@{k}"] = per_user["hr"].mean().item()
        out[f"debiased_ndcg@{k}"] = per_user["ndcg"].mean().item()
    return out


# ----------------------------------------------------------------------------------------------
# Data-frame front end


def _check_frame(df: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name} is missing column(s) {missing}; it needs {list(columns)} (has {list(df.columns)})")
    for c in columns:
        if df[c].isna().any():
            raise DataError(f"{name}[{c!r}] has {int(df[c].isna().sum())} missing value(s); drop or fill them first")


def evaluate_recommendations(
    recs: pd.DataFrame,
    test: pd.DataFrame,
    train: pd.DataFrame,
    *,
    k: int = 10,
    debias: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Score a recommendation table with raw ids by the same code as :func:`ranking_metrics`.

    The catalogue is the distinct train items; a test item not in train can never be hit but
    still counts as relevant. Rows of ``recs`` for users not in ``test`` or with rank > k are
    ignored; a test user with no recommendation counts as all-miss, and a gap in a user's ranks
    (1, 2, 4) leaves that position empty. ARP uses item popularity = distinct train users of the
    item / distinct train users.

    Args:
        recs: columns user_id, item_id, rank (1 = best; integer, unique per user).
        test: columns user_id, item_id: the relevance pairs.
        train: columns user_id, item_id: defines the catalogue and the popularity.
        k: cut-off.
        debias: also return the debiased HR/NDCG.
        seed: seed of the debiasing down-sample.

    Returns:
        the metrics of :func:`ranking_metrics` plus ``"n_test_users"``.

    >>> train = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "z"]})
    >>> test = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["z", "w"]})  # w is not in train
    >>> recs = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["y", "z", "x"], "rank": [1, 2, 1]})
    >>> m = evaluate_recommendations(recs, test, train, k=2, debias=False)
    >>> m["hr@2"], m["mrr@2"], m["coverage@2"], m["n_test_users"]
    (0.5, 0.25, 1.0, 2)
    """
    _check_frame(recs, "recs", ("user_id", "item_id", "rank"))
    _check_frame(test, "test", ("user_id", "item_id"))
    _check_frame(train, "train", ("user_id", "item_id"))
    if len(test) == 0:
        raise DataError("test is empty: there is nothing to evaluate")
    if len(train) == 0:
        raise DataError("train is empty: the catalogue of items to recommend is undefined")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")

    item_index = pd.Index(pd.unique(train["item_id"]))  # internal id = position + 1
    n_items = len(item_index)
    user_index = pd.Index(pd.unique(test["user_id"]))  # row = position
    n_users = len(user_index)

    test_rows = user_index.get_indexer(test["user_id"])
    test_items = item_index.get_indexer(test["item_id"]) + 1  # 0 where not in the catalogue
    cold = test_items == 0
    if cold.any():
        # Give each out-of-catalogue item its own id above n_items: never recommended, still relevant.
        codes, _ = pd.factorize(test["item_id"].to_numpy()[cold])
        test_items[cold] = n_items + 1 + codes

    rank = pd.to_numeric(recs["rank"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(rank).any() or (rank < 1).any() or (rank != np.floor(rank)).any():
        raise DataError("recs['rank'] must hold integers >= 1 (1 = best)")
    rec_rows = user_index.get_indexer(recs["user_id"])
    use = (rec_rows >= 0) & (rank <= k)
    rec_rows, rank = rec_rows[use], rank[use].astype(np.int64)
    rec_items = item_index.get_indexer(recs["item_id"].to_numpy()[use]) + 1
    if (rec_items == 0).any():
        bad = pd.unique(recs["item_id"].to_numpy()[use][rec_items == 0])[:5]
        raise DataError(
            f"recs recommends item(s) not in the train catalogue, e.g. {list(bad)}; only train items can be scored"
        )
    if pd.DataFrame({"r": rec_rows, "k": rank}).duplicated().any():
        raise DataError("recs has two rows with the same (user_id, rank); ranks must be unique per user")
    if pd.DataFrame({"r": rec_rows, "i": rec_items}).duplicated().any():
        raise DataError("recs recommends the same item twice to one user; drop duplicate (user_id, item_id) rows")
    topk = torch.zeros(n_users, k, dtype=torch.int64)  # (U, k), 0 = no recommendation
    topk[torch.from_numpy(rec_rows), torch.from_numpy(rank - 1)] = torch.from_numpy(rec_items.astype(np.int64))

    pairs = train[["user_id", "item_id"]].drop_duplicates()
    pair_items = torch.from_numpy(item_index.get_indexer(pairs["item_id"]).astype(np.int64) + 1)
    n_train_users = train["user_id"].nunique()
    item_popularity = torch.bincount(pair_items, minlength=n_items + 1).to(torch.float64) / n_train_users  # (I + 1,)

    out = ranking_metrics(
        topk,
        torch.from_numpy(test_rows.astype(np.int64)),
        torch.from_numpy(test_items.astype(np.int64)),
        n_items=n_items,
        k=k,
        item_popularity=item_popularity,
        debias=debias,
        seed=seed,
    )
    out["n_test_users"] = n_users
    return out
