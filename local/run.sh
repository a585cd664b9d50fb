#!/usr/bin/env bash
# The mlkd recipe on the embedded eSpeak NG corpus, stage by stage (Kaldi style).
#   local/run.sh [--stage N] [--stop-stage M] [--langs "en de es it ru"] [--size demo]
# Where stages run is decided by local/cmd.sh; what runs is decided here.
set -euo pipefail

stage=0
stop_stage=100
langs="en de es it ru"
size=demo
seed=0
nj=2
corpus=data/corpus
data=data
tokenizer=bpe
vocab_size=500

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

echo "$0: stages up to 1 (corpus, prepare) are all this recipe has so far; prepared data is in $data" >&2
