#!/usr/bin/env bash
# The GPU results of this project in one command that keeps to a wall-clock budget:
#   1. the benchmark data of the preset (python -m hffne_lib.data, every CPU core);
#   2. the speed benchmark, authors-equivalent vs optimised path (python -m hffne_lib.bench);
#   3. both training stages of the preset's default model (the paper's A3), each under --max-minutes
#      so that the steps after it still fit; a stage cut short says so in the log and resumes later;
#   4. its errors on lab_test, wild_test and scans (python -m hffne_lib.evaluate);
#   5. with REAL_FACES set: hffne predict on REAL_FACES/images (latency per photo on the GPU) and
#      hffne compare against REAL_FACES/official_hffne_normals (agreement with the authors' model).
# Each step's outputs are packed into OUT/results.tar.gz as soon as it ends, so a run stopped by an
# outer time limit still returns what it finished; OUT/log.txt has everything printed, OUT/<gpu>.json
# the benchmark.
#
# Usage, from the repository root, on a machine whose torch sees the GPU:
#   scripts/gpu_check.sh OUT [BUDGET_SECONDS]        # budget default 540
# Settings (environment): PRESET (gpu), DEVICE (cuda), REAL_FACES (a folder with images/ and
# official_hffne_normals/; unset: step 5 is skipped), SKIP_BENCH=1, TRAIN_SET (extra --set words),
# RUN_DIR (results/runs/PRESET, where the notebooks look), DATA_ROOT (data/synthetic_<data preset>),
# PYTHON (python3). The revision is taken from git, else from HFFNE_GIT_REVISION.
# A dry run on a CPU: PRESET=ci DEVICE=cpu SKIP_BENCH=1 scripts/gpu_check.sh /tmp/check 300
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUT [BUDGET_SECONDS]}
budget=${2:-540}
preset=${PRESET:-gpu}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/log.txt") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$SECONDS
run_dir=${RUN_DIR:-results/runs/$preset}
stage=$(mktemp -d)

remaining() { echo $((budget - (SECONDS - start))); }
step() { echo; echo "=== [$((SECONDS - start)) s of $budget] $*"; }
pack() {  # everything staged so far -> OUT/results.tar.gz, atomically
  tar czf "$out/results.tar.gz.tmp" -C "$stage" . && mv "$out/results.tar.gz.tmp" "$out/results.tar.gz"
}
stage_run_logs() {
  for f in "$run_dir"/*/log.csv "$run_dir"/*/eval.csv; do
    [ -f "$f" ] && mkdir -p "$stage/run/$(basename "$(dirname "$f")")" && cp "$f" "$stage/run/$(basename "$(dirname "$f")")/"
  done
}

step "environment"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
"$py" - <<'EOF'
import cv2, torch
from hffne_lib.checkpoint import CODE_REVISION
from hffne_lib.data.faces import DetectorUnavailableError, face_cascade
try:
    face_cascade()
    detector = "Haar cascade found"
except DetectorUnavailableError as err:
    detector = f"none ({err})"
print(f"revision {CODE_REVISION} | torch {torch.__version__} | CUDA {torch.cuda.is_available()} "
      f"({torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}) | OpenCV {cv2.__version__}: {detector}")
EOF
data_preset=$("$py" -c "from hffne_lib.config import get_config; print(get_config('$preset').data_preset)") || exit 2
data_root=${DATA_ROOT:-data/synthetic_$data_preset}

step "data: $data_root"
timeout "$(remaining)" "$py" -m hffne_lib.data --preset "$data_preset" --root "$data_root" --no-progress || exit 1
echo "data ready after $((SECONDS - start)) s"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "speed benchmark"
  bench_seconds=$(( $(remaining) / 2 < 180 ? $(remaining) / 2 : 180 ))
  timeout "$bench_seconds" "$py" -m hffne_lib.bench --device "$device" --data-root "$data_root" \
    --out "$out" || echo "bench: stopped (exit $?); $out holds the sections it finished"
fi

# what the steps after training need: evaluation, and predict + compare on the real faces
reserve=60
[ -n "${REAL_FACES:-}" ] && reserve=120
train() {  # train STAGE SECONDS
  local minutes
  minutes=$(awk "BEGIN {print $2 / 60}")
  timeout "$(( $(remaining) ))" "$py" -m hffne_lib.train "$1" --preset "$preset" --run-dir "$run_dir" \
    --no-progress --max-minutes "$minutes" --set data_root="$data_root" device="$device" eval_every=2000 ${TRAIN_SET:-}
  local code=$?
  case $code in
    0) echo "$1: finished" ;;
    75) echo "$1: cut short by the time budget (the same command resumes it)" ;;
    *) echo "$1: failed (exit $code)" ;;
  esac
  return $code
}
step "train coarse ($preset)"
train coarse $(( ($(remaining) - reserve) * 45 / 100 ))
coarse_code=$?
step "train refiner ($preset)"
if [ "$coarse_code" = 0 ] || [ "$coarse_code" = 75 ]; then
  train refiner $(( $(remaining) - reserve ))
fi
stage_run_logs
pack

step "evaluate"
if [ -f "$run_dir/refiner/latest.pt" ]; then
  timeout "$(remaining)" "$py" -m hffne_lib.evaluate "$run_dir" --data-root "$data_root" --device "$device" \
    --out "$stage/evaluation" --no-progress && pack
fi

if [ -n "${REAL_FACES:-}" ] && [ -f "$run_dir/refiner/latest.pt" ]; then
  step "real faces: predict and compare ($REAL_FACES)"
  aligned=
  "$py" -c "from hffne_lib.data.faces import face_cascade; face_cascade()" 2>/dev/null || aligned=--aligned
  timeout "$(remaining)" "$py" -m hffne_lib.cli predict "$REAL_FACES/images" --out "$stage/predictions" \
    --checkpoint "$run_dir" --device "$device" --no-progress --overwrite $aligned
  timeout "$(remaining)" "$py" -m hffne_lib.cli compare "$stage/predictions" "$REAL_FACES/official_hffne_normals" \
    --images "$REAL_FACES/images" --out "$stage/real_faces"
  # keep the comparison and one sheet per photo, not every output file
  find "$stage/predictions" -type f ! -name face0_sheet.png -delete
  pack
fi
step "done in $((SECONDS - start)) s; $out: $(ls "$out" | tr '\n' ' ')"
