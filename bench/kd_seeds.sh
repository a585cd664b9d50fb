#!/usr/bin/env bash
# Is distillation's gain real? Trains the demo student (distill + finetune), the no-KD baseline
# (finetune from scratch, as many updates) and the pseudo-label baseline (distill with
# conf/kd/pseudo_label.yaml, as many updates) with several seeds each, on data and teachers made
# by local/run.sh (--stop-stage 2), decodes the test set greedily, and prints mean ± standard
# deviation of each language's CER and of the ratios student / baseline, student / pseudo-label
# baseline and student / mean of teachers (bench/kd_seeds.py).
#   bench/kd_seeds.sh [--data data] [--exp exp] [--langs "en de es it ru"] [--seeds "0 1 2"]
#                     [--variants "plain nopool"] [--work bench/work/kd_seeds] [--preset demo] [--noise DATA/corpus/noise]
# Variants: plain (conf/kd/<preset>.yaml, as the recipe: also on the untranscribed pool when the
# data has one), nopool (the same on the transcribed set alone) or a lever NAME (bench/kd/NAME.yaml,
# with the pool). The baselines are one per seed for every variant. The student's distillation and
# fine-tuning mix in the noise set as local/run.sh does (the corpus's, when DATA has one).
# Each command's output goes to WORK/seed<S>/<model>.log; finished runs are up to date on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=data exp=exp langs="en de es it ru" seeds="0 1 2" variants="plain nopool" work=bench/work/kd_seeds preset=demo noise=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2;; --exp) exp=$2;; --langs) langs=$2;; --seeds) seeds=$2;; --variants) variants=$2;;
    --work) work=$2;; --preset) preset=$2;; --noise) noise=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
lid_weight=3   # as local/run.sh
test_cuts=$data/manifests/test_cuts.jsonl.gz
teachers=""
for lang in $langs; do
  [ -f "$exp/teacher_$lang/final.pt" ] || { echo "$0: no teacher $exp/teacher_$lang; make it with local/run.sh --stop-stage 2" >&2; exit 1; }
  teachers="$teachers $exp/teacher_$lang"
  mlkd decode "$exp/teacher_$lang" "$test_cuts" >/dev/null 2>&1
done

run() {  # NAME LOG mlkd-args...: time one training command, then decode the test set
  local name=$1 log=$2; shift 2
  SECONDS=0
  mlkd "$@" >"$log" 2>&1
  local model=${*: -1}
  mlkd decode "$model" "$test_cuts" >>"$log" 2>&1
  echo "$name: ${SECONDS} s"
}

noise_opts=()
[ -n "$noise" ] || noise=$data/corpus/noise
if [ -d "$noise" ]; then noise_opts=(--noise-set "$noise"); fi
pool=()
if [ -f "$data/manifests/unlabeled_cuts.jsonl.gz" ]; then pool=(--unlabeled-set unlabeled); fi
dirs=""
for seed in $seeds; do
  out=$work/seed$seed
  mkdir -p "$out"
  run "seed $seed baseline" "$out/baseline.log" finetune --data "$data" --model-config "conf/model/student_$preset.yaml" \
    --lid-weight "$lid_weight" --train-config "conf/train/baseline_$preset.yaml" --seed "$seed" "$out/baseline"
  # shellcheck disable=SC2086
  run "seed $seed pseudo-label baseline" "$out/baseline_pl.log" distill --data "$data" \
    --model-config "conf/model/student_$preset.yaml" --kd-config conf/kd/pseudo_label.yaml --lid-weight "$lid_weight" \
    --train-config "conf/train/baseline_$preset.yaml" --seed "$seed" "${pool[@]}" $teachers "$out/baseline_pl"
  dirs="$dirs baseline:$out/baseline baseline_pl:$out/baseline_pl"
  for variant in $variants; do
    kd=bench/kd/$variant.yaml extra=("${pool[@]}")
    case $variant in plain) kd=conf/kd/$preset.yaml;; nopool) kd=conf/kd/$preset.yaml extra=();; esac
    [ -f "$kd" ] || { echo "$0: variant $variant: no $kd" >&2; exit 1; }
    # shellcheck disable=SC2086
    run "seed $seed $variant: distill" "$out/student_kd_$variant.log" distill --data "$data" \
      --model-config "conf/model/student_$preset.yaml" --kd-config "$kd" --lid-weight "$lid_weight" \
      --train-config "conf/train/distill_$preset.yaml" --seed "$seed" "${noise_opts[@]}" "${extra[@]}" $teachers "$out/student_kd_$variant"
    run "seed $seed $variant: finetune" "$out/student_$variant.log" finetune --data "$data" \
      --init "$out/student_kd_$variant" --lid-weight "$lid_weight" --train-config "conf/train/finetune_$preset.yaml" \
      --seed "$seed" "${noise_opts[@]}" "$out/student_$variant"
    dirs="$dirs $variant:$out/student_$variant"
  done
done
# shellcheck disable=SC2086
python bench/kd_seeds.py --teachers $teachers -- $dirs
