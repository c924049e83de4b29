"""The four losses (REFERENCE §1.3) against brute-force formulas, and their sampling / dispatch.

The losses compute in float32 (they upcast bf16 logits), so comparisons use float32 tolerances;
the brute-force references use Python floats (double precision).
"""

import math
import warnings

import pytest
import torch

import esasrec.losses as losses
from esasrec.losses import (LOSSES, bce_loss, candidate_logits, compute_loss, gbce_beta, gbce_loss,
                            log_q_from_counts, sample_negatives, sampled_softmax_loss, softmax_loss)

I = 30  # catalogue size
D = 8
N = 7  # positions


def data(n=N, n_items=I, d=D, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g) * scale
    emb = torch.randn(n_items + 1, d, generator=g)
    emb[0] = 0.0
    targets = torch.randint(1, n_items + 1, (n,), generator=g)
    return h, emb, targets


def negs(n=N, k=5, n_items=I, seed=1):
    return sample_negatives(n, k, n_items, generator=torch.Generator().manual_seed(seed))


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# ----------------------------------------------------------------------- sampled vs full softmax
def all_other_items(targets, n_items=I):
    return torch.stack([torch.tensor([i for i in range(1, n_items + 1) if i != t]) for t in targets.tolist()])


def test_sampled_softmax_equals_full_softmax_when_negatives_are_all_other_items():
    h, emb, t = data()
    full = softmax_loss(h, emb, t)
    sampled = sampled_softmax_loss(h, emb, t, all_other_items(t))
    torch.testing.assert_close(sampled, full, rtol=1e-6, atol=1e-6)
    # and full softmax is cross-entropy over items 1..I, by hand
    by_hand = sum(-(h[n] @ emb[t[n]]) + torch.logsumexp(h[n] @ emb[1:].T, 0) for n in range(N)) / N
    torch.testing.assert_close(full, by_hand)


def test_sampled_softmax_with_the_whole_catalogue_counts_the_positive_twice():
    h, emb, t = data()
    every_item = torch.arange(1, I + 1).expand(N, -1)
    got = sampled_softmax_loss(h, emb, t, every_item)
    s = h @ emb.T  # (N, I + 1)
    pos = s.gather(1, t[:, None])[:, 0]
    expected = (-pos + torch.log(pos.exp() + s[:, 1:].exp().sum(1))).mean()
    torch.testing.assert_close(got, expected)
    assert got > softmax_loss(h, emb, t)  # the duplicated positive is the only difference


def test_sampled_softmax_by_hand():
    h, emb, t = data()
    neg = negs(k=6)
    got = sampled_softmax_loss(h, emb, t, neg)
    total = 0.0
    for n in range(N):
        logits = [float(h[n] @ emb[t[n]])] + [float(h[n] @ emb[j]) for j in neg[n]]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert got.item() == pytest.approx(total / N, rel=1e-5)


def test_shared_negatives_equal_the_same_negatives_per_position():
    h, emb, t = data()
    shared = negs(n=1, k=9)[0]  # (k,)
    torch.testing.assert_close(sampled_softmax_loss(h, emb, t, shared),
                               sampled_softmax_loss(h, emb, t, shared.expand(N, -1)))
    lq = log_q_from_counts(torch.arange(I + 1))
    torch.testing.assert_close(sampled_softmax_loss(h, emb, t, shared, log_q=lq),
                               sampled_softmax_loss(h, emb, t, shared.expand(N, -1).clone(), log_q=lq))


# ---------------------------------------------------------------------------------------- logQ
def test_log_q_is_subtracted_from_every_candidate():
    h, emb, t = data()
    neg = negs(k=6)
    log_q = -torch.rand(I + 1, generator=torch.Generator().manual_seed(5)) * 3
    got = sampled_softmax_loss(h, emb, t, neg, log_q=log_q)
    cand = torch.cat([t[:, None], neg], 1)
    logits = (h[:, None, :] * emb[cand]).sum(-1) - log_q[cand]
    expected = (-logits[:, 0] + torch.logsumexp(logits, 1)).mean()
    torch.testing.assert_close(got, expected)
    assert not torch.isclose(got, sampled_softmax_loss(h, emb, t, neg))
    # a constant correction cancels out
    torch.testing.assert_close(sampled_softmax_loss(h, emb, t, neg, log_q=torch.full((I + 1,), -2.5)),
                               sampled_softmax_loss(h, emb, t, neg))


def test_log_q_from_counts():
    counts = torch.tensor([0, 1, 3, 0, 4])
    lq = log_q_from_counts(counts)
    assert lq.shape == (5,)
    assert lq[0] == 0  # padding
    torch.testing.assert_close(lq[[1, 2, 4]], torch.tensor([1 / 8, 3 / 8, 4 / 8]).log())
    assert torch.isfinite(lq).all()


