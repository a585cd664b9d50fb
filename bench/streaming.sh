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
#                      [--work bench/work/streaming]
# DATA and the teachers come from the demo recipe or bench/augment.sh (its noaug arm); without
# --full-context the full-context student is trained here too, the same way (conf/model/student_demo.yaml).
# --scale multiplies the presets' numbers of updates (max_steps of conf/train/{distill,finetune}_demo.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=1.0 delays="0 80" work=bench/work/streaming data="" teachers="" full=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2;; --teachers) teachers=$2;; --full-context) full=$2;; --scale) scale=$2;;
    --delays) delays=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
[ -n "$data" ] && [ -n "$teachers" ] || { echo "$0: give --data and --teachers" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
steps() { python -c "print(max(1, round($(awk '/^max_steps:/ {print $2}' "conf/train/$1_demo.yaml") * $scale)))"; }
mkdir -p "$work"
# Distillation as in the demo preset, attention KD off (the demo has none), no augmentation (as
# the full-context student it is compared with).
sed '/^# Audio augmentation/,$d' conf/train/distill_demo.yaml >"$work/distill.yaml"
sed '/^# Audio augmentation/,$d' conf/train/finetune_demo.yaml >"$work/finetune.yaml"
if [ -z "$full" ]; then
  full=$work/full_context
  SECONDS=0
  # shellcheck disable=SC2086
  mlkd distill --data "$data" --model-config conf/model/student_demo.yaml --kd-config conf/kd/demo.yaml --lid-weight 3 \
    --train-config "$work/distill.yaml" --max-steps "$(steps distill)" $teachers "${full}_kd" >"${full}_kd.log" 2>&1
  mlkd finetune --data "$data" --init "${full}_kd" --lid-weight 3 --train-config "$work/finetune.yaml" \
    --max-steps "$(steps finetune)" "$full" >"$full.log" 2>&1
  echo "full-context student: trained in ${SECONDS} s"
fi
students=""
for delay in $delays; do
  sed "s/^teacher_input:.*/&\ndelay_ms: $delay/" conf/kd/demo.yaml >"$work/kd_delay$delay.yaml"
  SECONDS=0
  # shellcheck disable=SC2086
  mlkd distill --data "$data" --model-config conf/model/student_demo_streaming.yaml \
    --kd-config "$work/kd_delay$delay.yaml" --lid-weight 3 --train-config "$work/distill.yaml" \
    --max-steps "$(steps distill)" $teachers "$work/kd_delay$delay" >"$work/kd_delay$delay.log" 2>&1
  mlkd finetune --data "$data" --init "$work/kd_delay$delay" --lid-weight 3 --train-config "$work/finetune.yaml" \
    --max-steps "$(steps finetune)" "$work/student_delay$delay" >"$work/student_delay$delay.log" 2>&1
  echo "delay $delay ms: trained in ${SECONDS} s"
  students="$students $work/student_delay$delay"
done
SECONDS=0
mlkd finetune --data "$data" --init "$full" --model-config conf/model/student_demo_streaming.yaml --lid-weight 3 \
  --train-config "$work/finetune.yaml" --max-steps "$(steps finetune)" "$work/student_from_full" \
  >"$work/student_from_full.log" 2>&1
echo "from the full-context student: trained in ${SECONDS} s"
students="$students $work/student_from_full"
# the full-context student as the streaming student's teacher (every language), then fine-tuning
SECONDS=0
sed "s/^teacher_input:.*/&\ndelay_ms: ${delays%% *}/" conf/kd/demo.yaml >"$work/kd_from_full.yaml"
mlkd distill --data "$data" --model-config conf/model/student_demo_streaming.yaml --kd-config "$work/kd_from_full.yaml" \
  --lid-weight 3 --train-config "$work/distill.yaml" --max-steps "$(steps distill)" "$full" "$work/kd_from_full" \
  >"$work/kd_from_full.log" 2>&1
mlkd finetune --data "$data" --init "$work/kd_from_full" --lid-weight 3 --train-config "$work/finetune.yaml" \
  --max-steps "$(steps finetune)" "$work/student_kd_from_full" >"$work/student_kd_from_full.log" 2>&1
echo "distilled from the full-context student: trained in ${SECONDS} s"
students="$students $work/student_kd_from_full"
# shellcheck disable=SC2086
python bench/streaming.py --data "$data" --full-context "$full" $students
