#!/usr/bin/env bash
# The GPU kit: on a machine with a CUDA GPU, Python 3.12 and torch but no OpenMMLab
# packages and no network, install what tools/gpu/prepare.sh fetched, build mmcv's
# ops for the local GPU only, run the tests marked `cuda`, the speed benchmark on
# the GPU and a short AMP training + test of the demo config; all results in one
# file, $OUT/gpu_check.md (or --out DIR), with one log per step beside it.
#
# Usage: bash tools/gpu/check.sh [--dry-run] [--steps LIST] [--out DIR]
#   --dry-run   on any machine: check that the kit is complete and print the plan
#   --steps     comma-separated, in order (default: all of them):
#               install  the wheels into .gpu/site (kept between calls on one machine)
#               build    mmcv's ops (CUDA, this GPU's architecture) and divdet's WBF kernel
#               test     pytest -m cuda (every executor on CUDA equals the CPU, WBF on
#                        CUDA equals the C++ kernel, batched post-processing and SSD
#                        loss on CUDA equal the CPU, an AMP training step is finite)
#               ops      operators dispatched per training step and predict (--ops), the
#                        SSD and the RetinaNet demo
#               bench    tools/analysis_tools/benchmark.py on cuda: S=1/S=2 (members
#                        sequential and on streams); AMP: inference at batch 1, 8, 32
#                        (post-processing and fusion included), training steps at
#                        batch 32 and 64; fp32: batch 1 and 32, training at 32;
#                        WBF on the GPU against the host
#               train    2 epochs of the demo config with --amp, then tools/test.py
#               graphs   members in CUDA graphs (compile_members=dict(mode='reduce-overhead'),
#                        AMP, inference at batch 1 and 32, training at 64) and the packed
#                        probe (the members as one vmap-ed network, inference)
# Every step runs under a time limit and the next step runs even if one fails;
# the exit status is that of the first failed step. `make gpu-check` runs it all.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="${GPU_KIT:-$ROOT/.gpu}"  # GPU_KIT: another folder (tests)
SITE="$KIT/site"
MMCV_VERSION="2.1.0"
MMCV_SRC="$KIT/build/mmcv-$MMCV_VERSION"
PY="${PYTHON:-python3}"
DEMO="configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py"
RETINA="configs/demo/retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py"
ENTRY="configs/ssd_divided_resnet50_coco.py"
ALL_STEPS="install,build,test,ops,bench,train,graphs"

DRY=0
STEPS="$ALL_STEPS"
DEST="${OUT:-$ROOT/work_dirs/gpu_check}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --steps) STEPS="${2:?--steps needs a list}"; shift ;;
    --out) DEST="${2:?--out needs a folder}"; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "gpu-check: error: unknown argument '$1' (expected --dry-run, --steps LIST, --out DIR)" >&2
       exit 2 ;;
  esac
  shift