# --------------------------------------------------------------------------------- BCE and gBCE
def brute_bce(h, emb, t, neg, beta=1.0):
    total = 0.0
    for n in range(len(t)):
        pos = float(h[n] @ emb[t[n]])
        terms = [-beta * log_sigmoid(pos)] + [-log_sigmoid(-float(h[n] @ emb[j])) for j in neg[n]]
        total += sum(terms) / len(terms)  # mean over the 1 + k logits
    return total / len(t)  # then over positions


@pytest.mark.parametrize("k", [1, 4])
def test_bce_against_brute_force(k):
    h, emb, t = data()
    neg = negs(k=k)
    assert bce_loss(h, emb, t, neg).item() == pytest.approx(brute_bce(h, emb, t, neg), rel=1e-5)


def test_bce_single_negative_closed_form():
    h, emb, t = data(n=1)
    neg = torch.tensor([[3]])
    sp, sn = float(h[0] @ emb[t[0]]), float(h[0] @ emb[3])
    expected = (math.log1p(math.exp(-sp)) + math.log1p(math.exp(sn))) / 2
    assert bce_loss(h, emb, t, neg).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("k, t_", [(4, 0.75), (8, 0.5), (16, 0.9), (4, 1.0)])
def test_gbce_against_brute_force(k, t_):
    h, emb, t = data()
    neg = negs(k=k)
    alpha = k / (I - 1)
    beta = alpha * (t_ * (1 - 1 / alpha) + 1 / alpha)
    assert gbce_beta(k, I, t_) == pytest.approx(beta, rel=1e-12)
    got = gbce_loss(h, emb, t, neg, n_items=I, t=t_)
    assert got.item() == pytest.approx(brute_bce(h, emb, t, neg, beta=beta), rel=1e-5)
    if beta != pytest.approx(1.0):
        assert got.item() != pytest.approx(bce_loss(h, emb, t, neg).item(), rel=1e-3)


def test_gbce_beta_limits():
    # t = 0: beta = alpha * (1/alpha) = 1 (plain BCE); t = 1: beta = alpha
    assert gbce_beta(256, 1001, 0.0) == pytest.approx(1.0)
    assert gbce_beta(256, 1001, 1.0) == pytest.approx(256 / 1000)
    assert gbce_beta(256, 3417, 0.75) == pytest.approx((256 / 3416) * (0.75 * (1 - 3416 / 256) + 3416 / 256))


def test_gbce_with_t_zero_is_bce():
    h, emb, t = data()
    neg = negs(k=5)
    torch.testing.assert_close(gbce_loss(h, emb, t, neg, n_items=I, t=0.0), bce_loss(h, emb, t, neg))


# ------------------------------------------------------------------------------ candidate logits
def naive_candidate_logits(h, emb, cand):
    out = torch.zeros(cand.shape, dtype=h.dtype)
    for n in range(cand.shape[0]):
        for c in range(cand.shape[1]):
            out[n, c] = (h[n] * emb[cand[n, c]]).sum()
    return out


@pytest.mark.parametrize("n_candidates", [1, 3])
def test_candidate_logits_across_the_gather_threshold(n_candidates):
    threshold = losses.GATHER_RATIO * n_candidates  # catalogue rows at which the method switches
    for rows in (threshold - 1, threshold, threshold + 1, threshold + 2):
        h, emb, _ = data(n=5, n_items=rows - 1, seed=rows)
        cand = torch.randint(0, rows, (5, n_candidates), generator=torch.Generator().manual_seed(rows))
        torch.testing.assert_close(candidate_logits(h, emb, cand), naive_candidate_logits(h, emb, cand))


def test_candidate_logits_both_code_paths_agree(monkeypatch):
    h, emb, _ = data(n=6, n_items=40)
    cand = torch.randint(1, 41, (6, 5), generator=torch.Generator().manual_seed(2))
    results = []
    for ratio in (0, 10 ** 9):  # always gather / always score the whole catalogue
        monkeypatch.setattr(losses, "GATHER_RATIO", ratio)
        results.append(candidate_logits(h, emb, cand))
    torch.testing.assert_close(results[0], results[1])
    torch.testing.assert_close(results[0], naive_candidate_logits(h, emb, cand))
    # gradients agree too
    grads = []
    for ratio in (0, 10 ** 9):
        monkeypatch.setattr(losses, "GATHER_RATIO", ratio)
        hh, ee = h.clone().requires_grad_(), emb.clone().requires_grad_()
        candidate_logits(hh, ee, cand).pow(2).sum().backward()
        grads.append((hh.grad, ee.grad))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("n_items", [40, 400])  # C = 5: below and above COMPILED_GATHER_RATIO * C = 120
