#!/usr/bin/env bash
# Create divdet's environment (.venv in the checkout) and install everything.
#
# Idempotent: a second run checks each step and skips what is already done.
# Steps (verified on the 2-core CPU machines; the reasons are in docs/environment.md):
#   1. a virtual environment with setuptools>=77,<82 (mmcv needs pkg_resources);
#   2. torch 2.14.1 / torchvision 0.29.1;
#   3. mmcv 2.1.0 built from its source distribution *with ops* (C++20, -O1,
#      MAX_JOBS=2, no build isolation); the wheel is cached in
#      $DIVDET_CACHE (default ~/.cache/divdet) so a second install takes seconds;
#   4. mmengine, mmdet, mmpretrain, pycocotools, ensemble-boxes;
#   5. divdet in editable mode and the test tools;
#   6. a final import check of divdet, mmdet, mmcv.ops and mmpretrain.models.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIVDET_VENV:-$ROOT/.venv}"
CACHE="${DIVDET_CACHE:-$HOME/.cache/divdet}"
PY="$VENV/bin/python"
MMCV_VERSION="2.1.0"
STAMP="$VENV/.divdet-setup"

step() { printf '\n[setup] %s\n' "$*"; }
fail() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command on line $LINENO exited with status $? (see the output above)"' ERR

# A hash of everything that decides the environment (divdet's C source included:
# the editable install builds it): when it matches the stamp and the imports
# work, there is nothing to do.
fingerprint() {
  cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" \
    "$ROOT"/divdet/fusion/csrc/* | sha256sum | cut -d' ' -f1
}

final_check() {
  "$PY" -c "import divdet, divdet.fusion.wbf as w; assert w.HOST_KERNEL, 'divdet/fusion/_C not built'; import mmdet, mmcv.ops, mmpretrain.models, ensemble_boxes, pycocotools; \
print('divdet', divdet.__version__, '| mmdet', mmdet.__version__, '| mmcv', mmcv.__version__)" 2>&1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]] && final_check >/dev/null; then
  echo "[setup] environment $VENV is up to date ($(final_check))"
  exit 0
fi

step "1/6 virtual environment at $VENV"
if [[ ! -x "$PY" ]]; then
  python3 -m venv "$VENV" || fail "python3 -m venv failed; install python3-venv"
else
  echo "exists"
fi
"$PY" -m pip install -q -r "$ROOT/requirements/build.txt"

step "2/6 torch and torchvision"
if "$PY" - <<'EOF' 2>/dev/null
import torch, torchvision
assert torch.__version__.split('+')[0] == '2.14.1', torch.__version__
assert torchvision.__version__.split('+')[0] == '0.29.1', torchvision.__version__
EOF
then
  echo "already installed"
else
  "$PY" -m pip install -r "$ROOT/requirements/torch.txt"
fi
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"

step "3/6 mmcv $MMCV_VERSION with compiled ops"
WHEELS="$CACHE/wheels/torch-$TORCH_TAG"
mkdir -p "$WHEELS"
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  echo "already installed"
else
  WHEEL="$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$WHEEL" ]]; then
    echo "no cached wheel in $WHEELS: building from the source distribution (about 4 minutes)"
    BUILD="$(mktemp -d)"
    # --no-build-isolation: the metadata step of mmcv's setup.py imports
    # pkg_resources and torch, which only this environment has.
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch 2.14 headers need C++20; mmcv's setup.py appends -std=c++17 after
    # the user's flags, so the flag has to change in the source itself.
    grep -q 'c++17' "$SRC/setup.py" || fail "mmcv setup.py no longer mentions c++17; see docs/environment.md (mmcv build)"
    sed -i 's/c++17/c++20/g' "$SRC/setup.py"
    # Without -O1 -g0 the build runs for over an hour on two cores.
    ( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 CFLAGS="-O1 -g0" CXXFLAGS="-O1 -g0" \
        "$PY" -m pip wheel --no-deps --no-build-isolation -w "$BUILD/dist" . )
    WHEEL_BUILT="$(ls "$BUILD"/dist/mmcv-"$MMCV_VERSION"-*.whl)"
    # Move into the cache atomically so an interrupted build leaves no wheel.
    cp "$WHEEL_BUILT" "$WHEELS/.partial.whl"
    mv "$WHEELS/.partial.whl" "$WHEELS/$(basename "$WHEEL_BUILT")"
    WHEEL="$WHEELS/$(basename "$WHEEL_BUILT")"
    rm -rf "$BUILD"
  else
    echo "using cached wheel $WHEEL"
  fi
  "$PY" -m pip install "$WHEEL"
  "$PY" -c "import mmcv.ops" || fail "mmcv installed but mmcv.ops does not import (built without ops?)"
fi

step "4/6 OpenMMLab packages, pycocotools, ensemble-boxes"
"$PY" -m pip install -r "$ROOT/requirements/runtime.txt"

step "5/6 divdet (editable) and test tools"
"$PY" -m pip install -r "$ROOT/requirements/tests.txt"
"$PY" -m pip install --no-deps --no-build-isolation -e "$ROOT"
# the editable install leaves torch's C++ extension (divdet/fusion/_C) in build/;
# build it in place, where `import divdet` from the checkout finds it
(cd "$ROOT" && "$PY" setup.py -q build_ext --inplace)

step "6/6 import check"
final_check || fail "the import check failed"
fingerprint > "$STAMP"
echo "[setup] done: activate with 'source $VENV/bin/activate'"
