#!/usr/bin/env bash
# The GPU results of this project in one command that keeps to a wall-clock budget:
#   1. the benchmark data of the preset (python -m hffne_lib.data, every CPU core);
#   2. the speed benchmark, authors-equivalent vs optimised path (python -m hffne_lib.bench);
#   3. both training stages of the preset's default model (the paper's A3), each under --max-minutes
#      so that the steps after it still fit; a stage cut short says so in the log and resumes later.
#      The refiner starts only once the coarse stage has finished (it learns from the final
#      exemplars); a stage already finished, or with under MIN_STAGE_SECONDS (30) left, is not started;
#   4. its errors on lab_test, wild_test and scans (python -m hffne_lib.evaluate), with stage 'fitted'
#      beside them (test-time fitting in FIT_STEPS Adam steps, beyond the paper; FIT_STEPS=0: none);
#   5. with REAL_FACES set: hffne predict on REAL_FACES/images (latency per photo on the GPU) and
#      hffne compare against REAL_FACES/official_hffne_normals (agreement with the authors' model).
#   6. in the time left, with at least EXTRA_MIN_SECONDS (120) of it: Table 1's beyond-the-paper
#      refiner (experiments.BEYOND_PAPER_ROW) on the same coarse stage, and its errors. A second call
#      of the same command with SKIP_BENCH=1 finds steps 1-5 done and gives it the whole budget.
# Each step's outputs are packed into OUT/results.tar.gz as soon as it ends, so a run stopped by an
# outer time limit still returns what it finished; OUT/log.txt has everything printed, OUT/<gpu>.json
# the benchmark (a benchmark cut short by its share of the budget is finished by a later call). They are staged in RUN_DIR/gpu_check: a second call returns them again, and skips
# an evaluation or a real-photo comparison made after its refiner's and coarse stage's last checkpoints.
# Exit code: 0 when every step that ran finished or was cut short by the budget, 1 when one failed,
# 2 for a setting or machine problem found before any step.
#
# Usage, from the repository root, on a machine whose torch sees the GPU:
#   scripts/gpu_check.sh OUT [BUDGET_SECONDS]        # budget default 540
# Settings (environment): PRESET (gpu), DEVICE (cuda), REAL_FACES (a folder with images/ and
# official_hffne_normals/; unset: step 5 is skipped), SKIP_BENCH=1, TRAIN_SET (extra --set words),
# FIT_STEPS (20), RUN_DIR (results/runs/PRESET, where the notebooks look),
# DATA_ROOT (data/synthetic_<data preset>), PYTHON (.venv/bin/python if there, else python3). The revision
# is taken from git, else from
# HFFNE_GIT_REVISION. On the lent H200 the data build was slow (results/gpu_sessions/2026-11-29):
# there, DATA_ROOT=/dev/shm/hffne/synthetic_gpu.
# A dry run on a CPU: PRESET=ci DEVICE=cpu SKIP_BENCH=1 scripts/gpu_check.sh /tmp/check 300
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUT [BUDGET_SECONDS]}
budget=${2:-540}
preset=${PRESET:-gpu}
device=${DEVICE:-cuda}
default_python=python3
[ -x .venv/bin/python ] && default_python=.venv/bin/python
py=${PYTHON:-$default_python}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/log.txt") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$SECONDS
run_dir=${RUN_DIR:-results/runs/$preset}
# the outputs to return, kept beside the runs: a second call returns them too and redoes none
stage=$run_dir/gpu_check
mkdir -p "$stage" || exit 2

