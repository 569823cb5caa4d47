#!/usr/bin/env bash
# One-call GPU check of liftinv (issue 13): install the carried wheel bundle and liftinv offline into a
# temporary site, then run benchmarks/device_check.py (CUDA tests, batch inversion, TV reconstruction,
# training epochs, nvidia-smi and peak memory), writing device_check.{json,md,log} to $OUT or ./device_out.
#
# Prepare here (with internet):   python3 tasks.py device-bundle      # wheels into .whl/ (ignored by git)
# Run there (repository root):    bash benchmarks/device_check.sh [--budget SECONDS] [--cpu-smoke] [...]
#
# --budget is the total time in seconds, installation included (default 480); every other argument goes
# to device_check.py (see `python benchmarks/device_check.py --help`). The Python is $PYTHON, else
# ./.venv/bin/python when it exists, else python3. Without .whl/ the Python must already import deepinv
# and odl (as the project's .venv does). Exit status: 1 if a step failed, 2 if the set-up failed.
set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
BUDGET=480
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --budget) BUDGET=${2:?--budget needs a number of seconds}; shift 2 ;;
        --budget=*) BUDGET=${1#--budget=}; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
case "$BUDGET" in
    '' | *[!0-9]*) echo "device_check.sh: error: --budget must be a whole number of seconds, got '$BUDGET'" >&2; exit 2 ;;
esac

OUTDIR=${OUT:-$ROOT/device_out}
mkdir -p "$OUTDIR" || exit 2
SETUP_LOG=$OUTDIR/device_check_setup.log
: >"$SETUP_LOG"
say() { echo "device_check.sh: $*" | tee -a "$SETUP_LOG"; }

if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY=$ROOT/.venv/bin/python
else
    PY=python3
fi
say "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])' 2>&1)"

SITE=$(mktemp -d "${TMPDIR:-/tmp}/liftinv-site.XXXXXX") || exit 2
trap 'rm -rf "$SITE" "$SITE.src"' EXIT
PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")

# 1. the carried wheels (deepinv, ODL and their missing requirements)
shopt -s nullglob
WHEELS=("$ROOT"/.whl/*.whl)
shopt -u nullglob
if [ ${#WHEELS[@]} -gt 0 ]; then
    say "installing ${#WHEELS[@]} wheels from .whl/ into $SITE"
    "${PIP[@]}" "${WHEELS[@]}" >>"$SETUP_LOG" 2>&1 || { say "error: offline install of .whl/ failed (see $SETUP_LOG)"; exit 2; }
elif ! "$PY" -c 'import deepinv, odl' >>"$SETUP_LOG" 2>&1; then
    say "error: deepinv/odl missing and no .whl/ bundle: run 'python3 tasks.py device-bundle' where pip works and carry .whl"
    exit 2
else
    say "no .whl/ bundle; deepinv and odl already import"
fi

# 2. liftinv from this tree, without dependencies (operators/ and datasets/ become liftinv.operators and
#    liftinv.datasets through setuptools' package-dir); a symlink overlay when the build is not possible
check_import() {
    (cd "$SITE" && PYTHONPATH="$SITE" "$PY" -c 'import liftinv, liftinv.operators, liftinv.datasets, liftinv.unrolled, liftinv.models; print(liftinv.__file__)') >>"$SETUP_LOG" 2>&1
}
say "installing liftinv from $ROOT (no dependencies)"
SRC=$SITE.src  # built from a copy, so that the build leaves nothing in the working tree
mkdir -p "$SRC" && cp -R "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/liftinv" "$ROOT/operators" "$ROOT/datasets" "$SRC/"
if ! "${PIP[@]}" --no-build-isolation "$SRC" >>"$SETUP_LOG" 2>&1 || ! check_import; then
    say "warning: pip could not install a working liftinv (see $SETUP_LOG); using a symlink overlay of the tree"
    rm -rf "$SITE/liftinv" "$SITE"/liftinv-*.dist-info
    mkdir -p "$SITE/liftinv"
    for entry in "$ROOT"/liftinv/*; do
        ln -s "$entry" "$SITE/liftinv/"
    done
    ln -sfn "$ROOT/operators" "$SITE/liftinv/operators"
    ln -sfn "$ROOT/datasets" "$SITE/liftinv/datasets"
    check_import || { say "error: liftinv does not import (see $SETUP_LOG)"; exit 2; }
fi

# 3. the check, with what is left of the budget
LEFT=$((BUDGET - SECONDS))
if [ "$LEFT" -lt 10 ]; then
    say "error: set-up took ${SECONDS} s of the ${BUDGET} s budget"
    exit 2
fi
say "set-up took ${SECONDS} s; running benchmarks/device_check.py with a budget of ${LEFT} s"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export DEEPINV_CACHE_DIR=${DEEPINV_CACHE_DIR:-$SITE/deepinv-cache}
"$PY" "$ROOT/benchmarks/device_check.py" --out "$OUTDIR" --budget "$LEFT" ${ARGS[@]+"${ARGS[@]}"}
