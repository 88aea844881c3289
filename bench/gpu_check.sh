#!/usr/bin/env bash
# The GPU check of the Triton backend: tests/gpu, the device-agnostic Triton tests on CUDA,
# and the benchmark. Run from the repository root on the GPU machine (about 5 minutes):
#
#     bash bench/gpu_check.sh
#
# Results go to $OUT (default ./gpu-results): tests.txt, tests.xml, bench.json, bench.txt, env.txt.
#
# The GPU machine has torch and triton but not lark (the spec parser), and no network.
# Carry the pure-Python wheels of lark and interegular (lark's strict mode needs it) in
# shared/wheels (or $OPTDSL_WHEELS), downloaded on a machine with a package index:
#
#     pip download --no-deps -d shared/wheels "lark>=1.2,<2" interegular
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
WHEELS="${OPTDSL_WHEELS:-shared/wheels}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

for module in lark interegular; do
  if ! "$PY" -c "import $module" 2>/dev/null; then
    echo "installing $module from $WHEELS"
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$module" || {
      echo "missing $module: carry its wheel in $WHEELS (see the top of this script)"; exit 2; }
  fi
done
"$PY" -c "import pytest, sympy, jinja2" || { echo "pytest, sympy and jinja2 are needed"; exit 2; }

unset TRITON_INTERPRET
export OPTDSL_CACHE_DIR="$OUT/optdsl-cache"

# about 3 minutes: the GPU tests, then the Triton tests that run on whatever device is present
timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/gpu tests/test_triton_equivalence.py \
  tests/test_triton_ops.py tests/test_triton_features.py --junitxml="$OUT/tests.xml" 2>&1 | tee "$OUT/tests.txt"
tests_rc=${PIPESTATUS[0]}

# about 2 minutes; bench.json is rewritten after each section, so a timeout keeps what was measured
timeout 150 "$PY" bench/bench_triton.py --quick --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}

echo "tests exit $tests_rc, bench exit $bench_rc; results in $OUT"
exit $(( tests_rc != 0 || bench_rc != 0 ))
