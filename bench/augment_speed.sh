#!/usr/bin/env bash
# Training throughput with the demo presets' `augment:` block against the same preset without it,
# side by side on one machine: teachers (English), then the student's distillation (English and
# Russian teachers), each arm run twice, alternating. With --before COMMIT, the teacher arms also
# run with mlkd at COMMIT (a git worktree), e.g. the on-the-fly augmentation it replaced.
# Throughput is what the trainer logs (s of audio per s, first log window left out); the one-time
# rendering of augmented copies happens before training and is reported from the log. Teachers train
# on the data's teacher_train when it has one; every command runs with jemalloc when the system has it.
#   bench/augment_speed.sh DATA NOISE [--steps 80] [--before COMMIT] [--work bench/work/augment_speed]
# DATA: prepared en+ru data of a demo corpus (`mlkd prepare`), NOISE: its noise/ set.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "$1") noise=$(realpath "$2"); shift 2
steps=80 before="" work=bench/work/augment_speed
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2;; --before) before=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
. local/jemalloc.sh
rm -rf "$work"; mkdir -p "$work/conf"
work=$(realpath "$work") root=$PWD
# The augmented arm augments every update (`during: [0.0, 1.0]`): the cost of an augmented update,
# whatever share of a run the preset augments.
for preset in teacher distill; do
  sed "s/^max_steps: .*/max_steps: $steps/; s/^valid_interval: .*/valid_interval: $steps/; s/^log_interval: .*/log_interval: 10/;
       s/^  during: .*/  during: [0.0, 1.0]/" "conf/train/${preset}_demo.yaml" >"$work/conf/${preset}_aug.yaml"
  sed '/^# Audio augmentation/,$d' "$work/conf/${preset}_aug.yaml" >"$work/conf/${preset}_noaug.yaml"
done
if [ -n "$before" ]; then
  git worktree add -f "$work/before" "$before" >/dev/null 2>&1
  trap 'git worktree remove --force "$work/before"' EXIT
fi

train_set=""
if [ -f "$data/manifests/teacher_train_cuts.jsonl.gz" ]; then train_set="--train-set teacher_train"; fi
speed() { python -c "import sys; sys.path.insert(0, 'bench'); from common import train_speed; print(f'{train_speed(__import__(\"pathlib\").Path(sys.argv[1])):.1f}')" "$1"; }
teacher() {  # NAME LANG ARM [CHECKOUT]: a teacher trained by the mlkd of CHECKOUT (default: this one)
  local exp=$work/$1 noise_opt=""
  [ "$3" = aug ] && noise_opt="--noise-set $noise"
  # shellcheck disable=SC2086
  (cd "${4:-$root}" && python -m mlkd_cli train-teacher --data "$data" --lang "$2" --model-config "$root/conf/model/demo.yaml" $train_set \
    --train-config "$work/conf/teacher_$3.yaml" $noise_opt "$exp" >"$exp.log" 2>&1)
  echo "teacher $1: $(speed "$exp") s of audio per s"
}
for round in 1 2; do
  teacher "noaug$round" en noaug
  teacher "aug$round" en aug
  if [ -n "$before" ]; then
    teacher "before_noaug$round" en noaug "$work/before"
    teacher "before_aug$round" en aug "$work/before"
  fi
done
grep -h "augmentation (en)" "$work"/aug1/log/*.log | sed 's/.*INFO \[mlkd\] /one-time: /' || true
teacher ru_aug ru aug >/dev/null
for round in 1 2; do
  for arm in noaug aug; do
    noise_opt=""
    [ "$arm" = aug ] && noise_opt="--noise-set $noise"
    exp=$work/student_$arm$round
    # shellcheck disable=SC2086
    mlkd distill --data "$data" --model-config conf/model/student_demo.yaml --kd-config conf/kd/demo.yaml --lid-weight 3 \
      --train-config "$work/conf/distill_$arm.yaml" $noise_opt "$work/aug1" "$work/ru_aug" "$exp" >"$exp.log" 2>&1
    echo "distill $arm$round: $(speed "$exp") s of audio per s"
  done
done
