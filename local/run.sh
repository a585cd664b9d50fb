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
if [ $# -gt 0 ]; then
  echo "$0: unexpected argument '$1'; options take one value each, so quote lists: --langs \"en de\"" >&2
  exit 1
fi
. local/cmd.sh

echo "$0 $*" >&2
after=""   # the previous stage's job id (cmd=slurm)

# step NAME [ITEMS] -- MLKD_ARGS...: one stage, here or as a SLURM job; with ITEMS, once per
# item with {item} replaced (a job array under SLURM).
step() {
  local name=$1 items=""; shift
  if [ "$1" != "--" ]; then items=$1; shift; fi
  shift
  if [ "$cmd" = slurm ]; then
    # shellcheck disable=SC2086
    after=$(mlkd slurm --name "$name" $slurm_opts ${after:+--after "$after"} ${items:+--array "$items"} \
      --submit "$exp" -- "$@")
    echo "+ [slurm job $after] mlkd $*" >&2
  elif [ -n "$items" ]; then
    for item in $items; do
      local args=()
      for a in "$@"; do args+=("${a//\{item\}/$item}"); done
      echo "+ mlkd ${args[*]}" >&2
      mlkd "${args[@]}"
    done
  else
    echo "+ mlkd $*" >&2
    mlkd "$@"
  fi
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  # Stage 0: synthesize the corpus (Kaldi data dirs train/dev/test, all languages); always here.
  echo "+ local/make_corpus.sh" >&2
  local/make_corpus.sh --langs "$langs" --size "$size" --seed "$seed" -j "$nj" "$corpus"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  # Stage 1: validate, manifests, fbank cache, multilingual tokenizer.
  step prepare -- prepare --tokenizer "$tokenizer" --vocab-size "$vocab_size" -j "$nj" \
    "$corpus/train" "$corpus/dev" "$corpus/test" "$data"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  # Stage 2: one Conformer-CTC teacher per language.
  step teachers "$langs" -- train-teacher --data "$data" --lang "{item}" --model-config "conf/model/$preset.yaml" \
    --train-config "conf/train/teacher_$preset.yaml" "$exp/teacher_{item}"
fi

teachers=""
for lang in $langs; do teachers="$teachers $exp/teacher_$lang"; done

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  # Stage 3: distill every teacher into one multilingual student (each utterance from its own teacher).
  # shellcheck disable=SC2086
  step distill -- distill --data "$data" --model-config "conf/model/student_$preset.yaml" \
    --kd-config "conf/kd/$preset.yaml" --lid-weight "$lid_weight" --train-config "conf/train/distill_$preset.yaml" \
    $teachers "$exp/student_kd"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  # Stage 4: language-adaptive fine-tuning of the student: CTC + λ·CE(language id).
  step finetune -- finetune --data "$data" --init "$exp/student_kd" --lid-weight "$lid_weight" \
    --train-config "conf/train/finetune_$preset.yaml" "$exp/student"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  # Stage 5: the no-KD baseline: the same student and stage from scratch, for distill + finetune updates.
  step baseline -- finetune --data "$data" --model-config "conf/model/student_$preset.yaml" \
    --lid-weight "$lid_weight" --train-config "conf/train/baseline_$preset.yaml" "$exp/baseline"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  # Stage 6: decode the test set with every model (a teacher: its own language's utterances),
  # and with the student also by prefix beam and WFST (lexicon + 3-gram).
  step decode "$teachers $exp/student $exp/baseline" -- decode "{item}" "$data/manifests/test_cuts.jsonl.gz"
  step decode-beam "ctc-prefix-beam wfst" -- decode "$exp/student" "$data/manifests/test_cuts.jsonl.gz" \
    --method "{item}"
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  # Stage 7: score every decode dir, then one table: teachers vs student vs no-KD baseline.
  dirs=""
  for model in $teachers $exp/student $exp/baseline; do dirs="$dirs $model/decode_test_ctc-greedy"; done
  # shellcheck disable=SC2086
  step score -- score $dirs "$exp/student/decode_test_ctc-prefix-beam" "$exp/student/decode_test_wfst-lm3"
  # shellcheck disable=SC2086
  step compare -- score --compare --metric cer $dirs
fi

if [ "$cmd" = slurm ]; then
  echo "$0: submitted; the last job ($after) prints the table into $exp/slurm/log/compare.$after.out" >&2
fi
