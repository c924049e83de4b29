"""SeqRecModel and its blocks: shapes, causality, padding, naive re-implementations, scoring, init.

The naive blocks below are written from REFERENCE §1.1 / §1.2 with explicit loops, an explicit
causal + key-padding mask and LEFT padding, and run on weights copied from the real blocks, which
see the same rows right-padded (the layout the model feeds them).
"""

import math

import pytest
import torch
from torch import nn

from esasrec.layers import LiGRBlock, SASRecBlock
from esasrec.model import ModelConfig, SeqRecModel, left_to_right, right_to_left

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors run fastest on one thread; on a loaded 2-core machine intra-op threads spin
    against each other. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


N_ITEMS = 50
D = 16
L = 12
BLOCKS = ("sasrec", "ligr")


def make_model(block="ligr", n_heads=2, n_blocks=2, seed=0, dropout=0.1, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=kw.pop("n_items", N_ITEMS), d_model=kw.pop("d_model", D), n_blocks=n_blocks,
                      n_heads=n_heads, dropout=dropout, max_len=kw.pop("max_len", 20), block=block,
                      ffn_mult=kw.pop("ffn_mult", 2), **kw)
    return SeqRecModel(cfg).eval()


def left_padded(lengths, width=L, n_items=N_ITEMS, seed=0):
    """Rows of random ids 1..n_items, each left-padded to ``width``."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, n in enumerate(lengths):
        if n:
            out[r, width - n:] = torch.randint(1, n_items + 1, (n,), generator=g)
    return out


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("n_heads", [1, 2, 4])
def test_output_shapes(block, n_heads):
    model = make_model(block, n_heads=n_heads)
    x = left_padded([L, 5, 1, 0])
    h = model.encode(x)
    assert h.shape == (4, L, D)
    u = model.user_vectors(x)
    assert u.shape == (4, D)
    assert model.score_all(u).shape == (4, N_ITEMS + 1)
    assert model.recommend(x, k=7).shape == (4, 7)


def test_sequence_longer_than_max_len_is_rejected():
    model = make_model(max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model.encode(left_padded([9], width=9))


# --------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("block", BLOCKS)
def test_causality_changing_a_later_item_leaves_earlier_outputs(block):
    model = make_model(block)
    x = left_padded([10, 7, L])
    t = L - 3  # a real position in every row
    y = x.clone()
    y[:, t] = y[:, t] % N_ITEMS + 1  # a different real item
    with torch.no_grad():
        hx, hy = model.encode(x), model.encode(y)
    torch.testing.assert_close(hx[:, :t], hy[:, :t], rtol=0, atol=1e-6)
    # the changed position (and what follows) does move: the check above is not vacuous
    assert (hx[:, t] - hy[:, t]).abs().amax(-1).min() > 1e-4
    assert (hx[:, -1] - hy[:, -1]).abs().amax(-1).min() > 1e-4


# -------------------------------------------------------------------------------- padding handling
@pytest.mark.parametrize("block", BLOCKS)
def test_more_left_padding_gives_the_same_outputs(block):
    model = make_model(block, max_len=20)
    short = left_padded([L, 6, 1])  # width L
    wide = torch.cat([torch.zeros(3, 20 - L, dtype=torch.long), short], 1)  # width 20, same rows
    with torch.no_grad():
        hs, hw = model.encode(short), model.encode(wide)
        us, uw = model.user_vectors(short), model.user_vectors(wide)
    torch.testing.assert_close(hw[:, -L:], hs, rtol=1e-5, atol=1e-5)
    assert (hw[:, : 20 - L] == 0).all()
    torch.testing.assert_close(uw, us, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(us, hs[:, -1])  # the user vector is the last position's state
    # a row alone gives the same as in a batch with other lengths
    with torch.no_grad():
        alone = model.encode(short[1:2])
    torch.testing.assert_close(alone, hs[1:2], rtol=1e-5, atol=1e-5)


def test_positions_count_from_the_most_recent_item():
    # without blocks (and LiGR: no final norm) the output is item + position embedding
    model = make_model("ligr", n_blocks=0)
    x = left_padded([L, 7, 3, 1])
    with torch.no_grad():
        pos_part = model.encode(x) - model.item_emb(x)  # (B, L, D); padding rows come out as -E[0] = 0
    for back in range(1, 4):  # the last, second-to-last, ... item of every row long enough
        rows = [r for r in range(len(x)) if (x[r] != 0).sum() >= back]
        vectors = pos_part[rows, L - back]
        torch.testing.assert_close(vectors, vectors[:1].expand_as(vectors))
    assert not torch.allclose(pos_part[0, -1], pos_part[0, -2])  # positions do differ


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_fully_padded_rows_give_zeros_not_nan(block, train_mode):
    model = make_model(block, dropout=0.5)
    model.train(train_mode)
    x = left_padded([0, 5, 0, L])
    h = model.encode(x)
    assert torch.isfinite(h).all()
    assert (h[x == 0] == 0).all()  # every padding position, including whole rows
    assert (h[x != 0].abs().sum(-1) > 0).all()
    u = model.user_vectors(x)
    assert torch.isfinite(u).all()
    assert (u[[0, 2]] == 0).all()
    # and a gradient through a batch with an empty row is finite too
    if train_mode:
        model.score_all(u).logsumexp(-1).sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_left_right_roll_round_trip():
    x = left_padded([L, 4, 0, 1])
    lengths = (x != 0).sum(1)
    r = left_to_right(x, lengths)
    for row, n in zip(r, lengths):
        assert (row[:n] != 0).all() and (row[n:] == 0).all()
    assert torch.equal(right_to_left(r, lengths), x)
    # a trailing feature dimension rolls with its row
    feats = torch.randn(4, L, 3)
    assert torch.equal(right_to_left(left_to_right(feats, lengths), lengths), feats)


# ------------------------------------------------------------------- naive block re-implementations
def naive_layer_norm(x, ln: nn.LayerNorm):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def naive_mha(q_in, kv_in, real, in_w, in_b, out_w, out_b, n_heads):
    """Loop-based multi-head attention on one LEFT-padded row (L, D) with an explicit mask.

    Query i may see key j iff j <= i and j is a real position; a query with no visible key
    (a padding query) sees only itself.
    """
    Lq, d = q_in.shape
    dh = d // n_heads
    q = q_in @ in_w[:d].T + in_b[:d]
    k = kv_in @ in_w[d:2 * d].T + in_b[d:2 * d]
    v = kv_in @ in_w[2 * d:].T + in_b[2 * d:]
    heads = torch.zeros(Lq, d, dtype=q_in.dtype)
    for hd in range(n_heads):
        sl = slice(hd * dh, (hd + 1) * dh)
        for i in range(Lq):
            allowed = [j for j in range(Lq) if j <= i and real[j]] or [i]
            logits = torch.stack([(q[i, sl] * k[j, sl]).sum() / math.sqrt(dh) for j in allowed])
            weights = torch.exp(logits - logits.max())
            weights = weights / weights.sum()
            heads[i, sl] = sum(w * v[j, sl] for w, j in zip(weights, allowed))
    return heads @ out_w.T + out_b


def naive_sasrec_block(h, real, blk: SASRecBlock, n_heads):
    """REFERENCE §1.1: q = LN(h); h = q + MHA(q, h, h); f = LN(h); h = f + FFN(f); padding zeroed."""
    lin1, lin2 = [m for m in blk.ffn if isinstance(m, nn.Linear)]
    out = torch.zeros_like(h)
    for b in range(h.shape[0]):
        q = naive_layer_norm(h[b], blk.attn_norm)
        x = q + naive_mha(q, h[b], real[b], blk.attn.in_proj.weight, blk.attn.in_proj.bias,
                          blk.attn.out_proj.weight, blk.attn.out_proj.bias, n_heads)
        f = naive_layer_norm(x, blk.ffn_norm)
        x = f + (torch.relu(f @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)
        out[b] = x * real[b, :, None]
    return out


def naive_ligr_block(h, real, blk: LiGRBlock, n_heads):
    """REFERENCE §1.2 (eval mode, dropout = identity)."""
    out = torch.zeros_like(h)
    for b in range(h.shape[0]):
        x = h[b]
        a = naive_mha(naive_layer_norm(x, blk.attn_norm), naive_layer_norm(x, blk.attn_norm), real[b],
                      blk.attn.in_proj.weight, blk.attn.in_proj.bias,
                      blk.attn.out_proj.weight, blk.attn.out_proj.bias, n_heads)
        x = x + torch.sigmoid(x @ blk.attn_gate.weight.T + blk.attn_gate.bias) * a
        n = naive_layer_norm(x, blk.ffn_norm)
        f = (nn.functional.silu(n @ blk.w1.weight.T) * (n @ blk.w3.weight.T)) @ blk.w2.weight.T
        x = x + torch.sigmoid(x @ blk.ffn_gate.weight.T + blk.ffn_gate.bias) * f
        out[b] = x * real[b, :, None]
    return out


def randomise(module, seed):
    """Non-trivial values everywhere (LayerNorm affine and biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("n_heads", [1, 2])
@pytest.mark.parametrize("block_cls, naive, ffn_mult", [(SASRecBlock, naive_sasrec_block, 1),
                                                        (LiGRBlock, naive_ligr_block, 3)])
def test_block_matches_naive_reimplementation(block_cls, naive, ffn_mult, n_heads):
    torch.manual_seed(1)
    blk = block_cls(D, n_heads, dropout=0.3, ffn_mult=ffn_mult).eval()
    randomise(blk, seed=n_heads)
    lengths = torch.tensor([L, 5, 1, 0, 9])
    real = torch.arange(L)[None, :] >= (L - lengths)[:, None]  # (B, L), left padding
    h_left = torch.randn(len(lengths), L, D)
    h_left[~real] = 0.0  # the model zeroes padding before the blocks

    expected = naive(h_left, real, blk, n_heads)
    h_right = left_to_right(h_left, lengths)
    pad_right = ~left_to_right(real, lengths)
    with torch.no_grad():
        got = right_to_left(blk(h_right, pad_right), lengths)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got[~real] == 0).all()


