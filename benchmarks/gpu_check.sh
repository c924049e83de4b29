#!/usr/bin/env bash
# GPU check of esasrec: bash benchmarks/gpu_check.sh OUTDIR [gpu_check.py options]
#
# Runs benchmarks/gpu_check.py from the repository root with a hard outer time limit
# (GPU_CHECK_TIMEOUT, default 500 s; the script itself stops starting stages at 450 s) and
# keeps its whole output in OUTDIR/gpu_check.log. On the device tool:
#   run(command="bash benchmarks/gpu_check.sh $OUT", timeout_s=540)
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [gpu_check.py options]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
{
    echo "# $(date -u +%FT%TZ) $(hostname) $($py --version 2>&1)"
    nvidia-smi 2>&1 | head -20 || echo "no nvidia-smi"
    timeout -k 15 "${GPU_CHECK_TIMEOUT:-500}" "$py" benchmarks/gpu_check.py "$out" "$@"
    rc=$?
    echo "# gpu_check.py exit $rc"
    exit "$rc"
} 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
