#!/usr/bin/env bash
# Does augmentation pay? Runs the demo recipe twice on a corpus made for it: with the presets'
# `augment:` block (noise from the corpus's noise/ set and babble, simulated rooms, telephone,
# volume) and without it; the no-KD baseline once, with augmentation. Every model is decoded
# (greedy) on test, test_noisy and test_engine; bench/augment.py prints each training run's
# throughput and the ratios bench/README.md records.
#   bench/augment.sh [--langs "en ru"] [--scale 1.0] [--work bench/work/augment]
# --scale multiplies every preset's number of updates (0.5: half the demo schedules).
# Each command's output goes to WORK/<arm>/<model>.log; finished runs are up to date on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
langs="en ru" scale=1.0 work=bench/work/augment
while [ $# -gt 0 ]; do
  case "$1" in
    --langs) langs=$2;; --scale) scale=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
steps() { python -c "print(max(1, round($1 * $scale)))"; }
data=$work/data corpus=$work/corpus
mkdir -p "$work"
mlkd make-corpus --langs "$langs" --size demo-same-hour --unlabeled-hours 0 --unseen-minutes 0 "$corpus" \
  >"$work/corpus.log" 2>&1
mlkd prepare --tokenizer char -j 2 "$corpus/train" "$corpus/dev" "$corpus/test" "$corpus/test_noisy" \
  "$corpus/test_engine" "$data" >"$work/prepare.log" 2>&1

conf=$work/conf
mkdir -p "$conf"
for preset in teacher distill finetune baseline; do
  cp "conf/train/${preset}_demo.yaml" "$conf/${preset}_aug.yaml"
  sed '/^# Audio augmentation/,$d' "conf/train/${preset}_demo.yaml" >"$conf/${preset}_noaug.yaml"
done

run() {  # ARM NAME mlkd-args...: time one training command
  local arm=$1 name=$2; shift 2
  mkdir -p "$work/$arm"
  SECONDS=0
  mlkd "$@" >"$work/$arm/$name.log" 2>&1
  echo "$arm $name: ${SECONDS} s"
}

for arm in noaug aug; do
  noise=""
  [ "$arm" = aug ] && noise="--noise-set $corpus/noise"
  teachers=""
  for lang in $langs; do
    # shellcheck disable=SC2086
    run "$arm" "teacher_$lang" train-teacher --data "$data" --lang "$lang" --model-config conf/model/demo.yaml \
      --train-config "$conf/teacher_$arm.yaml" --max-steps "$(steps 1900)" $noise "$work/$arm/teacher_$lang"
    teachers="$teachers $work/$arm/teacher_$lang"
  done
  # shellcheck disable=SC2086
  run "$arm" student_kd distill --data "$data" --model-config conf/model/student_demo.yaml --kd-config conf/kd/demo.yaml \
    --lid-weight 3 --train-config "$conf/distill_$arm.yaml" --max-steps "$(steps 1500)" $noise $teachers \
    "$work/$arm/student_kd"
  # shellcheck disable=SC2086
  run "$arm" student finetune --data "$data" --init "$work/$arm/student_kd" --lid-weight 3 \
    --train-config "$conf/finetune_$arm.yaml" --max-steps "$(steps 1500)" $noise "$work/$arm/student"
  models="$teachers $work/$arm/student"
  if [ "$arm" = aug ]; then
    # shellcheck disable=SC2086
    run "$arm" baseline finetune --data "$data" --model-config conf/model/student_demo.yaml --lid-weight 3 \
      --train-config "$conf/baseline_$arm.yaml" --max-steps "$(steps 3000)" $noise "$work/$arm/baseline"
    models="$models $work/$arm/baseline"
  fi
  for model in $models; do
    for set in test test_noisy test_engine; do
      mlkd decode "$model" "$data/manifests/${set}_cuts.jsonl.gz" --name "$set" >>"$work/decode.log" 2>&1
    done
  done
done
python bench/augment.py "$work"