# ------------------------------------------------------------------------------------- LiGR gates
def test_ligr_gates_scale_the_branches_and_get_gradients():
    torch.manual_seed(0)
    blk = LiGRBlock(D, 2, dropout=0.0, ffn_mult=2).eval()
    lengths = torch.tensor([L, 4])
    pad = torch.arange(L)[None, :] >= lengths[:, None]  # right padding
    h = torch.randn(2, L, D).masked_fill(pad[..., None], 0.0)
    gate = torch.sigmoid(blk.attn_gate(h))
    assert ((gate > 0) & (gate < 1)).all()

    # gates shut (bias -> -inf): the block is the identity on real positions
    with torch.no_grad():
        for g in (blk.attn_gate, blk.ffn_gate):
            g.weight.zero_()
            g.bias.fill_(-1e4)
        torch.testing.assert_close(blk(h, pad), h)
        # gates fully open: h + a + f, which differs from h
        for g in (blk.attn_gate, blk.ffn_gate):
            g.bias.fill_(1e4)
        assert (blk(h, pad) - h)[~pad].abs().max() > 1e-3

    torch.manual_seed(0)
    blk = LiGRBlock(D, 2, dropout=0.1, ffn_mult=2).train()
    blk(h, pad).pow(2).sum().backward()
    for g in (blk.attn_gate, blk.ffn_gate):
        assert g.weight.grad is not None and g.weight.grad.abs().sum() > 0
        assert g.bias.grad.abs().sum() > 0


