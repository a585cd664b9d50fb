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
preset=demo      # conf/model/$preset.yaml and conf/train/teacher_$preset.yaml
exp=exp

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

echo "$0: stages up to 2 (corpus, prepare, teachers) are all this recipe has so far" >&2
