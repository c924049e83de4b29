"""CUDA checks: CPU/CUDA agreement, NaN safety under bf16 autocast, checkpoints across devices,
the fused attention kernel, and host syncs in the training loop.

Every test is marked ``gpu`` and skipped without CUDA. On a lent GPU ``benchmarks/gpu_check.py``
runs them (``pytest -m gpu tests/test_gpu.py``).

Tolerances. bf16 keeps 8 significant bits, so rounding one value costs a relative error of at
most u = 2**-8 ~ 3.9e-3. Autocast rounds every matrix-product operand (and, on CUDA, the product)
to bf16 and accumulates in fp32, so each logit or hidden unit carries an error of a few u, of
random sign. Measured with bf16 autocast on the CPU (the same rounding), fp32 vs bf16 hidden states
differ by 5e-3 .. 7e-3 relative (1-2 blocks), a 257-way sampled-softmax loss of 4.5 .. 7.6 by
at most 6e-4 absolute, and its gradients by 3.5e-3 relative. The bounds below are 3-8x those
numbers: loose enough for flash attention's bf16 probabilities, tight enough that a real error
(a lost causal mask, a wrong position, a wrong candidate column: relative errors of order 1) fails.
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
import warnings
from collections import Counter

import pandas as pd
import pytest
import torch

from esasrec.losses import sampled_softmax_loss
from esasrec.metrics import ranking_metrics, topk_from_scores
from esasrec.model import ModelConfig, SeqRecModel
from esasrec.train import SequentialRecommender, TrainConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

BF16_U = 2.0**-8  # unit roundoff of bfloat16
HIDDEN_RTOL_BF16 = 5 * BF16_U  # ~2e-2: relative Frobenius error of hidden states, fp32 CPU vs bf16 CUDA
GRAD_RTOL_BF16 = 4 * BF16_U  # ~1.6e-2: relative error of loss gradients
LOSS_ATOL_BF16 = BF16_U  # ~3.9e-3: absolute error of a mean cross-entropy over 300 positions
FP32_RTOL = 1e-5  # fp32 products on both devices (TF32 switched off below): summation order only
# Hidden states in fp32 also pass through the GPU's memory-efficient attention kernel, whose fp32
# products may use split TF32 arithmetic; 1e-3 still sits 5x under the bf16 errors above.
FP32_HIDDEN_RTOL = 1e-3

# (d_model, n_heads, n_blocks): the paper's Beauty shape and a 2-block slice of its ML-20M shape.
SHAPES = [(64, 1, 1), (256, 8, 2)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 comparisons need true fp32 products on the GPU; restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def make_model(d_model=64, n_heads=1, n_blocks=1, block="ligr", dropout=0.0, n_items=500, max_len=24, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=n_items, d_model=d_model, n_heads=n_heads, n_blocks=n_blocks, dropout=dropout,
                      max_len=max_len, block=block)
    return SeqRecModel(cfg).eval()


def left_padded_batch(n_items=500, max_len=24, seed=0):
    """(16, max_len) left-padded ids: one fully padded row, one of length 1, one full, the rest random."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, max_len, (16,), generator=g)
    lengths[:3] = torch.tensor([0, 1, max_len])
    ids = torch.randint(1, n_items + 1, (16, max_len), generator=g)
    return ids * (torch.arange(max_len) >= max_len - lengths[:, None])  # (B, L)