def test_gradients_reach_gates_through_the_model():
    model = make_model("ligr").train()
    x = left_padded([L, 3])
    model.score_all(model.user_vectors(x)).logsumexp(-1).sum().backward()
    gates = [p for n, p in model.named_parameters() if "gate" in n and n.endswith("weight")]
    assert len(gates) == 2 * model.config.n_blocks
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gates)


# ---------------------------------------------------------------------------------------- scoring
def test_tied_scoring():
    model = make_model("ligr")
    u = model.user_vectors(left_padded([L, 3]))
    torch.testing.assert_close(model.score_all(u), u @ model.item_emb.weight.T)
    cands = torch.tensor([[1, 7, 50], [2, 2, 9]])
    torch.testing.assert_close(model.score_candidates(u, cands), model.score_all(u).gather(1, cands))


@pytest.mark.parametrize("block", BLOCKS)
def test_recommend_excludes_padding_and_seen_items(block):
    model = make_model(block)
    x = left_padded([L, 3, 1], seed=3)
    k = 10
    with torch.no_grad():
        # give the padding column the top score of row 0: it must still never be recommended
        u = model.user_vectors(x)
        model.item_emb.weight[0] = 1e3 * u[0]
        torch.testing.assert_close(model.user_vectors(x), u)  # the padding embedding never enters h
        assert model.score_all(u)[0].argmax() == 0
    top = model.recommend(x, k=k)
    assert top.shape == (3, k)
    for row, hist in zip(top.tolist(), x.tolist()):
        assert len(set(row)) == k
        assert 0 not in row
        assert not set(row) & set(hist)
        assert all(1 <= i <= N_ITEMS for i in row)
    # best first, and the same as ranking score_all by hand
    scores = model.score_all(model.user_vectors(x))
    for r in range(3):
        s = scores[r].clone()
        s[0] = -torch.inf
        s[x[r]] = -torch.inf
        assert top[r].tolist() == s.topk(k).indices.tolist()
    # without exclusion seen items may come back, padding still not
    top_all = model.recommend(x, k=N_ITEMS, exclude_seen=False)
    assert sorted(top_all[0].tolist()) == list(range(1, N_ITEMS + 1))


