#!/usr/bin/env bash
# Is distillation's gain real? Trains the demo student (distill + finetune), the no-KD baseline
# (finetune from scratch, as many updates) and the pseudo-label baseline (distill with
# conf/kd/pseudo_label.yaml, as many updates) with several seeds each, on data and teachers made
# by local/run.sh (--stop-stage 2), decodes the test set greedily, and prints mean ± standard
# deviation of each language's CER and of the ratios student / baseline, student / pseudo-label
# baseline and student / mean of teachers (bench/kd_seeds.py).
#   bench/kd_seeds.sh [--data data] [--exp exp] [--langs "en de es it ru"] [--seeds "0 1 2"]
#                     [--variants "plain nopool"] [--work bench/work/kd_seeds] [--preset demo] [--noise DATA/corpus/noise]
#                     [--jobs 1]
# Variants: plain (conf/kd/<preset>.yaml, as the recipe: also on the untranscribed pool when the
# data has one), nopool (the same on the transcribed set alone) or a lever NAME (bench/kd/NAME.yaml,
# with the pool; distilled with bench/kd/NAME.train.yaml where there is one). The baselines are one
# per seed for every variant. The student's distillation and fine-tuning mix in the noise set as
# local/run.sh does (the corpus's, when DATA has one and the train config mixes in noise).
# --jobs N: N seeds at a time, each command on its share of the cores (as local/run.sh runs its jobs).
# Each command's output goes to WORK/seed<S>/<model>.log; finished runs are up to date on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=data exp=exp langs="en de es it ru" seeds="0 1 2" variants="plain nopool" work=bench/work/kd_seeds preset=demo noise="" jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2;; --exp) exp=$2;; --langs) langs=$2;; --seeds) seeds=$2;; --variants) variants=$2;;
    --work) work=$2;; --preset) preset=$2;; --noise) noise=$2;; --jobs) jobs=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
. local/jemalloc.sh
. local/mixes_noise.sh
threads=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))
lid_weight=3 finetune_lid_weight=10  # as local/run.sh
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
  OMP_NUM_THREADS=$threads mlkd "$@" >"$log" 2>&1
  local model=${*: -1}
  OMP_NUM_THREADS=$threads mlkd decode "$model" "$test_cuts" >>"$log" 2>&1
  echo "$name: ${SECONDS} s"
}

noise_opts=()
[ -n "$noise" ] || noise=$data/corpus/noise
if [ -d "$noise" ]; then noise_opts=(--noise-set "$noise"); fi
pool=()
if [ -f "$data/manifests/unlabeled_cuts.jsonl.gz" ]; then pool=(--unlabeled-set unlabeled); fi
kd_config() {  # VARIANT: its KD config
  case $1 in plain|nopool) echo "conf/kd/$preset.yaml";; *) echo "bench/kd/$1.yaml";; esac
}
train_config() {  # VARIANT: its distillation's train config
  if [ -f "bench/kd/$1.train.yaml" ]; then echo "bench/kd/$1.train.yaml"; else echo "conf/train/distill_$preset.yaml"; fi
}
noise_for() {  # TRAIN_CONFIG: the noise option, where the config mixes in noise (as local/run.sh)
  if [ ${#noise_opts[@]} -gt 0 ] && mixes_noise "$1"; then echo "${noise_opts[@]}"; fi
}
for variant in $variants; do
  [ -f "$(kd_config "$variant")" ] || { echo "$0: variant $variant: no $(kd_config "$variant")" >&2; exit 1; }
done

one_seed() {  # SEED: its two baselines and each variant's student, one command after another
  local seed=$1 out=$work/seed$1 variant extra distill_config finetune_config=conf/train/finetune_$preset.yaml
  mkdir -p "$out"
  run "seed $seed baseline" "$out/baseline.log" finetune --data "$data" --model-config "conf/model/student_$preset.yaml" \
    --lid-weight "$lid_weight" --train-config "conf/train/baseline_$preset.yaml" --seed "$seed" "$out/baseline"
  # shellcheck disable=SC2086
  run "seed $seed pseudo-label baseline" "$out/baseline_pl.log" distill --data "$data" \
    --model-config "conf/model/student_$preset.yaml" --kd-config conf/kd/pseudo_label.yaml --lid-weight "$lid_weight" \
    --train-config "conf/train/baseline_$preset.yaml" --seed "$seed" "${pool[@]}" $teachers "$out/baseline_pl"
  for variant in $variants; do
    extra=("${pool[@]}") distill_config=$(train_config "$variant")
    if [ "$variant" = nopool ]; then extra=(); fi
    # shellcheck disable=SC2086
    run "seed $seed $variant: distill" "$out/student_kd_$variant.log" distill --data "$data" \
      --model-config "conf/model/student_$preset.yaml" --kd-config "$(kd_config "$variant")" --lid-weight "$lid_weight" \
      --train-config "$distill_config" --seed "$seed" $(noise_for "$distill_config") "${extra[@]}" \
      $teachers "$out/student_kd_$variant"
    run "seed $seed $variant: finetune" "$out/student_$variant.log" finetune --data "$data" \
      --init "$out/student_kd_$variant" --lid-weight "$finetune_lid_weight" --train-config "$finetune_config" \
      --seed "$seed" $(noise_for "$finetune_config") "$out/student_$variant"
  done
}

pids=() dirs=""
for seed in $seeds; do
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  one_seed "$seed" & pids+=($!)
  dirs="$dirs baseline:$work/seed$seed/baseline baseline_pl:$work/seed$seed/baseline_pl"
  for variant in $variants; do dirs="$dirs $variant:$work/seed$seed/student_$variant"; done
done
for pid in "${pids[@]}"; do wait "$pid"; done
# shellcheck disable=SC2086
python bench/kd_seeds.py --teachers $teachers -- $dirs
