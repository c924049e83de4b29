#!/usr/bin/env bash
# Create benchmarks/.rectools-venv with RecTools 0.19.0 (the reference implementation).
#
# RecTools pins numpy<2 and pandas<3, so it lives in its own venv, apart from the
# project's. torch is pinned in the same pip command so pip never resolves a bare torch
# (which would pull a multi-GB CUDA build). Idempotent: re-running only checks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.rectools-venv"
python="${PYTHON:-python3}"
torch_pin="torch==2.13.0"
rectools_pin="rectools[torch]==0.19.0"
# parquet input; pyarrow>=21 needs numpy 2, which RecTools 0.19.0 excludes
pyarrow_pin="pyarrow<21"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "[setup_rectools] creating venv $venv with $($python --version)"
    "$python" -m venv "$venv"
else
    echo "[setup_rectools] venv exists: $venv"
fi

if "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md
assert md.version("rectools") == "0.19.0"
assert md.version("torch").startswith("2.13.0")
import rectools.models.nn.transformers.sasrec, pytorch_lightning, pyarrow  # noqa: F401
PY
then
    echo "[setup_rectools] rectools 0.19.0 and torch 2.13.0 already installed"
else
    echo "[setup_rectools] installing $torch_pin, $rectools_pin, $pyarrow_pin"
    "$venv/bin/pip" install --upgrade pip
    "$venv/bin/pip" install "$torch_pin"
    "$venv/bin/pip" install "$torch_pin" "$rectools_pin" "$pyarrow_pin"
fi

"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("rectools", "torch", "pytorch-lightning", "numpy", "pandas", "pyarrow"):
    try:
        print(f"[setup_rectools] {name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"[setup_rectools] {name} not installed")
PY