# ------------------------------------------------------------------- same numbers on both devices
@pytest.mark.parametrize("block", ["ligr", "sasrec"])
@pytest.mark.parametrize("d_model,n_heads,n_blocks", SHAPES)
def test_encode_matches_cpu(d_model, n_heads, n_blocks, block):
    """Hidden states of left-padded rows (a fully padded one included): fp32 CPU vs fp32 and bf16 CUDA."""
    model = make_model(d_model, n_heads, n_blocks, block)
    ids = left_padded_batch()
    pad = ids == 0
    with torch.no_grad():
        ref = model.encode(ids)  # (B, L, D) fp32 CPU
        model.cuda()
        fp32 = model.encode(ids.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model.encode(ids.cuda())
    assert torch.isfinite(bf16).all()
    assert (fp32.cpu()[pad] == 0).all() and (bf16.cpu()[pad] == 0).all()
    assert rel_err(fp32, ref) < FP32_HIDDEN_RTOL
    assert rel_err(bf16, ref) < HIDDEN_RTOL_BF16


@pytest.mark.parametrize("n_items,n_negatives", [(500, 256), (5000, 16)])
def test_sampled_softmax_matches_cpu(n_items, n_negatives):
    """The loss and its gradients on fixed h, table, targets and negatives: fp32 CPU vs CUDA.

    (500, 256) takes the score-the-catalogue-then-gather path of ``candidate_logits``,
    (5000, 16) the gather-the-candidates path. Logits have a spread of about 2, as in training.
    """
    g = torch.Generator().manual_seed(0)
    n, d = 300, 64
    h = torch.randn(n, d, generator=g) * 0.5  # (N, D)
    table = torch.randn(n_items + 1, d, generator=g) * 0.5  # (I + 1, D)
    targets = torch.randint(1, n_items + 1, (n,), generator=g)  # (N,)
    negatives = torch.randint(1, n_items + 1, (n, n_negatives), generator=g)  # (N, k)

    def loss_and_grads(device, bf16):
        hd, td = h.to(device).requires_grad_(), table.to(device).requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = sampled_softmax_loss(hd, td, targets.to(device), negatives.to(device))
        return (loss, *torch.autograd.grad(loss, [hd, td]))

    ref, ref_gh, ref_gt = loss_and_grads("cpu", False)
    loss, gh, gt = loss_and_grads("cuda", False)
    assert abs(loss.item() - ref.item()) < FP32_RTOL * ref.item()
    assert rel_err(gh, ref_gh) < FP32_RTOL and rel_err(gt, ref_gt) < FP32_RTOL
    loss, gh, gt = loss_and_grads("cuda", True)
    assert loss.dtype == torch.float32  # logits are upcast before the cross-entropy
    assert abs(loss.item() - ref.item()) < LOSS_ATOL_BF16
    assert rel_err(gh, ref_gh) < GRAD_RTOL_BF16 and rel_err(gt, ref_gt) < GRAD_RTOL_BF16


def test_topk_and_metrics_match_cpu():
    """Exact ties broken the same way on both devices: identical top-k, hence identical metrics."""
    g = torch.Generator().manual_seed(0)
    n_users, n_items, k = 300, 200, 10
    scores = torch.randint(0, 6, (n_users, n_items + 1), generator=g).float()  # (U, I + 1): many ties
    seen_counts = torch.randint(0, 30, (n_users,), generator=g)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), seen_counts.cumsum(0)])
    indices = torch.randint(1, n_items + 1, (int(indptr[-1]),), generator=g)

    def topk(device):
        return topk_from_scores(lambda rows: scores[rows.cpu()].to(rows.device), n_users, k,
                                seen_indptr=indptr, seen_indices=indices, chunk_size=64, device=device)

    on_cpu, on_cuda = topk("cpu"), topk("cuda")
    assert torch.equal(on_cpu, on_cuda)
    test_rows = torch.randint(0, n_users, (900,), generator=g)
    test_items = torch.randint(1, n_items + 1, (900,), generator=g)
    args = dict(n_items=n_items, k=k, item_popularity=torch.rand(n_items + 1, generator=g))
    assert ranking_metrics(on_cpu, test_rows, test_items, **args) == ranking_metrics(on_cuda, test_rows, test_items, **args)


# ---------------------------------------------------------------------------------- NaN safety
@pytest.mark.parametrize("backend", ["default", "flash"])
@pytest.mark.parametrize("d_model,n_heads,n_blocks", SHAPES)
def test_no_nan_under_autocast_with_padding(d_model, n_heads, n_blocks, backend):
    """Training mode, dropout on, bf16 autocast: finite outputs and gradients with padded rows.

    The batch has a fully padded row, a one-item row and a full row; the loss touches every
    output, padding included, so gradients flow through the padded rows' attention too.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = make_model(d_model, n_heads, n_blocks, dropout=0.2).cuda().train()
    ids = left_padded_batch().cuda()
    kernels = sdpa_kernel([SDPBackend.FLASH_ATTENTION]) if backend == "flash" else contextlib.nullcontext()
    with kernels, torch.autocast("cuda", dtype=torch.bfloat16):
        h = model.encode(ids)  # (B, L, D)
        users = model.user_vectors(ids)  # (B, D)
        real = ids != 0
        targets = torch.randint(1, 501, (int(real.sum()),), device="cuda")
        negatives = torch.randint(1, 501, (len(targets), 256), device="cuda")
        loss = sampled_softmax_loss(h[real], model.item_emb.weight, targets, negatives)
        total = loss + h.float().pow(2).mean() + users.float().pow(2).mean()
    assert torch.isfinite(h).all() and torch.isfinite(users).all() and torch.isfinite(loss)
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


# ---------------------------------------------------------------------------- attention kernels
@pytest.mark.parametrize("d_model,n_heads,n_blocks", SHAPES)
def test_flash_attention_runs_the_model(d_model, n_heads, n_blocks):
    """With only the flash kernel allowed, the model trains and matches the math kernel.

    Flash attention accepts no mask tensor; that the model runs under it proves attention gets
    ``is_causal=True`` and no dense mask. The last check shows the restriction really bites.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = make_model(d_model, n_heads, n_blocks).cuda()
    ids = left_padded_batch().cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            flash = model.encode(ids)
        with sdpa_kernel([SDPBackend.MATH]):
            reference = model.encode(ids)
    assert rel_err(flash, reference) < HIDDEN_RTOL_BF16
    model.train()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", dtype=torch.bfloat16):
        model.encode(ids).float().pow(2).mean().backward()
    q = torch.randn(2, n_heads, 8, d_model // n_heads, device="cuda", dtype=torch.bfloat16)
    mask = torch.ones(8, 8, dtype=torch.bool, device="cuda").tril()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pytest.raises(RuntimeError):
        torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)


