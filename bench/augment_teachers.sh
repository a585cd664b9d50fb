#!/usr/bin/env bash
# Does the demo teachers' augmentation keep clean speech? Trains each language's demo teacher with
# conf/train/teacher_demo.yaml and with the same preset without its `augment:` block, then prints
# clean dev CER (final.pt, what the trainer reports), greedy CER on test and test_noisy, and the
# augmented / not augmented ratios (bench/augment_teachers.py). The two arms of a language train side
# by side, 1 thread each (as local/run.sh trains teachers, with jemalloc when the system has it), on the
# data's teacher_train when it has one.
#   bench/augment_teachers.sh DATA NOISE [--langs "en ru"] [--scale 1.0] [--seed 42] [--work bench/work/augment_teachers]
# DATA: prepared data of a demo corpus with test_noisy (`mlkd prepare ... test_noisy`), NOISE: its noise/ set.
# --scale multiplies the preset's number of updates; --seed is both arms' (the preset's: 42).
# Finished runs are up to date on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 noise=$2; shift 2
langs="en ru" scale=1.0 seed=42 work=bench/work/augment_teachers
while [ $# -gt 0 ]; do
  case "$1" in
    --langs) langs=$2;; --scale) scale=$2;; --seed) seed=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
. local/jemalloc.sh
mkdir -p "$work/conf"
steps=$(python -c "print(max(1, round($(awk '/^max_steps:/ {print $2}' conf/train/teacher_demo.yaml) * $scale)))")
train_set=""
if [ -f "$data/manifests/teacher_train_cuts.jsonl.gz" ]; then train_set="--train-set teacher_train"; fi
cp conf/train/teacher_demo.yaml "$work/conf/aug.yaml"
sed '/^# Audio augmentation/,$d' conf/train/teacher_demo.yaml >"$work/conf/noaug.yaml"
train() {  # LANG ARM: one teacher, timed
  local lang=$1 arm=$2 exp=$work/$2/teacher_$1 opts=""
  [ "$arm" = aug ] && opts="--noise-set $noise"
  local start=$SECONDS
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 mlkd train-teacher --data "$data" --lang "$lang" --model-config conf/model/demo.yaml $train_set \
    --train-config "$work/conf/$arm.yaml" --max-steps "$steps" --seed "$seed" $opts "$exp" >"$exp.log" 2>&1 || { cat "$exp.log"; exit 1; }
  echo "$arm teacher_$lang: $((SECONDS - start)) s"
}
mkdir -p "$work/noaug" "$work/aug"
for lang in $langs; do
  pids=()
  for arm in noaug aug; do train "$lang" "$arm" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  for arm in noaug aug; do
    for set in test test_noisy; do
      mlkd decode "$work/$arm/teacher_$lang" "$data/manifests/${set}_cuts.jsonl.gz" --name "$set" >>"$work/decode.log" 2>&1
    done
  done
done
python bench/augment_teachers.py "$work" $langs
