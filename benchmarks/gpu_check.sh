#!/usr/bin/env bash
# The GPU figures of the README's Speed section in one command, most important first; every step has its
# own time limit and its output lands in $LOG as it comes, so a run cut short keeps what it measured.
#
#   benchmarks/gpu_check.sh                      # ADM-256, cuda, bf16 (the paper-scale check)
#   SCALE=tiny DEVICE=cpu benchmarks/gpu_check.sh  # the same steps at test size on the CPU
#
# OFFICIAL: a local uni-DAD checkout (with third_party/dhariwal) for the side-by-side step; without it
# the project side runs alone. LOG: where the output goes (default gpu_check.log). STEPS: which steps
# to run, by number (default all: "1 2 3 4 5 6").
set -u
SCALE=${SCALE:-adm256}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
OFFICIAL=${OFFICIAL:-}
LOG=${LOG:-gpu_check.log}
STEPS=" ${STEPS:-1 2 3 4 5 6} "
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
here=$(cd "$(dirname "$0")" && pwd)
if [ "$SCALE" = adm256 ]; then ROUNDS=3 IMAGES=200 FP32_IMAGES=50; else ROUNDS=1 IMAGES=4 FP32_IMAGES=4; fi
if [ "$DEVICE" = cpu ]; then SAMPLE_BATCH=4; else SAMPLE_BATCH=50; fi

n=0
step() {  # step LIMIT_SECONDS TITLE COMMAND...
  local limit=$1 title=$2; shift 2
  n=$((n + 1))
  [[ $STEPS == *" $n "* ]] || return 0
  echo "== $title" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E "Warning|warn\(|^\s*with th\.|^\[load_pt|^\[Dhariwal" | tee -a "$LOG"
  echo "-- $title: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$LOG"
}

: > "$LOG"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee -a "$LOG"
side="$PY $here/bench_side_by_side.py --scale $SCALE --device $DEVICE --precision $PRECISION --rounds $ROUNDS --iters 10"
sample="$PY $here/bench_sampling.py --scale $SCALE --device $DEVICE --batch $SAMPLE_BATCH"
step 150 "side by side, batch 2${OFFICIAL:+, against the official step}" $side ${OFFICIAL:+--official "$OFFICIAL"}
step 90 "sampling, $PRECISION" $sample --precision "$PRECISION" --images "$IMAGES"
step 75 "project, batch 1 (the paper's)" $side --batch 1
step 75 "project, batch 1, channels_last + TF32" $side --batch 1 --tf32 --perf '{"channels_last": true}'
step 75 "project, batch 8" $side --batch 8
step 90 "sampling, fp32 (the sample job today) and TF32" $sample --precision fp32 --images "$FP32_IMAGES" --tf32