status=0   # 1 once a step has failed
remaining() { echo $((budget - (SECONDS - start))); }
limit() { local left; left=$(remaining); echo $((left > 1 ? left : 1)); }  # for timeout, where 0 means none
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
echo "$(nproc) CPU cores; free: $(df -Ph . /dev/shm 2>/dev/null | awk 'NR > 1 {printf "%s %s  ", $6, $4}')"
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
# the preset's data, its iteration counts and one evaluation half-way through its refinement (the
# evaluate step adds the end), with TRAIN_SET applied
settings=$(TRAIN_SET="${TRAIN_SET:-}" "$py" -c "
import os
from hffne_lib.config import get_config
from hffne_lib.train import parse_overrides
c = get_config('$preset', **parse_overrides(os.environ['TRAIN_SET'].split()))
print(c.data_preset, max(1, c.refine_iters // 2), c.coarse_iters, c.refine_iters)") || exit 2
read -r data_preset eval_every coarse_iters refine_iters <<< "$settings"
data_root=${DATA_ROOT:-data/synthetic_$data_preset}

step "data: $data_root"
timeout "$(limit)" "$py" -m hffne_lib.data --preset "$data_preset" --root "$data_root" --no-progress || exit 1
echo "data ready after $((SECONDS - start)) s"

bench_seconds=$(( $(remaining) / 2 < 150 ? $(remaining) / 2 : 150 ))
if [ "${SKIP_BENCH:-0}" != 1 ] && [ "$bench_seconds" -ge 30 ]; then
  step "speed benchmark"
  # into the stage, which outlives this call: a later call without SKIP_BENCH=1 measures only what is missing
  timeout "$bench_seconds" "$py" -m hffne_lib.bench --device "$device" --data-root "$data_root" \
    --out "$stage/bench" --resume || echo "bench: stopped (exit $?); the sections it finished are kept (a later call goes on)"
  cp "$stage"/bench/*.json "$out"/ 2>/dev/null
  pack
elif [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "speed benchmark: skipped ($(remaining) s left)"
fi

# what the steps after training need: evaluation, and predict + compare on the real faces
reserve=60
[ -n "${REAL_FACES:-}" ] && reserve=120
iteration_of() {  # iteration_of STAGE_DIR: its latest checkpoint's iteration, 0 without one
  "$py" -c "
import sys
from pathlib import Path
from hffne_lib.checkpoint import checkpoint_entry
path = Path(sys.argv[1]) / 'latest.pt'
print(checkpoint_entry(path, 'iteration') if path.is_file() else 0)" "$1"
}
train() {  # train coarse|refiner SECONDS [STAGE_NAME [EXTRA --set WORDS]]: 0 finished, 75 cut short
  local minutes name=${3:-$1} total reached
  total=$([ "$1" = coarse ] && echo "$coarse_iters" || echo "$refine_iters")
  reached=$(iteration_of "$run_dir/$name")
  if [ "$reached" -ge "$total" ]; then
    echo "$name: finished already (iteration $reached of $total)"
    return 0
  fi
  if [ "$2" -lt "${MIN_STAGE_SECONDS:-30}" ]; then
    echo "$name: not started, $2 s left for it (iteration $reached of $total; the same command goes on)"
    return 75
  fi
  minutes=$(awk "BEGIN {print $2 / 60}")
  # shellcheck disable=SC2086  # TRAIN_SET and $4 are lists of words
  timeout "$(limit)" "$py" -m hffne_lib.train "$1" ${3:+--stage-name "$3"} --preset "$preset" \
    --run-dir "$run_dir" --no-progress --max-minutes "$minutes" \
    --set data_root="$data_root" device="$device" eval_every="$eval_every" ${TRAIN_SET:-} ${4:-}
  local code=$?
  case $code in
    0) echo "$name: finished" ;;
    75) echo "$name: cut short by the time budget (the same command resumes it)" ;;
    *) echo "$name: failed (exit $code)"; status=1 ;;
  esac
  return $code
}
up_to_date() {  # up_to_date OUTPUT CHECKPOINT...: OUTPUT was made after every CHECKPOINT was last saved
  local output=$1 checkpoint
  shift
  for checkpoint in "$@"; do [ "$output" -nt "$checkpoint" ] || return 1; done
  echo "$output: up to date"
}
evaluate() {  # evaluate STAGE_DIR NAME: errors into the staged NAME/ (an earlier one is removed first)
  up_to_date "$stage/$2/evaluation.md" "$1/latest.pt" "$run_dir/coarse/latest.pt" && return 0
  rm -rf "${stage:?}/$2"
  timeout "$(limit)" "$py" -m hffne_lib.evaluate "$1" --data-root "$data_root" --device "$device" \
    --fit-steps "${FIT_STEPS:-20}" --out "$stage/$2" --no-progress || { echo "evaluate $2: failed or out of time (exit $?)"; status=1; }
  pack
}
# the coarse stage may take all the time the later steps leave: the refiner needs it finished
step "train coarse ($preset)"
train coarse $(( $(remaining) - reserve ))
coarse_code=$?
step "train refiner ($preset)"
if [ "$coarse_code" = 0 ]; then
  train refiner $(( $(remaining) - reserve ))
else
  echo "refiner: not started, the coarse stage has not finished (the same command goes on)"
fi
stage_run_logs
pack

step "evaluate"
[ -f "$run_dir/refiner/latest.pt" ] && evaluate "$run_dir/refiner" evaluation

if [ -n "${REAL_FACES:-}" ] && up_to_date "$stage/real_faces/overall.csv" "$run_dir/refiner/latest.pt" \
    "$run_dir/coarse/latest.pt"; then
  :
elif [ -n "${REAL_FACES:-}" ] && [ -f "$run_dir/refiner/latest.pt" ] && [ "$(remaining)" -ge 15 ]; then
  step "real faces: predict and compare ($REAL_FACES)"
  aligned=
  "$py" -c "from hffne_lib.data.faces import face_cascade; face_cascade()" 2>/dev/null || aligned=--aligned
  timeout "$(limit)" "$py" -m hffne_lib.cli predict "$REAL_FACES/images" --out "$stage/predictions" \
    --checkpoint "$run_dir" --device "$device" --no-progress --overwrite $aligned || status=1
  timeout "$(limit)" "$py" -m hffne_lib.cli compare "$stage/predictions" "$REAL_FACES/official_hffne_normals" \
    --images "$REAL_FACES/images" --out "$stage/real_faces" --overwrite || status=1
  # keep the comparison and one sheet per photo, not every output file
  [ -d "$stage/predictions" ] && find "$stage/predictions" -type f ! -name face0_sheet.png -delete
  pack
elif [ -n "${REAL_FACES:-}" ]; then
  step "real faces: skipped (no refiner checkpoint, or $(remaining) s left)"
fi
extra_min=${EXTRA_MIN_SECONDS:-120}
if [ -f "$run_dir/refiner/latest.pt" ] && [ "$(remaining)" -ge "$extra_min" ]; then
  # its stage name, then its overrides as --set words, from the one registry of the table rows
  read -r extra_stage extra_set < <("$py" -c "
from hffne_lib.config import get_config
from hffne_lib.experiments import BEYOND_PAPER_ROW, experiments
row = experiments(get_config('$preset'))[BEYOND_PAPER_ROW]
print(row.stage, ' '.join(f'{key}={value}' for key, value in row.overrides.items()))")
  step "beyond the paper: $extra_stage ($extra_set)"
  train refiner $(( $(remaining) - 60 )) "$extra_stage" "$extra_set"   # 60 s: its evaluation, as above
  stage_run_logs
  [ -f "$run_dir/$extra_stage/latest.pt" ] && evaluate "$run_dir/$extra_stage" "evaluation_$extra_stage"
  pack
else
  step "beyond the paper: skipped ($(remaining) s left, it needs $extra_min)"
fi
step "done in $((SECONDS - start)) s, exit $status; $out: $(ls "$out" | tr '\n' ' ')"
exit $status