def test_recommend_never_returns_seen_items_when_k_exceeds_the_unseen():
    model = make_model("ligr", n_items=8)
    x = torch.tensor([[0, 0, 1, 2, 3, 4, 5]])
    top = model.recommend(x, k=8)[0].tolist()
    real = [i for i in top if i != 0]  # 0 as filler would be acceptable
    assert not set(real) & {1, 2, 3, 4, 5}
    assert sorted(real) == [6, 7, 8]


# ------------------------------------------------------------------------------------------ init
def test_xavier_normal_init_and_zero_padding_row():
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=400, d_model=64, n_blocks=2, n_heads=2, max_len=50, block="ligr",
                                    ffn_mult=2))
    matrices = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2]
    assert len(matrices) == 2 + 7 * 2  # 2 embeddings + 7 projections per LiGR block
    for name, p in matrices:
        fan_out, fan_in = p.shape[0], p[0].numel()
        expected = math.sqrt(2.0 / (fan_in + fan_out))
        got = p.detach().std().item()
        assert got == pytest.approx(expected, rel=0.1), name
        assert abs(p.detach().mean().item()) < 0.1 * expected, name
    assert (model.item_emb.weight[0] == 0).all()


@pytest.mark.parametrize("block, n_blocks", [("sasrec", 1), ("sasrec", 3), ("ligr", 1), ("ligr", 3)])
def test_final_layer_norm_only_for_sasrec_blocks(block, n_blocks):
    model = make_model(block, n_blocks=n_blocks, dropout=0.0)
    n_norms = sum(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert n_norms == 2 * n_blocks + (block == "sasrec")
    with torch.no_grad():
        h = model.encode(left_padded([L, 6]))
    real = h[h.abs().sum(-1) > 0]
    var = real.var(-1, unbiased=False)
    normalised = torch.allclose(real.mean(-1), torch.zeros(len(real)), atol=1e-4) and \
        torch.allclose(var, torch.ones(len(real)), atol=1e-3)
    assert normalised == (block == "sasrec")  # fresh LN: gamma 1, beta 0


# ----------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs", [dict(block="transformer"), dict(loss="cross_entropy"), dict(block="LiGR")])
def test_config_rejects_unknown_names(kwargs):
    with pytest.raises(ValueError):
        ModelConfig(n_items=10, **kwargs)


@pytest.mark.parametrize("block", BLOCKS)
def test_d_model_must_be_divisible_by_n_heads(block):
    with pytest.raises(ValueError, match="divisible"):
        SeqRecModel(ModelConfig(n_items=10, d_model=16, n_heads=3, block=block))


def test_catalogue_size_must_be_set():
    with pytest.raises(ValueError, match="n_items"):
        SeqRecModel(ModelConfig())


def test_config_dict_round_trip():
    cfg = ModelConfig(n_items=12, d_model=8, block="sasrec", loss="bce", n_negatives=1, logq=True)
    assert ModelConfig.from_dict({**cfg.as_dict(), "not_a_field": 1}) == cfg
