#!/usr/bin/env bash
# The GPU check in one command, for a CUDA machine without internet (this workplace's device machine:
# python3 3.12 with torch+CUDA, jax, h5py, numpy, pytest, pytest-timeout, pytest-xdist; no optree,
# spikingjelly or loguru):
#
#     bash benchmarks/gpu_check.sh [gpu_check.py arguments]    # results in $OUT, else gpu_check_out/
#
# It installs the wheels in .whl/ into /tmp/site, puts that and the repo root on PYTHONPATH (the
# package is not installed there) and runs benchmarks/gpu_check.py: env, the device tests on cuda,
# the benchmark on cuda, the rest of the suite; 450 s at most (--budget), JSON after every phase.
#
# Prepare .whl/ once, here, in the repo root (git-ignored; about 1.6 MB; one version of each package,
# two stop the install):
#
#     V=$(python -c "import optree; print(optree.__version__)")      # the optree the venv has
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "optree==$V"
#     python3 -m pip download --no-deps -d .whl spikingjelly==2.0.0 loguru==0.7.3
#
# The device call (the `run` tool), with .whl carried:
#
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# $OUT comes back with gpu_check.json, gpu_check.md (the README table), gpu_check.log and one log per
# phase. Without a GPU, check the plumbing: python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu_check.sh: no wheels in .whl/ (optree, spikingjelly, loguru); see the top of this file" >&2
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
out=${OUT:-gpu_check_out}
mkdir -p "$out"
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
