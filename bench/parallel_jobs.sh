#!/usr/bin/env bash
# What `local/run.sh --max-jobs-run 2` buys on this machine: two demo teachers (en, ru) for the same
# updates, one after the other with torch's default threads, then side by side with half the cores
# each (OMP_NUM_THREADS, as run.sh sets it); the wall time of each arm and their ratio, twice.
#   bench/parallel_jobs.sh DATA [--steps 150] [--work bench/work/parallel_jobs]
# DATA: prepared en+ru data of a demo corpus (`mlkd prepare`).
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1; shift
steps=150 work=bench/work/parallel_jobs
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
rm -rf "$work"; mkdir -p "$work"
sed "s/^max_steps: .*/max_steps: $steps/; s/^valid_interval: .*/valid_interval: $steps/; /^# Audio augmentation/,\$d" \
  conf/train/teacher_demo.yaml >"$work/teacher.yaml"
teacher() {  # EXP LANG
  mlkd train-teacher --data "$data" --lang "$2" --model-config conf/model/demo.yaml --train-config "$work/teacher.yaml" \
    "$1" >"$1.log" 2>&1
}
share=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
for round in 1 2; do
  SECONDS=0
  teacher "$work/seq$round-en" en
  teacher "$work/seq$round-ru" ru
  sequential=$SECONDS
  SECONDS=0
  OMP_NUM_THREADS=$share teacher "$work/par$round-en" en &
  pid=$!
  OMP_NUM_THREADS=$share teacher "$work/par$round-ru" ru
  wait $pid
  parallel=$SECONDS
  echo "round $round: one after the other ($(nproc) cores, torch's default threads) ${sequential} s;" \
       "side by side ($share threads each) ${parallel} s; speed-up $(python -c "print(f'{$sequential / $parallel:.2f}')")"
done
