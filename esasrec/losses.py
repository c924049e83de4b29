"""The four training losses the paper compares (REFERENCE §1.3), on non-padding positions only.

Every loss takes ``h`` (N, D), the hidden states of the N real (non-padding) positions of a
batch, the item embedding table (I + 1, D) and the N target ids, so padding never enters a
loss. Candidate scores are ``h · E[item]`` with no bias (tied embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "candidate_logits", "sample_negatives", "sampled_softmax_loss", "bce_loss",
           "gbce_beta", "gbce_loss", "softmax_loss", "draw_negatives", "loss_with_negatives", "compute_loss",
           "log_q_from_counts"]

LOSSES = ("sampled_softmax", "bce", "gbce", "softmax")

# Gathering E[candidates] materialises (N, C, D) and its backward scatters N*C rows into the
# embedding gradient; one (N, D) x (D, I) product plus a column gather costs N*I*D multiply-adds
# but runs at matrix-multiply speed. In eager mode on the 2-core development CPU (N = 1,100,
# C = 257, D = 64, forward + backward) the product won at 3,700 and 12,100 items and the gather
# at 27,000: the gather pays off once the catalogue exceeds roughly this many times C.
GATHER_RATIO = 64
# Under torch.compile the gather form becomes a fused loop (see candidate_logits), which moves the
# switch down. Whole training steps on the 2-core CPU, 2 threads: at Beauty's 12,100 items
# (47 x C) the fused gather took 12.8 s per epoch against 16.9 s for the eager product
# (benchmarks/speed_choices.py, rungs 0-1); at ML-1M's 3,706 (14 x C) it was the slower form in
# both runs of benchmarks/scoring_forms.py, 50 and 58 s against 43-51 s for the product (one
# timed pass each, so about 10% noise). We switch between the two at 24 x C.
COMPILED_GATHER_RATIO = 24


def candidate_logits(h: torch.Tensor, item_emb: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Scores of ``candidates`` (N, C) for hidden states ``h`` (N, D) -> (N, C).

    Chooses between gathering the C candidate vectors and scoring the whole catalogue then
    gathering C columns, by catalogue size; both give the same numbers.
    """
    n_catalogue = item_emb.shape[0]
    if _is_compiling():
        if n_catalogue > COMPILED_GATHER_RATIO * candidates.shape[1]:
            # Under torch.compile this form becomes one fused loop of (N, C) dot products that
            # reads the candidate rows in place, and its backward a fused scatter-add: the
            # (N, C, D) tensor is never written to memory.
            return (h[:, None, :] * item_emb[candidates]).sum(-1)
        return (h @ item_emb.T).gather(1, candidates)
    if n_catalogue > GATHER_RATIO * candidates.shape[1]:
        return torch.einsum("nd,ncd->nc", h, item_emb[candidates])  # (N, C) via (N, C, D)
    return (h @ item_emb.T).gather(1, candidates)  # (N, I + 1) -> (N, C)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def sample_negatives(n: int, k: int, n_items: int, *, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """k uniform negatives from 1..n_items per position, with replacement (N, k).

    As in the paper, a negative may equal the positive: that costs nothing at 256 negatives
    over thousands of items and keeps sampling a single ``randint`` on the device.
    """
    return torch.randint(1, n_items + 1, (n, k), generator=generator, device=device)


def sampled_softmax_loss(h, item_emb, targets, negatives, *, log_q: torch.Tensor | None = None):
    """Cross-entropy over [s+, s1..sk] per position, averaged over positions.

    Args:
        h: (N, D) hidden states; item_emb: (I + 1, D); targets: (N,); negatives: (N, k) per
            position, or (k,) shared by every position of the batch (a cheaper, different
            estimator: all positions see the same k items, so their errors are correlated).
        log_q: optional (I + 1,) log sampling probability (logQ correction) subtracted from
            every candidate's logit.
    """
    if negatives.dim() == 1:
        pos = (h * item_emb[targets]).sum(-1, keepdim=True)  # (N, 1)
        neg = h @ item_emb[negatives].T  # (N, k)
        logits = torch.cat([pos, neg], dim=1)
        candidates = torch.cat([targets[:, None], negatives.expand(len(targets), -1)], dim=1)
    else:
        candidates = torch.cat([targets[:, None], negatives], dim=1)  # (N, 1 + k)
        logits = candidate_logits(h, item_emb, candidates)  # (N, 1 + k)
    logits = logits.float()
    if log_q is not None:
        logits = logits - log_q[candidates]
    # The positive is column 0 of every row.
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=h.device))


def _bce_from_logits(pos_logits: torch.Tensor, neg_logits: torch.Tensor, pos_weight: float = 1.0):
    """Mean binary cross-entropy over the 1 + k logits of each position, then over positions."""
    pos_term = -pos_weight * F.logsigmoid(pos_logits)  # (N,)
    neg_term = -F.logsigmoid(-neg_logits).sum(1)  # (N,)
    return ((pos_term + neg_term) / (1 + neg_logits.shape[1])).mean()


def bce_loss(h, item_emb, targets, negatives):
    """Binary cross-entropy with k negatives per position (SASRec: k = 1)."""
    logits = candidate_logits(h, item_emb, torch.cat([targets[:, None], negatives], 1)).float()
    return _bce_from_logits(logits[:, 0], logits[:, 1:])


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's beta = alpha * (t * (1 - 1/alpha) + 1/alpha) with alpha = k / (I - 1)."""
    alpha = n_negatives / (n_items - 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def gbce_loss(h, item_emb, targets, negatives, *, n_items: int, t: float = 0.75):
    """gBCE: BCE whose positive term is log(sigmoid(s+) ** beta) (Petrov & Macdonald 2023)."""
    beta = gbce_beta(negatives.shape[1], n_items, t)
    logits = candidate_logits(h, item_emb, torch.cat([targets[:, None], negatives], 1)).float()
    return _bce_from_logits(logits[:, 0], logits[:, 1:], pos_weight=beta)


def softmax_loss(h, item_emb, targets):
    """Full softmax: cross-entropy over every catalogue item (padding id 0 excluded)."""
    logits = (h @ item_emb[1:].T).float()  # (N, I)
    return F.cross_entropy(logits, targets - 1)


def draw_negatives(name: str, n: int, n_negatives: int, n_items: int, *, shared: bool = False,
                   generator=None, device=None) -> torch.Tensor | None:
    """The negatives a loss needs: (n, k) per position, (k,) when shared, None for full softmax."""
    if name == "softmax":
        return None
    if shared:
        if name != "sampled_softmax":
            raise ValueError("shared_negatives is only defined for loss='sampled_softmax'")
        return sample_negatives(1, n_negatives, n_items, generator=generator, device=device)[0]
    return sample_negatives(n, n_negatives, n_items, generator=generator, device=device)


def loss_with_negatives(name: str, h, item_emb, targets, negatives, *, gbce_t: float = 0.75, log_q=None):
    """A loss given its already drawn negatives (the part ``torch.compile`` can fuse)."""
    if name == "softmax":
        return softmax_loss(h, item_emb, targets)
    if name == "sampled_softmax":
        return sampled_softmax_loss(h, item_emb, targets, negatives, log_q=log_q)
    if name == "bce":
        return bce_loss(h, item_emb, targets, negatives)
    if name == "gbce":
        return gbce_loss(h, item_emb, targets, negatives, n_items=item_emb.shape[0] - 1, t=gbce_t)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def compute_loss(name: str, h, item_emb, targets, *, n_negatives: int, generator=None,
                 gbce_t: float = 0.75, shared_negatives: bool = False, log_q=None):
    """Draw negatives on ``h``'s device, then compute the named loss."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    negatives = draw_negatives(name, len(targets), n_negatives, item_emb.shape[0] - 1,
                               shared=shared_negatives, generator=generator, device=h.device)
    return loss_with_negatives(name, h, item_emb, targets, negatives, gbce_t=gbce_t, log_q=log_q)


def log_q_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """log of each item's share of training interactions (I + 1,); padding and unseen items get 0."""
    freq = counts.float() / counts.sum()
    return torch.where(counts > 0, freq.clamp_min(1e-12).log(), torch.zeros_like(freq))
