#!/usr/bin/env bash
# The mlkd recipe on the embedded eSpeak NG corpus, stage by stage (Kaldi style).
#   local/run.sh [--stage N] [--stop-stage M] [--langs "en de es it ru"] [--size demo] [--preset demo]
set -euo pipefail

stage=0
stop_stage=100
langs="en de es it ru"
size=demo
seed=0
nj=2
corpus=data/corpus
data=data
tokenizer=char   # characters: BPE-500 stays on the blank plateau with 1 h per language
vocab_size=500
preset=demo      # conf/model/{,student_}$preset.yaml, conf/train/{teacher,distill,finetune,baseline}_$preset.yaml
exp=exp
lid_weight=3     # λ of the language-ID loss (distill, finetune, baseline)

. local/parse_options.sh

echo "$0 $*" >&2
run() { echo "+ $*" >&2; "$@"; }

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  # Stage 0: synthesize the corpus (Kaldi data dirs train/dev/test, all languages).
  run local/make_corpus.sh --langs "$langs" --size "$size" --seed "$seed" -j "$nj" "$corpus"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  # Stage 1: validate, manifests, fbank cache, multilingual tokenizer.
  run mlkd prepare --tokenizer "$tokenizer" --vocab-size "$vocab_size" -j "$nj" \
    "$corpus/train" "$corpus/dev" "$corpus/test" "$data"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  # Stage 2: one Conformer-CTC teacher per language.
  for lang in $langs; do
    run mlkd train-teacher --data "$data" --lang "$lang" --model-config "conf/model/$preset.yaml" \
      --train-config "conf/train/teacher_$preset.yaml" "$exp/teacher_$lang"
  done
  echo "teacher dev CER (greedy, held-out voices):" >&2
  for lang in $langs; do
    printf '  %s  %s\n' "$lang" "$(grep -o '"cer": [0-9.]*' "$exp/teacher_$lang/final_metrics.json")" >&2
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  # Stage 3: distill every teacher into one multilingual student (each utterance from its own teacher).
  teachers=""
  for lang in $langs; do teachers="$teachers $exp/teacher_$lang"; done
  run mlkd distill --data "$data" --model-config "conf/model/student_$preset.yaml" --kd-config "conf/kd/$preset.yaml" \
    --lid-weight "$lid_weight" --train-config "conf/train/distill_$preset.yaml" $teachers "$exp/student_kd"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  # Stage 4: language-adaptive fine-tuning of the student: CTC + λ·CE(language id).
  run mlkd finetune --data "$data" --init "$exp/student_kd" --lid-weight "$lid_weight" --train-config "conf/train/finetune_$preset.yaml" \
    "$exp/student"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # Stage 5: the no-KD baseline: the same student and stage from scratch, for distill + finetune updates.
  run mlkd finetune --data "$data" --model-config "conf/model/student_$preset.yaml" --lid-weight "$lid_weight" \
    --train-config "conf/train/baseline_$preset.yaml" "$exp/baseline"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  # Stage 6: decode the test set with every model (teachers: their own language's utterances).
  for model in $(for lang in $langs; do echo "$exp/teacher_$lang"; done) "$exp/student" "$exp/baseline"; do
    run mlkd decode "$model" "$data/manifests/test_cuts.jsonl.gz"
  done
  for method in ctc-prefix-beam wfst; do
    run mlkd decode "$exp/student" "$data/manifests/test_cuts.jsonl.gz" --method "$method"
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  # Stage 7: score every decode dir, then one table: teachers vs student vs no-KD baseline.
  dirs=""
  for lang in $langs; do dirs="$dirs $exp/teacher_$lang/decode_test_ctc-greedy"; done
  dirs="$dirs $exp/student/decode_test_ctc-greedy $exp/baseline/decode_test_ctc-greedy"
  run mlkd score $dirs $exp/student/decode_test_ctc-prefix-beam $exp/student/decode_test_wfst-lm3
  run mlkd score --compare --metric cer $dirs
fi
