#!/usr/bin/env bash
# The mouth pipeline end to end, timed: prepare -> train the four models -> eval (Tables 1-2, Fig. 5)
# -> ONNX export of adversarial-tcn. Each step's wall time and the load average go to the log.
#
#   benchmarks/mouth_pipeline_timing.sh CLIPS_GLOB_DIR DATASET RUNS LOG
#   e.g. benchmarks/mouth_pipeline_timing.sh /work/shared/media/clips /work/data/clips_ds2 \
#            /work/data/runs/mouth2 /work/data/mouth2_timed.log
# ANCHOR (default: the checkout's .venv/bin/anchor) picks the console script.
set -euo pipefail
clips=${1:?clips directory}; ds=${2:?dataset out}; runs=${3:?runs out}; log=${4:?log file}
here=$(cd "$(dirname "$0")/.." && pwd)
anchor=${ANCHOR:-$here/.venv/bin/anchor}
: > "$log"
t_start=$(date +%s)
step() {  # step NAME CMD...: run CMD under /usr/bin/time -v, log output, wall time and load
  local name=$1; shift
  echo "=== $name start $(date -Is) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
  local t0; t0=$(date +%s.%N)
  /usr/bin/time -v "$@" >> "$log" 2>&1
  local t1; t1=$(date +%s.%N)
  printf '=== %s done %s: %.1f s wall, load: %s\n' "$name" "$(date -Is)" "$(echo "$t1 - $t0" | bc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
}
step prepare "$anchor" prepare "$clips"/*.mp4 -o "$ds"
for m in adversarial-tcn tcn lstm bilstm; do
  step "train $m" "$anchor" train mouth "$ds" --model "$m" --out "$runs"
done
step eval "$anchor" eval mouth "$ds" --runs "$runs" --plot "$runs/fig5.png" --json "$runs/results.json"
t_end=$(date +%s)
echo "=== total (prepare + train x4 + eval): $((t_end - t_start)) s; uptime: $(uptime)" | tee -a "$log"
step export "$anchor" export mouth "$runs/adversarial-tcn/checkpoint.pt" -o "$runs/adversarial-tcn/mouth.onnx"
