#!/usr/bin/env bash
# Streaming: trains the demo's streaming student (conf/model/student_demo_streaming.yaml) by
# distillation from full-context teachers and fine-tuning, with the KD delay of each arm; from
# the full-context student (`finetune --init FULL --model-config STREAMING`, as many updates as
# the presets' fine-tuning); and by distillation from the full-context student as the teacher of
# every language (the first delay), then fine-tuning; then
# bench/streaming.py decodes the test set chunk by chunk at 160, 320 and 640 ms and prints CER
# against the full-context student, real-time factor, emission latency and when the language
# decision settles.
#   bench/streaming.sh --data DIR --teachers "DIR..." [--full-context DIR] [--scale 1.0] [--delays "0 80"]
#                      [--noise DIR] [--unlabeled SET] [--work bench/work/streaming]
# DATA and the teachers come from the demo recipe or bench/augment.sh (its noaug arm); without
# --full-context the full-context student is trained here too, the same way (conf/model/student_demo.yaml).
# --scale multiplies the presets' numbers of updates (max_steps of conf/train/{distill,finetune}_demo.yaml).
# Without --noise the presets' augmentation is left out (as in bench/augment.sh's noaug arm); with it, the
# presets train as in the demo recipe, augmented with that noise set; --unlabeled: the untranscribed set
# distillation also learns from (the recipe's `--unlabeled-set unlabeled`). Commands run with jemalloc
# when the system has it.
# shellcheck disable=SC2086  # option lists ($teachers, $extra) split into words on purpose
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1.0 delays="0 80" work=bench/work/streaming data="" teachers="" full="" noise="" unlabeled=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2;; --teachers) teachers=$2;; --full-context) full=$2;; --scale) scale=$2;;
    --delays) delays=$2;; --noise) noise=$2;; --unlabeled) unlabeled=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
[ -n "$data" ] && [ -n "$teachers" ] || { echo "$0: give --data and --teachers" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
. local/jemalloc.sh
steps() { python -c "print(max(1, round($(awk '/^max_steps:/ {print $2}' "conf/train/$1_demo.yaml") * $scale)))"; }
mkdir -p "$work"
# Distillation and fine-tuning as in the demo presets (attention KD off: the demo has none), without
# augmentation unless --noise gives a noise set.
extra="" kd_extra=""
if [ -n "$noise" ]; then
  cp conf/train/distill_demo.yaml "$work/distill.yaml"
  cp conf/train/finetune_demo.yaml "$work/finetune.yaml"
  extra="--noise-set $noise"
else
  sed '/^# Audio augmentation/,$d' conf/train/distill_demo.yaml >"$work/distill.yaml"
  sed '/^# Audio augmentation/,$d' conf/train/finetune_demo.yaml >"$work/finetune.yaml"
fi
if [ -n "$unlabeled" ]; then kd_extra="--unlabeled-set $unlabeled"; fi
if [ -z "$full" ]; then
  full=$work/full_context
  SECONDS=0
  mlkd distill --data "$data" --model-config conf/model/student_demo.yaml --kd-config conf/kd/demo.yaml --lid-weight 3 \
    --train-config "$work/distill.yaml" --max-steps "$(steps distill)" $extra $kd_extra $teachers "${full}_kd" >"${full}_kd.log" 2>&1
  mlkd finetune --data "$data" --init "${full}_kd" --lid-weight 3 --train-config "$work/finetune.yaml" \
    --max-steps "$(steps finetune)" $extra "$full" >"$full.log" 2>&1
  echo "full-context student: trained in ${SECONDS} s"
fi
students=""
for delay in $delays; do
  sed "s/^teacher_input:.*/&\ndelay_ms: $delay/" conf/kd/demo.yaml >"$work/kd_delay$delay.yaml"
  SECONDS=0
  mlkd distill --data "$data" --model-config conf/model/student_demo_streaming.yaml \
    --kd-config "$work/kd_delay$delay.yaml" --lid-weight 3 --train-config "$work/distill.yaml" \
    --max-steps "$(steps distill)" $extra $kd_extra $teachers "$work/kd_delay$delay" >"$work/kd_delay$delay.log" 2>&1
  mlkd finetune --data "$data" --init "$work/kd_delay$delay" --lid-weight 3 --train-config "$work/finetune.yaml" \
    --max-steps "$(steps finetune)" $extra "$work/student_delay$delay" >"$work/student_delay$delay.log" 2>&1
  echo "delay $delay ms: trained in ${SECONDS} s"
  students="$students $work/student_delay$delay"
done
SECONDS=0
mlkd finetune --data "$data" --init "$full" --model-config conf/model/student_demo_streaming.yaml --lid-weight 3 \
  --train-config "$work/finetune.yaml" --max-steps "$(steps finetune)" $extra "$work/student_from_full" \
  >"$work/student_from_full.log" 2>&1
echo "from the full-context student: trained in ${SECONDS} s"
students="$students $work/student_from_full"
# the full-context student as the streaming student's teacher (every language), then fine-tuning
SECONDS=0
sed "s/^teacher_input:.*/&\ndelay_ms: ${delays%% *}/" conf/kd/demo.yaml >"$work/kd_from_full.yaml"
mlkd distill --data "$data" --model-config conf/model/student_demo_streaming.yaml --kd-config "$work/kd_from_full.yaml" \
  --lid-weight 3 --train-config "$work/distill.yaml" --max-steps "$(steps distill)" $extra $kd_extra "$full" "$work/kd_from_full" \
  >"$work/kd_from_full.log" 2>&1
mlkd finetune --data "$data" --init "$work/kd_from_full" --lid-weight 3 --train-config "$work/finetune.yaml" \
  --max-steps "$(steps finetune)" $extra "$work/student_kd_from_full" >"$work/student_kd_from_full.log" 2>&1
echo "distilled from the full-context student: trained in ${SECONDS} s"
students="$students $work/student_kd_from_full"
python bench/streaming.py --data "$data" --full-context "$full" $students