done
for s in ${STEPS//,/ }; do
  [[ ",$ALL_STEPS," == *",$s,"* ]] || {
    echo "gpu-check: error: unknown step '$s' in --steps (expected some of $ALL_STEPS)" >&2; exit 2; }
done
want() { [[ ",$STEPS," == *",$1,"* ]]; }

# ---- the plan: what each step runs, with its time limit in seconds ------------------
export PYTHONPATH="$SITE:$MMCV_SRC:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# the interpreter's own bin folder (ninja, pytest of its environment) before the rest
PATH="$(dirname "$(command -v "$PY" 2>/dev/null || echo /usr/bin/python3)"):$PATH"
export PATH
BENCH="$PY tools/analysis_tools/benchmark.py $ENTRY --device cuda --repeats 5 --executions seq streams auto --skip-wbf"
BENCH_AMP="$BENCH --amp --batch-sizes 1 8 32 --train-batch 32 64"
BENCH_FP32="$BENCH --batch-sizes 1 32 --train-batch 32"
WBF="$PY tools/analysis_tools/benchmark.py $ENTRY --device cuda --skip-models --repeats 5"
GRAPHS="$PY tools/analysis_tools/benchmark.py $ENTRY --device cuda --amp --repeats 5 --executions seq --compile reduce-overhead --batch-sizes 1 32 --train-batch 64 --skip-wbf"
PACKED="$PY tools/analysis_tools/packed_probe.py $ENTRY --device cuda --repeats 10 --batch-sizes 1 32"
declare -A LIMIT=([install]=60 [build]=480 [test]=180 [ops]=120 [bench]=360 [train]=150 [graphs]=300)
declare -A PLAN=(
  [install]="$PY -m pip install --no-index --no-deps --no-compile --target $SITE .gpu/wheels/*.whl"
  [build]="mmcv $MMCV_VERSION ops (MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<this GPU>, -O1, C++20) in $MMCV_SRC; $PY setup.py build_ext --inplace (divdet's WBF kernel)"
  [test]="$PY -m pytest -m cuda tests -q -p no:cacheprovider -o addopts=-ra"
  [ops]="$PY tools/analysis_tools/benchmark.py $DEMO --ops --device cuda --batch-sizes 2 8 32; echo; $PY tools/analysis_tools/benchmark.py $RETINA --ops --device cuda --batch-sizes 2 8 32"
  [bench]="$BENCH_AMP; echo; $BENCH_FP32; echo; $WBF"
  [graphs]="$PACKED --amp; echo; $PACKED; echo; $GRAPHS"
  [train]="$PY tools/misc/make_shapes.py --out data/shapes; $PY tools/train.py $DEMO --amp --cfg-options train_cfg.max_epochs=2 ...; $PY tools/test.py $DEMO CKPT"
)

if (( DRY )); then
  status=0
  problem() { echo "gpu-check --dry-run: missing: $*"; status=2; }
  echo "gpu-check --dry-run: the kit in $KIT"
  [[ -d "$KIT/wheels" ]] || problem "$KIT/wheels (run: bash tools/gpu/prepare.sh)"
  while read -r req; do
    name="$(echo "${req%%==*}" | tr 'A-Z-' 'a-z_')"
    ls "$KIT/wheels" 2>/dev/null | tr 'A-Z' 'a-z' | grep -q "^${name}-${req##*==}-" \
      || problem "the wheel of $req (run: bash tools/gpu/prepare.sh)"
  done < <(grep -v '^\s*#' "$ROOT/tools/gpu/requirements.txt" | grep -v '^\s*$')
  [[ -f "$KIT/src/mmcv-$MMCV_VERSION.tar.gz" ]] || problem "mmcv's sdist (run: bash tools/gpu/prepare.sh)"
  for f in "$ENTRY" "$DEMO" "$RETINA" tools/analysis_tools/benchmark.py tools/analysis_tools/packed_probe.py tools/train.py tools/test.py \
      tools/misc/make_shapes.py setup.py; do
    [[ -f "$ROOT/$f" ]] || problem "$f"
  done
  # what a device call carries: tracked and untracked-not-ignored files, and the kit
  size_kib="$( (cd "$ROOT" && { git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -n1 | cut -f1; du -sk "$KIT/wheels" "$KIT/src" 2>/dev/null | cut -f1; }) | awk '{s += $1} END {print s}')"
  (( size_kib < 60 * 1024 )) || problem "room: the working tree and kit are $((size_kib / 1024)) MiB (a device call carries 64)"
  # the cuda tests exist and are collected (skipped here without a GPU)
  n="$(cd "$ROOT" && "${DRY_PY:-$ROOT/.venv/bin/python}" -m pytest -m cuda tests -q \
    --collect-only -p no:cacheprovider 2>/dev/null | grep -c '::')"
  (( n > 0 )) || problem "tests marked cuda"
  echo "gpu-check --dry-run: $n tests marked cuda; kit $((size_kib / 1024)) MiB with the working tree"
  echo "gpu-check --dry-run: plan (steps: $STEPS; results in $DEST/gpu_check.md):"
  for s in ${STEPS//,/ }; do printf '  %-8s (%3ss) %s\n' "$s" "${LIMIT[$s]}" "${PLAN[$s]}"; done
  (( status == 0 )) && echo "gpu-check --dry-run: ready"
  exit $status
fi

# ---- the run -------------------------------------------------------------------------
if [[ -z "${GPU_CHECK_WITHOUT_GPU:-}" ]] && ! $PY -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu-check: error: $PY sees no CUDA device; on a machine without one, run --dry-run" >&2
  exit 2
fi
mkdir -p "$DEST" || { echo "gpu-check: error: cannot create the results folder $DEST" >&2; exit 2; }
REPORT="$DEST/gpu_check.md"
cd "$ROOT"
first_failure=0
{
  echo "# divdet GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "commit ${DIVDET_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}; steps: $STEPS"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | head -3
  $PY -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version(), '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE')" 2>&1
  echo "$(nproc) CPU cores"
  echo '```'
} > "$REPORT"

run_step() {  # run_step NAME COMMAND...: time-limited, logged, summarised in the report
  local name="$1"; shift
  local log="$DEST/$name.log" start=$SECONDS rc
  echo "[gpu-check] $name (limit ${LIMIT[$name]} s)"
  timeout --kill-after=10 "${LIMIT[$name]}" bash -c "$*" > "$log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  {
    echo
    echo "## $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc$([[ $rc == 124 ]] && echo ', time limit'))"), ${took} s"
    echo
    echo '```'
    if [[ "$name" == bench || "$name" == ops || "$name" == test || "$name" == graphs ]]; then
      grep -v -E '^\s*$|Warning|warn\(' "$log" | tail -n 120
    else
      tail -n 25 "$log"
    fi
    echo '```'
  } >> "$REPORT"
  echo "[gpu-check] $name: exit $rc after ${took} s"
  if [[ $rc != 0 && $first_failure == 0 ]]; then first_failure=$rc; fi
  return $rc
}

