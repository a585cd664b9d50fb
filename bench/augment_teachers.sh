#!/usr/bin/env bash
# Does the demo teachers' augmentation keep clean speech? Trains each language's demo teacher with
# conf/train/teacher_demo.yaml and with the same preset without its `augment:` block, then prints
# clean dev CER (final.pt, what the trainer reports), greedy CER on test and test_noisy, and the
# augmented / not augmented ratios (bench/augment_teachers.py).
#   bench/augment_teachers.sh DATA NOISE [--langs "en ru"] [--scale 1.0] [--work bench/work/augment_teachers]
# DATA: prepared data of a demo corpus with test_noisy (`mlkd prepare ... test_noisy`), NOISE: its noise/ set.
# --scale multiplies the number of updates. Finished runs are up to date on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 noise=$2; shift 2
langs="en ru" scale=1.0 work=bench/work/augment_teachers
while [ $# -gt 0 ]; do
  case "$1" in
    --langs) langs=$2;; --scale) scale=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$work/conf"
steps=$(python -c "print(max(1, round(1900 * $scale)))")
cp conf/train/teacher_demo.yaml "$work/conf/aug.yaml"
sed '/^# Audio augmentation/,$d' conf/train/teacher_demo.yaml >"$work/conf/noaug.yaml"
for lang in $langs; do
  for arm in noaug aug; do
    exp=$work/$arm/teacher_$lang
    mkdir -p "$work/$arm"
    opts=""
    [ "$arm" = aug ] && opts="--noise-set $noise"
    SECONDS=0
    # shellcheck disable=SC2086
    mlkd train-teacher --data "$data" --lang "$lang" --model-config conf/model/demo.yaml \
      --train-config "$work/conf/$arm.yaml" --max-steps "$steps" $opts "$exp" >"$exp.log" 2>&1 || { cat "$exp.log"; exit 1; }
    echo "$arm teacher_$lang: ${SECONDS} s"
    for set in test test_noisy; do
      mlkd decode "$exp" "$data/manifests/${set}_cuts.jsonl.gz" --name "$set" >>"$work/decode.log" 2>&1
    done
  done
done
python bench/augment_teachers.py "$work" $langs
