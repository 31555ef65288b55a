#!/usr/bin/env bash
# Prepare the GPU kit on this machine (with network): everything tools/gpu/check.sh
# needs on a GPU machine that has Python 3.12 and torch but no OpenMMLab packages
# and no network. Downloads into .gpu/ (ignored by git; it travels with the
# working tree, at most 64 MiB):
#   .gpu/wheels/  cp312 manylinux wheels of tools/gpu/requirements.txt
#   .gpu/src/     mmcv's source distribution (check.sh builds its ops there for
#                 the local GPU architecture only)
# Idempotent: what is already there is not fetched again.
#
# Usage: bash tools/gpu/prepare.sh        (make gpu-prepare)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="$ROOT/.gpu"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MMCV_VERSION="2.1.0"
LIMIT_MIB=48  # of the 64 MiB a device call carries, the rest is the working tree

fail() { printf 'gpu-prepare: error: %s\n' "$*" >&2; exit 2; }
[[ -x "$PY" ]] || fail "no Python at $PY (run 'make setup' first, or set PYTHON)"

mkdir -p "$KIT/wheels" "$KIT/src"
echo "[gpu-prepare] wheels for CPython 3.12, manylinux x86_64 -> $KIT/wheels"
grep -v '^\s*#' "$ROOT/tools/gpu/requirements.txt" | grep -v '^\s*$' > "$KIT/requirements.txt"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$KIT/wheels" -r "$KIT/requirements.txt" \
  || fail "pip download of tools/gpu/requirements.txt failed (see above)"

SDIST="$KIT/src/mmcv-$MMCV_VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  echo "[gpu-prepare] mmcv $MMCV_VERSION source distribution -> $KIT/src"
  # --no-build-isolation: the metadata step of mmcv's setup.py imports torch
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$KIT/src" || fail "pip download of mmcv's sdist failed"
fi

# one version of each package: two would stop the install there
dupes="$(ls "$KIT/wheels" | sed -E 's/-[0-9][^-]*-.*//' | tr 'A-Z_' 'a-z-' | sort | uniq -d)"
[[ -z "$dupes" ]] || fail "several versions of: $dupes in $KIT/wheels; remove the old ones"
size_kib="$(du -sk "$KIT/wheels" "$KIT/src" | awk '{s += $1} END {print s}')"
(( size_kib <= LIMIT_MIB * 1024 )) || fail "the kit is $((size_kib / 1024)) MiB, over $LIMIT_MIB MiB"
echo "[gpu-prepare] ready: $(ls "$KIT/wheels" | wc -l) wheels and mmcv's sdist," \
  "$((size_kib / 1024)) MiB; on the GPU machine: bash tools/gpu/check.sh"