def test_compiled_loss_matches_eager_loss_and_gradients(n_items):
    """The trainer's torch.compile'd loss (either scoring form) computes the eager loss and its gradients."""
    from esasrec.train import _compiled_loss

    assert (n_items + 1 > losses.COMPILED_GATHER_RATIO * 5) == (n_items == 400)
    h, emb, targets = data(n=9, n_items=n_items, seed=n_items)
    negatives = torch.randint(1, n_items + 1, (9, 4), generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (losses.loss_with_negatives, _compiled_loss()):
        hh, ee = h.clone().requires_grad_(), emb.clone().requires_grad_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = fn("sampled_softmax", hh, ee, targets, negatives)
        # _compiled_loss falls back to eager with a warning; that would make this test vacuous.
        assert not [w for w in caught if "torch.compile failed" in str(w.message)]
        loss.backward()
        results.append((loss.detach(), hh.grad, ee.grad))
    torch.testing.assert_close(results[0], results[1])


# ------------------------------------------------------------------------------------- sampling
def test_sample_negatives_range_shape_and_reproducibility():
    g = torch.Generator().manual_seed(3)
    neg = sample_negatives(200, 16, I, generator=g)
    assert neg.shape == (200, 16)
    assert neg.dtype == torch.long
    assert neg.min() == 1 and neg.max() == I  # 3200 draws cover both ends
    assert len(neg.unique()) == I
    again = sample_negatives(200, 16, I, generator=torch.Generator().manual_seed(3))
    assert torch.equal(neg, again)
    other = sample_negatives(200, 16, I, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(neg, other)
    # independent per position: rows differ
    assert len({tuple(r) for r in neg.tolist()}) > 190


# ------------------------------------------------------------------------------------- dispatch
def constant_catalogue(n_items=I, d=D):
    """Every item has the same vector, so each logit is h·e whatever negatives are drawn."""
    h, _, t = data(n_items=n_items, d=d)
    e = torch.randn(d, generator=torch.Generator().manual_seed(9))
    emb = e.expand(n_items + 1, d).clone()
    emb[0] = 0.0
    return h, emb, t, h @ e


@pytest.mark.parametrize("name", LOSSES)
def test_compute_loss_dispatch(name):
    assert set(LOSSES) == {"sampled_softmax", "bce", "gbce", "softmax"}
    k = 12
    h, emb, t, s = constant_catalogue()
    got = compute_loss(name, h, emb, t, n_negatives=k, generator=torch.Generator().manual_seed(0), gbce_t=0.6)
    ls = torch.nn.functional.logsigmoid
    beta = gbce_beta(k, I, 0.6)
    expected = {
        "softmax": torch.full_like(s, math.log(I)),
        "sampled_softmax": torch.full_like(s, math.log(1 + k)),
        "bce": (-ls(s) - k * ls(-s)) / (1 + k),
        "gbce": (-beta * ls(s) - k * ls(-s)) / (1 + k),
    }[name].mean()
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["sampled_softmax", "bce", "gbce"])
def test_compute_loss_samples_with_the_generator(name):
    h, emb, t = data()
    run = lambda seed: compute_loss(name, h, emb, t, n_negatives=4, generator=torch.Generator().manual_seed(seed))
    assert run(0) == run(0)
    assert run(0) != run(1)


def test_compute_loss_shared_negatives():
    h, emb, t = data()
    got = compute_loss("sampled_softmax", h, emb, t, n_negatives=6, shared_negatives=True,
                       generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(got)
    # a shared draw is one row of k items: equal to sampled softmax with some (k,) subset of 1..I
    h, emb, t, s = constant_catalogue()
    got = compute_loss("sampled_softmax", h, emb, t, n_negatives=6, shared_negatives=True,
                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, torch.tensor(math.log(7), dtype=got.dtype))
    with pytest.raises(ValueError, match="shared"):
        compute_loss("bce", h, emb, t, n_negatives=6, shared_negatives=True)


def test_compute_loss_unknown_name():
    h, emb, t = data()
    with pytest.raises(ValueError, match="unknown loss"):
        compute_loss("hinge", h, emb, t, n_negatives=4)


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("scale", [1.0, 300.0])  # large logits must not overflow
def test_gradients_finite(name, scale):
    h, emb, t = data(scale=scale)
    h = h.requires_grad_()
    emb = emb.requires_grad_()
    log_q = log_q_from_counts(torch.arange(I + 1)) if name == "sampled_softmax" else None
    loss = compute_loss(name, h, emb, t, n_negatives=8, generator=torch.Generator().manual_seed(0), log_q=log_q)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(h.grad).all() and torch.isfinite(emb.grad).all()
    assert h.grad.abs().sum() > 0
    assert (emb.grad[0] == 0).all()  # padding is never a candidate
