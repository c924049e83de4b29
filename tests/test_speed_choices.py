"""The speed ladder of benchmarks/speed_choices.py times variants of one computation, not different models.

Its rungs rebuild the training step with the package's pieces (unpacked positions, a masked loss
over all positions, full-width batches, an explicit float attention mask); these tests check on
a small random batch that every rung computes the package's loss, and that the check the script
runs before timing would catch a rung that did not.
"""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from esasrec.model import SeqRecModel
from esasrec.presets import preset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_choices.py"


@pytest.fixture(scope="module")
def sc():
    spec = importlib.util.spec_from_file_location("speed_choices", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(sc):
    mc, tc = preset("esasrec", "beauty", n_negatives=8, max_len=12)
    mc.n_items = 40
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, mc.max_len + 2, (48,), generator=g)  # 2 .. L + 1 items per row
    lengths[0] = 3  # keep some batches narrower than L, so "cut" and "no cut" differ
    seqs = torch.randint(1, mc.n_items + 1, (48, mc.max_len + 1), generator=g)
    seqs[torch.arange(mc.max_len + 1) >= lengths[:, None]] = 0  # right-padded, as fit() keeps them
    batches, per_epoch = sc.sample_batches(seqs, lengths, 16, 3, mc.max_len)
    torch.manual_seed(0)
    return mc, SeqRecModel(mc).state_dict(), batches, per_epoch


def test_every_rung_computes_the_package_loss(sc, setup):
    mc, init, batches, per_epoch = setup
    assert per_epoch == 3 and len(batches) == 3
    for i in range(len(batches)):  # each batch first in turn: check_same_loss looks at batches[0]
        spread = sc.check_same_loss(sc.ladder(), mc, init, torch.device("cpu"), batches[i:] + batches[:i])
        assert spread < 1e-5


def test_the_check_catches_a_rung_that_computes_something_else(sc, setup, monkeypatch):
    mc, init, batches, _ = setup

    def no_causal_mask(q, k, v, is_causal=False, dropout_p=0.0):  # every position sees its future
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)

    monkeypatch.setattr(sc._FloatMaskSDPA, "scaled_dot_product_attention", staticmethod(no_causal_mask))
    with pytest.raises(SystemExit, match="disagree"):
        sc.check_same_loss(sc.ladder(), mc, init, torch.device("cpu"), batches)


def test_one_eager_rung_trains(sc, setup):
    mc, init, batches, _ = setup
    rung = replace(sc.ladder()[-1], compile=False)  # the plain loop, every choice reverted
    times = sc.time_variant(rung, mc, init, torch.device("cpu"), batches, repeats=1)
    assert len(times) == 1 and times[0] > 0
