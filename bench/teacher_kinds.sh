#!/usr/bin/env bash
# Students distilled from teachers of each kind on the demo corpus (eSpeak NG, 1 h per language):
#   (a) white-box mlkd teachers: layers + posteriors + transcripts (conf/kd/demo.yaml)
#   (b) the same teachers exported with `mlkd export`, used only as sherpa-onnx black boxes:
#       sequence-level KD (their transcripts as CTC targets) + CTC on the references
#   (c) a Hugging Face Wav2Vec2ForCTC teacher for --hf-lang (trained from a config here for
#       --hf-minutes, bench/hf_teacher.py) beside the mlkd teachers of the other languages
#   (d) the no-KD baseline (the same student from scratch, same number of updates)
# Prints per-language test CER of every model and each student's training throughput; each
# command's output goes to WORK/<name>.log.
#   bench/teacher_kinds.sh [--langs "en ru"] [--hf-lang ru] [--teacher-steps 600] [--student-steps 400]
#                          [--hf-minutes 12] [--work bench/work/teacher_kinds]
set -euo pipefail
cd "$(dirname "$0")/.."
langs="en ru"; hf_lang=ru; teacher_steps=600; student_steps=400; hf_minutes=12; work=bench/work/teacher_kinds
while [ $# -gt 0 ]; do
  case "$1" in
    --langs) langs=$2;; --hf-lang) hf_lang=$2;; --teacher-steps) teacher_steps=$2;;
    --student-steps) student_steps=$2;; --hf-minutes) hf_minutes=$2;; --work) work=$2;;
    *) echo "$0: unknown option $1" >&2; exit 1;;
  esac
  shift 2
done
export PATH="$PWD/.venv/bin:$PATH"
data=$work/data exp=$work/exp
mkdir -p "$work"
SECONDS=0
local/run.sh --stop-stage 1 --size demo-same-hour --langs "$langs" --corpus "$work/corpus" --data "$data" --exp "$exp" >"$work/prepare.log" 2>&1
echo "corpus + prepare: ${SECONDS} s"
test_cuts=$data/manifests/test_cuts.jsonl.gz
mlkd_teachers="" onnx_teachers="" mixed_teachers=""
for lang in $langs; do
  SECONDS=0
  mlkd train-teacher --data "$data" --lang "$lang" --model-config conf/model/demo.yaml \
    --train-config conf/train/teacher_demo.yaml --max-steps "$teacher_steps" "$exp/teacher_$lang" >"$work/teacher_$lang.log" 2>&1
  mlkd export "$exp/teacher_$lang" -o "$exp/onnx_$lang" >>"$work/teacher_$lang.log" 2>&1
  mlkd decode "$exp/teacher_$lang" "$test_cuts" >>"$work/teacher_$lang.log" 2>&1
  echo "teacher $lang (mlkd, $teacher_steps updates) + export + decode: ${SECONDS} s"
  mlkd_teachers="$mlkd_teachers $exp/teacher_$lang"
  onnx_teachers="$onnx_teachers $lang=onnx:$exp/onnx_$lang"
  if [ "$lang" = "$hf_lang" ]; then
    python bench/hf_teacher.py "$data" "$lang" "$exp/hf_$lang" --minutes "$hf_minutes" 2>"$work/hf_$lang.log" | tail -1
    mixed_teachers="$mixed_teachers $lang=hf:$exp/hf_$lang"
  else
    mixed_teachers="$mixed_teachers $exp/teacher_$lang"
  fi
done
mlkd teacher-info --data "$data" "$hf_lang=hf:$exp/hf_$hf_lang"
mlkd teacher-info --data "$data" "$hf_lang=onnx:$exp/onnx_$hf_lang"

# black boxes serve transcripts only: sequence-level KD and CTC on the references
cat >"$work/kd_black_box.yaml" <<YAML
ctc_weight: 1.0
sequence_weight: 1.0
targets: cached
YAML
student() {  # NAME KD_YAML TEACHERS...
  local name=$1 kd=$2; shift 2
  SECONDS=0
  mlkd distill --data "$data" --model-config conf/model/student_demo.yaml --kd-config "$kd" --lid-weight 3 \
    --train-config conf/train/distill_demo.yaml --max-steps "$student_steps" "$@" "$exp/$name" >"$work/$name.log" 2>&1
  mlkd decode "$exp/$name" "$test_cuts" >>"$work/$name.log" 2>&1
  echo "$name: ${SECONDS} s, $(python -c "import sys; sys.path.insert(0, 'bench'); from common import train_speed; \
from pathlib import Path; print(f'{train_speed(Path(sys.argv[1])):.1f} s audio/s')" "$exp/$name")"
}
# shellcheck disable=SC2086
student student_mlkd conf/kd/demo.yaml $mlkd_teachers
# shellcheck disable=SC2086
student student_onnx "$work/kd_black_box.yaml" $onnx_teachers
# shellcheck disable=SC2086
student student_hf conf/kd/demo.yaml $mixed_teachers
SECONDS=0
mlkd finetune --data "$data" --model-config conf/model/student_demo.yaml --lid-weight 3 \
  --train-config conf/train/distill_demo.yaml --max-steps "$student_steps" "$exp/baseline" >"$work/baseline.log" 2>&1
mlkd decode "$exp/baseline" "$test_cuts" >>"$work/baseline.log" 2>&1
echo "baseline: ${SECONDS} s, $(python -c "import sys; sys.path.insert(0, 'bench'); from common import train_speed; \
from pathlib import Path; print(f'{train_speed(Path(sys.argv[1])):.1f} s audio/s')" "$exp/baseline")"
dirs=""
for model in $mlkd_teachers "$exp/student_mlkd" "$exp/student_onnx" "$exp/student_hf" "$exp/baseline"; do
  dirs="$dirs $model/decode_test_ctc-greedy"
done
# shellcheck disable=SC2086
mlkd score --compare --metric cer --markdown $dirs