def _sdpa_ops(model, ids, bf16: bool) -> set[str]:
    """Names of the scaled-dot-product-attention ops one forward runs (CPU-side profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        model.encode(ids)  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.encode(ids)
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


FUSED_SDPA = {"aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
              "aten::_scaled_dot_product_cudnn_attention"}


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("d_model,n_heads,n_blocks", SHAPES)
def test_default_attention_kernel_is_fused(d_model, n_heads, n_blocks, bf16):
    """Left to choose, PyTorch runs a fused kernel (flash / memory-efficient / cuDNN), never math."""
    model = make_model(d_model, n_heads, n_blocks).cuda()
    ops = _sdpa_ops(model, left_padded_batch().cuda(), bf16)
    assert ops & FUSED_SDPA, ops
    assert "aten::_scaled_dot_product_attention_math" not in ops, ops


# ------------------------------------------------------------------------ checkpoints, devices
N_CYCLE, N_USERS = 30, 60


def cycle_frame():
    """60 users, each a run of 8..17 consecutive items of a 30-item cycle, one hour apart."""
    rows = []
    for u in range(N_USERS):
        start, n = (7 * u) % N_CYCLE, 8 + u % 10
        rows += [(u, (start + j) % N_CYCLE, 1_600_000_000 + 86_400 * u + 3_600 * j) for j in range(n)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def tiny_config(**train):
    mc = ModelConfig(d_model=32, n_blocks=2, n_heads=2, dropout=0.1, max_len=20, n_negatives=16)
    tc = TrainConfig(**{"epochs": 1, "lr": 1e-2, "batch_size": 16, "device": "cuda", "progress": False, **train})
    return mc, tc


def topk_table(rec: SequentialRecommender, k: int = 10) -> torch.Tensor:
    """recommend() for every known user as a (U, k) table of internal item ids, 0 = none."""
    recs = rec.recommend(k=k)
    rows = rec.histories.users.encode(recs["user_id"].to_numpy())
    table = torch.zeros(len(rec.histories.users), k, dtype=torch.long)
    table[rows, recs["rank"].to_numpy() - 1] = torch.from_numpy(rec.items.encode(recs["item_id"].to_numpy()))
    return table


def masked_scores(rec: SequentialRecommender) -> torch.Tensor:
    """fp32 scores (U, I + 1) of every known user, padding and seen items at -inf, on the CPU."""
    hist = rec.histories
    with torch.no_grad():
        scores = rec.model.score_all(rec.model.user_vectors(hist.seqs.to(rec.device))).float().cpu()
    counts = hist.seen_indptr[1:] - hist.seen_indptr[:-1]
    scores[torch.repeat_interleave(torch.arange(len(counts)), counts), hist.seen_indices] = -torch.inf
    scores[:, 0] = -torch.inf
    return scores


def assert_same_ranking(top: torch.Tensor, ref_top: torch.Tensor, scores: torch.Tensor, atol: float):
    """Two top-k tables agree up to ties: by ``scores``, the i-th items of both score within ``atol``.

    Rows whose ``scores`` have no two of the top k + 1 within ``atol`` of each other (no tie that
    rounding could flip) must agree exactly.
    """
    got, want = scores.gather(1, top), scores.gather(1, ref_top)  # (U, k)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    best = scores.topk(top.shape[1] + 1, dim=1).values  # (U, k + 1)
    clear = ((best[:, :-1] - best[:, 1:]) > atol).all(1)  # (U,)
    assert clear.float().mean() > 0.5, "too many near-ties for a meaningful check"
    assert torch.equal(top[clear], ref_top[clear])


def test_checkpoint_round_trip_across_devices(tmp_path):
    """Fit on CUDA (bf16), save, load on the CPU and on CUDA: same weights, same recommendations."""
    mc, tc = tiny_config()
    rec = SequentialRecommender(mc, tc).fit(cycle_frame())
    assert rec.device.type == "cuda" and math.isfinite(rec.history[0]["loss"])
    bf16_top = topk_table(rec)  # serving as trained: bf16 autocast
    rec.train_config.precision = "fp32"  # the exact comparison below needs fp32 scores on CUDA too
    cuda_top = topk_table(rec)
    path = rec.save(tmp_path / "model.pt")

    on_cpu = SequentialRecommender.load(path, device="cpu")
    assert on_cpu.device.type == "cpu"
    for name, value in rec.model.state_dict().items():
        assert torch.equal(value.cpu(), on_cpu.model.state_dict()[name]), name
    cpu_top = topk_table(on_cpu)
    scores = masked_scores(on_cpu)  # (U, I + 1) fp32 reference
    span = float(scores[torch.isfinite(scores)].abs().max())
    assert_same_ranking(cuda_top, cpu_top, scores, atol=FP32_HIDDEN_RTOL * span)  # fp32 on both devices
    # bf16 serving: each score is off by a few u of the scores' span, so equal-looking items may swap.
    torch.testing.assert_close(scores.gather(1, bf16_top), scores.gather(1, cpu_top), atol=8 * BF16_U * span, rtol=0)

    on_cuda = SequentialRecommender.load(path, device="cuda")
    assert torch.equal(topk_table(on_cuda), cuda_top)


# --------------------------------------------------------------------------------- host syncs
SYNC_MESSAGE = "synchronizing CUDA operation"


@contextlib.contextmanager
def record_syncs():
    """Collect the Python stack of every host-device synchronisation (``set_sync_debug_mode("warn")``).

    Yields a list that fills with ``traceback.StackSummary`` objects, one per sync. Syncs inside
    ``backward()`` are reported at the ``backward()`` call (autograd replays its threads' warnings).
    """
    stacks = []

    def show(message, category, filename, lineno, file=None, line=None):
        if SYNC_MESSAGE in str(message):
            stack = traceback.extract_stack()[:-1]  # without this function
            while stack and os.path.basename(stack[-1].filename) in ("warnings.py", "_py_warnings.py"):
                stack.pop()  # nor the warnings machinery that called it
            stacks.append(stack)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield stacks
        finally:
            torch.cuda.set_sync_debug_mode("default")


TORCH_DIR = os.path.dirname(torch.__file__)


def sync_site(stack: traceback.StackSummary) -> str:
    """``file:function: source line`` of the innermost frame outside torch that led to a sync."""
    ours = [f for f in stack if not f.filename.startswith(TORCH_DIR)]
    frame = (ours or list(stack))[-1]
    return f"{os.path.basename(frame.filename)}:{frame.name}: {(frame.line or '').strip()}"


def in_training_epoch(stack: traceback.StackSummary) -> bool:
    """Whether a sync happened inside ``SequentialRecommender._train_epoch`` (or a stand-in of that name)."""
    return any(f.name == "_train_epoch" for f in stack)


# A site that syncs more often than once per epoch syncs in (nearly) every step. Known per-step
# syncs of the current loop, {"file:function": "code fragment"}: none.
KNOWN_PER_STEP: dict[str, str] = {}


@pytest.fixture(scope="module")
def epoch_syncs() -> tuple[Counter, int, int]:
    """Sync sites inside ``_train_epoch`` (with counts) in a 2-epoch CUDA fit of 4 steps per epoch."""
    mc, tc = tiny_config(epochs=2)
    with record_syncs() as stacks:
        rec = SequentialRecommender(mc, tc).fit(cycle_frame())
    n_epochs = len(rec.history)
    n_steps = n_epochs * -(-N_USERS // tc.batch_size)
    return Counter(sync_site(s) for s in stacks if in_training_epoch(s)), n_steps, n_epochs


def per_step_sites(counts: Counter, n_epochs: int) -> dict[str, int]:
    return {site: n for site, n in counts.items() if n > n_epochs}


def is_known(site: str) -> bool:
    where, _, code = site.partition(": ")
    return where in KNOWN_PER_STEP and KNOWN_PER_STEP[where] in code


def test_training_syncs_are_only_the_known_ones(epoch_syncs):
    """Inside a training step the host waits for the GPU only where KNOWN_PER_STEP says, once.

    A new per-step sync (an ``.item()``, a host-side negative draw, an embedding backward that
    reads a count back) stops the CPU from queueing work ahead of the GPU; this names it.
    Once-per-epoch syncs (the batch widths, the epoch's mean loss) are allowed.
    """
    counts, n_steps, n_epochs = epoch_syncs
    steps = per_step_sites(counts, n_epochs)
    unexpected = {site: n for site, n in steps.items() if not is_known(site)}
    assert not unexpected, f"unexpected per-step host syncs in the training loop: {unexpected}"
    assert all(n <= n_steps for n in steps.values()), steps


def test_training_step_is_sync_free(epoch_syncs):
    """The goal: no sync inside a step, so the CPU queues steps ahead of the GPU (and CUDA graphs can capture)."""
    counts, _, n_epochs = epoch_syncs
    assert per_step_sites(counts, n_epochs) == {}