build_mmcv() {
  # mmcv with ops imports and runs NMS on this GPU already: nothing to do
  if $PY -c "import torch, mmcv.ops; b = torch.rand(8, 4, device='cuda'); b[:, 2:] += 1; mmcv.ops.nms(b, torch.rand(8, device='cuda'), 0.5)" 2>/dev/null; then
    echo "mmcv $MMCV_VERSION with CUDA ops already built in $MMCV_SRC"
  else
    rm -rf "$MMCV_SRC" && mkdir -p "$KIT/build" && tar -xzf "$KIT/src/mmcv-$MMCV_VERSION.tar.gz" -C "$KIT/build" || return 1
    # torch >= 2.10 headers need C++20; mmcv's setup.py appends -std=c++17 after the user's flags
    sed -i 's/c++17/c++20/g; s/c++14/c++20/g' "$MMCV_SRC/setup.py"
    local arch cuda_home nv_inc
    arch="$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')" || return 1
    cuda_home="${CUDA_HOME:-$( [[ -d /usr/local/cuda ]] && echo /usr/local/cuda || dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}"
    # headers torch includes (cusparse.h, ...) that a minimal toolkit may lack come with
    # torch's pip packages of the CUDA libraries
    nv_inc="$($PY -c 'import glob, os, nvidia; print(":".join(glob.glob(os.path.join(list(nvidia.__path__)[0], "cu*", "include"))))' 2>/dev/null)"
    command -v ninja > /dev/null || echo "warning: no ninja on PATH: mmcv's ops compile one file at a time"
    echo "building mmcv's ops for sm_${arch/./} with $cuda_home, $(nproc) jobs"
    ( cd "$MMCV_SRC" && CUDA_HOME="$cuda_home" CPATH="${nv_inc}${CPATH:+:$CPATH}" \
        MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)" \
        CFLAGS="-O1 -g0" CXXFLAGS="-O1 -g0" $PY setup.py build_ext --inplace > build.log 2>&1 ) \
      || { tail -n 40 "$MMCV_SRC/build.log"; return 1; }
    tail -n 3 "$MMCV_SRC/build.log"
    $PY -c "import torch, mmcv.ops; b = torch.rand(8, 4, device='cuda'); b[:, 2:] += 1; print('mmcv', mmcv.__version__, 'CUDA nms keeps', len(mmcv.ops.nms(b, torch.rand(8, device='cuda'), 0.5)[1]), 'of 8 boxes')" || return 1
  fi
  $PY setup.py -q build_ext --inplace 2>&1 | tail -n 3
  $PY -c "import divdet, divdet.fusion.wbf as w; assert w.HOST_KERNEL, 'divdet/fusion/_C not built'; import mmdet, mmpretrain.models; print('divdet', divdet.__version__, '| mmdet', mmdet.__version__, '| WBF C++ kernel built')"
}

train_demo() {
  local work="work_dirs/gpu_check_demo"
  rm -rf "$work"
  [[ -f data/shapes/annotations/instances_val.json ]] || $PY tools/misc/make_shapes.py --out data/shapes || return 1
  $PY tools/train.py "$DEMO" --amp --work-dir "$work" --cfg-options train_cfg.max_epochs=2 \
    train_cfg.val_interval=2 default_hooks.checkpoint.interval=2 param_scheduler.1.end=2 \
    param_scheduler.1.T_max=2 train_dataloader.num_workers=4 val_dataloader.num_workers=4 \
    || return 1
  $PY tools/test.py "$DEMO" "$(cat "$work/last_checkpoint")" --work-dir "$work" || return 1
}

if want install; then
  run_step install "$PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target '$SITE' .gpu/wheels/*.whl && $PY -c 'import mmengine, pycocotools, ensemble_boxes; print(\"installed into $SITE\")'"
fi
if want build; then
  export -f build_mmcv; export PY MMCV_SRC MMCV_VERSION KIT
  run_step build build_mmcv
fi
if want test; then
  run_step test "${PLAN[test]}"
fi
if want ops; then
  run_step ops "${PLAN[ops]}"
fi
if want bench; then
  run_step bench "${PLAN[bench]}"
fi
if want train; then
  export -f train_demo; export DEMO
  run_step train train_demo
fi
if want graphs; then
  run_step graphs "${PLAN[graphs]}"
fi
echo "[gpu-check] results: $REPORT"
exit $first_failure
