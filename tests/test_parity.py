"""Parity with RecTools 0.19 on a batch dumped from a real RecTools run (benchmarks/parity_rectools.py)."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parity_rectools.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("parity_rectools", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ligr_model_and_sampled_softmax_match_rectools():
    parity = _load_script()
    diffs = parity.check_parity()
    assert diffs["sequence_output"] < 1e-5
    assert diffs["logits"] < 1e-5
    assert diffs["sampled_softmax_loss"] < 1e-5
    assert diffs["gradients"] < 1e-5


def test_parity_check_detects_a_changed_weight(tmp_path):
    parity = _load_script()
    dump = torch.load(parity.DEFAULT_DUMP, weights_only=False)
    dump["state_dict"]["transformer_layers.transformer_blocks.1.gating_linear_2.bias"] += 0.01
    torch.save(dump, tmp_path / "changed.pt")
    assert parity.check_parity(tmp_path / "changed.pt")["sequence_output"] > 1e-4
