#!/usr/bin/env bash
# The mlkd recipe on the embedded eSpeak NG corpus, stage by stage (Kaldi style). It ends by printing
# and writing $exp/RESULTS.md: the command, commit, machine, each stage's wall time and the results.
#   local/run.sh [--stage N] [--stop-stage M] [--langs "en de es it ru"] [--size demo] [--seed 0]
#                [--corpus data/corpus] [--data data] [--exp exp] [--tokenizer char] [--preset demo]
#                [--noise DIR] [--unlabeled unlabeled] [--pl-baseline true] [--streaming false]
#                [--max-jobs-run 2] [--nj 2]        (--help: every option and its default)
# It runs from any directory; relative paths are relative to the recipe (the directory above local/).
set -euo pipefail

readonly command_line="$0$([ $# -eq 0 ] || printf ' %q' "$@")"
echo "$command_line" >&2   # the command line as given (Kaldi style)
readonly script_path="$(realpath "$0")"  # for --help, which reads the defaults below
cd "$(dirname "$script_path")/.."

stage=0
stop_stage=7     # stages 0..7, below
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
lid_weight=3     # λ of the language-ID loss in distillation and the baselines
finetune_lid_weight=10  # λ of the language-ID loss in the student's fine-tuning (each λ chosen on dev: bench/README.md)
max_false_reject=0.01  # stage 6: the share of trained-language dev utterances the unknown-language threshold may flag
noise=""         # noise set for augmentation in every training stage (default: the corpus's noise/)
unlabeled=unlabeled  # the untranscribed set distillation also learns from, when prepared ("": none)
pl_baseline=true # also the pseudo-label baseline (stage 5): CTC on the teachers' transcripts, no layer or posterior KD
streaming=false  # true: also a streaming student, fine-tuned from the student (conf/model/student_${preset}_streaming.yaml)
max_jobs_run=2   # cmd=local: mlkd commands at once (teachers, decodes, baselines beside them), each on its share of the cores
dry_run=false    # cmd=slurm: write every job script and $exp/slurm/jobs.tsv (job, script, the jobs it waits for); submit nothing

. local/parse_options.sh
if [ $# -gt 0 ]; then
  echo "$0: unexpected argument '$1'; options take one value each, so quote lists: --langs \"en de\"" >&2
  exit 1
fi
. local/cmd.sh
. local/jemalloc.sh
conditions="test_noisy test_engine"   # test sets besides test: every model is decoded and scored on each
teacher_set=teacher_train             # the teachers' own training data, when the corpus has it (else: train)

# Every input is checked before any stage starts; a problem is one line naming the option.
die() { echo "$0: $*" >&2; exit 1; }
runs() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }  # does stage $1 run?

# The files stages 2-5 read for --preset.
check_preset() {
  local f pl=""
  if [ "$pl_baseline" = true ]; then pl=conf/kd/pseudo_label.yaml; fi
  for f in conf/model/$preset.yaml $student_config $streaming_config conf/kd/$preset.yaml $pl \
           conf/train/{teacher,distill,finetune,baseline}_$preset.yaml; do
    if [ ! -f "$f" ]; then
      local known
      known=$(cd conf/train && ls teacher_*.yaml | sed 's/^teacher_//; s/\.yaml$//' | tr '\n' ' ')
      die "--preset '$preset': $f not found; presets: ${known% }"
    fi
  done
}

# Stage 0 synthesizes the corpus: each language must be one the builder speaks.
check_corpus_langs() {
  python - "$0" $langs <<'EOF'
import sys
from mlkd_cli.recipes.corpus.text import LANGUAGES
script, langs = sys.argv[1], sys.argv[2:]
unknown = [lang for lang in langs if lang not in LANGUAGES]
if unknown:
    sys.exit(f"{script}: --langs: the corpus builder has no language {' '.join(unknown)}; it has: {' '.join(LANGUAGES)}")
EOF
}

# Stage 1 prepares the corpus: it must exist and, where it says (utt2lang), hold every language.
check_corpus() {
  local train=$corpus/train lang
  [ -d "$train" ] || die "no corpus in --corpus $corpus ($train not found); make it with --stage 0"
  [ -f "$train/utt2lang" ] || return 0
  for lang in $langs; do
    awk -v lang="$lang" '$2 == lang { found = 1; exit } END { exit !found }' "$train/utt2lang" ||
      die "--langs: no $lang utterances in $train/utt2lang; drop it from --langs, or make the corpus with it (--stage 0)"
  done
}

# Stages 2-6 read the prepared data: it must exist and hold training utterances of every language.
check_data() {
  local cuts=$data/manifests/train_cuts.jsonl.gz
  [ -f "$cuts" ] || die "no prepared data in --data $data ($cuts not found); make it with \`mlkd prepare\`, or start at --stage 0"
  python - "$0" "$cuts" $langs <<'EOF'
import gzip, json, sys
script, cuts, langs = sys.argv[1], sys.argv[2], sys.argv[3:]
with gzip.open(cuts, "rt", encoding="utf-8") as f:
    found = {cut["supervisions"][0].get("language") for cut in map(json.loads, f) if cut["supervisions"]}
missing = [lang for lang in langs if lang not in found]
if missing:
    sys.exit(f"{script}: --langs: no {' '.join(missing)} utterances in {cuts} (it has: {' '.join(sorted(map(str, found)))}); "
             "drop them from --langs, or prepare data with them")
EOF
}

[[ $stage =~ ^[0-7]$ ]] || die "--stage must be a stage number 0..7, got '$stage'"
[[ $stop_stage =~ ^[0-7]$ ]] || die "--stop-stage must be a stage number 0..7, got '$stop_stage'"
[ "$stop_stage" -ge "$stage" ] || die "--stop-stage $stop_stage is before --stage $stage, so nothing would run"
[[ $streaming =~ ^(true|false)$ ]] || die "--streaming must be true or false, got '$streaming'"
[[ $pl_baseline =~ ^(true|false)$ ]] || die "--pl-baseline must be true or false, got '$pl_baseline'"
[[ $max_jobs_run =~ ^[1-9][0-9]*$ ]] || die "--max-jobs-run must be a positive number, got '$max_jobs_run'"
[[ $dry_run =~ ^(true|false)$ ]] || die "--dry-run must be true or false, got '$dry_run'"
if [ "$dry_run" = true ] && [ "$cmd" != slurm ]; then
  die "--dry-run true writes a SLURM job graph: run it as MLKD_CMD=slurm local/run.sh --dry-run true ..."
fi
if [ "$max_jobs_run" -gt 1 ] && (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501 )); then
  die "--max-jobs-run $max_jobs_run needs bash 5.1 or later (this is $BASH_VERSION); use --max-jobs-run 1"
fi
student_config=conf/model/student_$preset.yaml
streaming_config=""
if [ "$streaming" = true ]; then streaming_config=conf/model/student_${preset}_streaming.yaml; fi
[ -n "${langs//[[:space:]]/}" ] || die "--langs is empty; give at least one language, e.g. --langs \"en de\""
if runs 2 || runs 3 || runs 4 || runs 5; then check_preset; fi
if [ "$stage" -eq 0 ]; then
  check_corpus_langs
elif [ "$stage" -eq 1 ]; then
  check_corpus
elif [ "$stage" -ge 2 ] && [ "$stage" -le 6 ]; then
  check_data
fi

noise_opts=""   # without a noise set, training mixes in babble and simulated rooms only
if [ -n "$noise" ]; then
  [ -f "$noise/wav.scp" ] || [ -f "$noise" ] || die "--noise $noise: no noise set there (a dir with wav.scp, or an lhotse manifest)"
  noise_opts="--noise-set $noise"
elif [ -f "$corpus/noise/wav.scp" ] || runs 0; then
  noise_opts="--noise-set $corpus/noise"   # stage 0 writes it
fi

# The noise option for a train config: only one that mixes in noise reads a noise set (mlkd refuses
# a --noise-set that would go unused).
. local/mixes_noise.sh
noise_for() {
  if [ -n "$noise_opts" ] && mixes_noise "$1"; then echo "$noise_opts"; fi
}

# cmd=slurm: each job's id by step name (its name on a dry run), for the jobs that wait for it.
declare -A job_id=()
if [ "$cmd" = slurm ]; then
  case $(realpath -m "$exp")/ in
    /tmp/*|/var/tmp/*|/dev/shm/*)
      echo "$0: warning: --exp $exp is on a node-local filesystem; the cluster's nodes will not see it: put it on shared storage" >&2;;
  esac
  if [ "$dry_run" = true ]; then mkdir -p "$exp/slurm" && : >"$exp/slurm/jobs.tsv"; fi
fi

# Each stage's wall time (cmd=local) goes to $exp/stage_times.tsv; the run ends with $exp/RESULTS.md.
times=$exp/stage_times.tsv
begin() { started=$SECONDS; }
finished() { record "$1" $((SECONDS - started)); }  # STAGE: record its wall time
record() {  # STAGE SECONDS [beside:WAIT]: it ran beside other stages, and the run then waited WAIT s for it
  if [ "$cmd" = local ]; then
    mkdir -p "$exp"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(date -u '+%Y-%m-%d %H:%M UTC')" "${3:-}" >>"$times"
  fi
}

# cmd=local runs up to $max_jobs_run mlkd commands at once, as Kaldi's run.pl does: a stage's items
# (teachers, decodes) side by side, and the baselines, which need no student, beside stages 2-4.
# Each command gets its share of the cores as torch threads (on 2 cores, two 1-thread teachers
# side by side trained 1.47 times as fast as one after the other with 2 threads: bench/README.md);
# one that runs alone gets them all. A command beside others writes its output to $exp/log/NAME.log.
cores=$(nproc)
share=$(( cores / max_jobs_run > 0 ? cores / max_jobs_run : 1 ))
declare -A job_name=() job_log=() job_start=()
foreground=""  # the pid of here's command, while it runs
trap 'if [ ${#job_name[@]} -gt 0 ] || [ -n "$foreground" ]; then kill $foreground "${!job_name[@]}" 2>/dev/null || true; fi' EXIT
launch() {  # NAME -- MLKD_ARGS...: in the background once a slot is free
  local name=$1; shift 2
  while [ ${#job_name[@]} -ge "$max_jobs_run" ]; do reap; done
  local log=$exp/log/$name.log
  mkdir -p "$exp/log"
  echo "+ mlkd $* >$log" >&2
  OMP_NUM_THREADS=$share mlkd "$@" >"$log" 2>&1 &
  job_name[$!]=$name job_log[$!]=$log job_start[$!]=$SECONDS
}
reap() {  # waits for one background command
  local pid status=0
  wait -n -p pid "${!job_name[@]}" || status=$?
  ended "$pid" "$status"
}
ended() {  # PID STATUS: a background command has ended; a failed one stops the run and the others
  local pid=$1 status=$2
  local name=${job_name[$pid]} log=${job_log[$pid]} seconds=$((SECONDS - job_start[$pid]))
  unset "job_name[$pid]" "job_log[$pid]" "job_start[$pid]"
  if [ "$status" -ne 0 ]; then
    if [ ${#job_name[@]} -gt 0 ] || [ -n "$foreground" ]; then kill $foreground "${!job_name[@]}" 2>/dev/null || true; wait || true; fi
    tail -n 5 "$log" >&2
    die "$name failed (exit $status); its log: $log"
  fi
  echo "done: $name (${seconds} s)" >&2
  case $name in baseline|baseline_pl) baseline_seconds=$((baseline_seconds + seconds));; esac
}
reap_ended() {  # reaps the background commands that have ended, without waiting for the others
  local pid running
  running=" $(jobs -rp | tr '\n' ' ') "
  for pid in "${!job_name[@]}"; do
    if [[ $running != *" $pid "* ]]; then reap; fi
  done
}
drain() {  # [KEEP]: waits for every background command but those whose names match the pattern KEEP
  local pid
  while :; do
    # shellcheck disable=SC2053
    for pid in "${!job_name[@]}"; do [[ ${job_name[$pid]} != ${1:-} ]] && { reap; continue 2; }; done
    return 0
  done
}

# step NAME [ITEMS] [--after "STEP..."] -- MLKD_ARGS...: one stage, here or as a SLURM job; with
# ITEMS, once per item with {item} replaced (a job array under SLURM; side by side here). A SLURM
# job waits for the jobs of the steps it reads (--after; here the order of the stages does that).
step() {
  local name=$1 items="" deps=""; shift
  if [ "$1" != "--" ] && [ "$1" != "--after" ]; then items=$1; shift; fi
  if [ "$1" = "--after" ]; then deps=$2; shift 2; fi
  shift
  if [ "$cmd" = slurm ]; then
    slurm_job "$name" "$items" "$deps" "$@"
  elif [ -n "$items" ]; then
    local side_by_side=false
    if [ "$max_jobs_run" -gt 1 ] && [ "$(wc -w <<<"$items")" -gt 1 ]; then side_by_side=true; else launch_queued; fi
    for item in $items; do
      local args=()
      for a in "$@"; do args+=("${a//\{item\}/$item}"); done
      if [ "$side_by_side" = true ]; then launch "$name.$(basename "$item")" -- "${args[@]}"; else here "${args[@]}"; fi
    done
    if [ "$side_by_side" = true ]; then
      launch_queued
      drain 'baseline*'
    fi
  else
    here "$@"
  fi
}
slurm_job() {  # NAME ITEMS DEPS MLKD_ARGS...: training on train_cmd's resources, the rest on cpu_cmd's
  local name=$1 items=$2 deps=$3 dep opts=$cpu_cmd after=() waits=""; shift 3
  case $1 in train-teacher|distill|finetune) opts=$train_cmd;; esac
  for dep in $deps; do
    if [ -n "${job_id[$dep]:-}" ]; then after+=(--after "${job_id[$dep]}"); waits="$waits $dep"; fi
  done
  if [ "$dry_run" = true ]; then
    # shellcheck disable=SC2086
    mlkd slurm --name "$name" $opts ${items:+--array "$items"} "$exp" -- "$@" >/dev/null
    job_id[$name]=$name
    printf '%s\t%s\t%s\n' "$name" "$exp/slurm/$name.sbatch" "${waits# }" >>"$exp/slurm/jobs.tsv"
    echo "+ [slurm job $name, after:${waits:- none}] mlkd $*" >&2
  else
    # shellcheck disable=SC2086
    job_id[$name]=$(mlkd slurm --name "$name" $opts "${after[@]}" ${items:+--array "$items"} --submit "$exp" -- "$@")
    echo "+ [slurm job ${job_id[$name]}] mlkd $*" >&2
  fi
}
# A command that is off the critical path (a baseline) waits in $queued for the slot a stage's
# items leave free: after them, so that they start first; beside a command of the critical path
# (here), as soon as a background one ends.
queued=()
launch_queued() {
  if [ ${#queued[@]} -gt 0 ]; then launch "${queued[@]}"; queued=(); fi
}
here() {  # MLKD_ARGS...: in the foreground, in a free slot, on the cores no background command uses
  reap_ended
  while [ ${#job_name[@]} -ge "$max_jobs_run" ]; do reap; done
  if [ $(( ${#job_name[@]} + 1 )) -lt "$max_jobs_run" ]; then launch_queued; fi  # leaving this command a slot
  echo "+ mlkd $*" >&2
  if [ ${#job_name[@]} -eq 0 ]; then mlkd "$@"; return; fi
  local free=$(( cores - share * ${#job_name[@]} )) pid status
  OMP_NUM_THREADS=$(( free > 0 ? free : 1 )) mlkd "$@" &
  foreground=$!
  while :; do  # until it ends; a background command that ends first leaves its slot to the queued one
    status=0
    wait -n -p pid "$foreground" "${!job_name[@]}" || status=$?
    if [ "$pid" = "$foreground" ]; then
      foreground=""
      [ "$status" -eq 0 ] || exit "$status"
      return 0
    fi
    ended "$pid" "$status"
    launch_queued
  done
}

if runs 0 && [ "$dry_run" = true ]; then
  echo "$0: dry run: stage 0 (the corpus, made here, not by a job) is skipped" >&2
elif runs 0; then
  begin
  # Stage 0: synthesize the corpus (Kaldi data dirs train/dev/test, all languages); always here.
  echo "+ local/make_corpus.sh" >&2
  local/make_corpus.sh --langs "$langs" --size "$size" --seed "$seed" -j "$nj" "$corpus"
  finished 0
fi

if runs 1; then
  begin
  # Stage 1: validate, manifests, fbank cache, multilingual tokenizer; also the teachers' own
  # training set (whose text then trains the tokenizer), the untranscribed pool, the
  # unseen-language sets and the test conditions (noisy, held-out engine) when the corpus has them.
  extra_sets="" tokenizer_set=train
  for set in $teacher_set unlabeled dev_unseen test_unseen $conditions; do
    if [ -d "$corpus/$set" ]; then extra_sets="$extra_sets $corpus/$set"; fi
  done
  if [ -d "$corpus/$teacher_set" ]; then tokenizer_set=$teacher_set; fi
  # shellcheck disable=SC2086
  step prepare -- prepare --tokenizer "$tokenizer" --vocab-size "$vocab_size" --train-set "$tokenizer_set" -j "$nj" \
    "$corpus/train" "$corpus/dev" "$corpus/test" $extra_sets "$data"
  finished 1
fi

manifests=$data/manifests
# Is set $1 prepared, or will stage 1 of this run prepare it? (A SLURM graph is submitted before it runs.)
prepared() { [ -f "$manifests/$1_cuts.jsonl.gz" ] || { runs 1 && [ -d "$corpus/$1" ]; }; }
teachers=""
for lang in $langs; do teachers="$teachers $exp/teacher_$lang"; done
teacher_sets=""   # the teachers learn from their own set when there is one
if prepared "$teacher_set"; then teacher_sets="--train-set $teacher_set"; fi
unlabeled_sets=""
if [ -n "$unlabeled" ] && prepared "$unlabeled"; then unlabeled_sets="--unlabeled-set $unlabeled"; fi
baselines="$exp/baseline"
if [ "$pl_baseline" = true ]; then baselines="$baselines $exp/baseline_pl"; fi
# The teachers that decode set $1: those whose language the corpus's set has (all when it does
# not say); with the student and the baselines, its decoders.
condition_teachers() {
  local lang list=""
  for lang in $langs; do
    if [ ! -f "$corpus/$1/utt2lang" ] || awk -v l="$lang" '$2 == l { f = 1; exit } END { exit !f }' "$corpus/$1/utt2lang"; then
      list="$list $exp/teacher_$lang"
    fi
  done
  echo "${list# }"
}
decoders() { echo "$(condition_teachers "$1") $exp/student $baselines"; }

# Stage 5's commands. The no-KD baseline: the same student and stage from scratch, for distill +
# finetune updates. The pseudo-label baseline: the same student and updates, distilled with
# sequence-level KD alone (conf/kd/pseudo_label.yaml): CTC on the transcripts and on the
# teachers' confident transcripts of them and of the untranscribed pool.
# shellcheck disable=SC2206
baseline_args=(finetune --data "$data" --model-config "$student_config" --lid-weight "$lid_weight"
               --train-config "conf/train/baseline_$preset.yaml" $(noise_for "conf/train/baseline_$preset.yaml") "$exp/baseline")
# shellcheck disable=SC2206
pl_baseline_args=(distill --data "$data" --model-config "$student_config" --kd-config conf/kd/pseudo_label.yaml
                  --lid-weight "$lid_weight" --train-config "conf/train/baseline_$preset.yaml" $(noise_for "conf/train/baseline_$preset.yaml")
                  $unlabeled_sets $teachers "$exp/baseline_pl")
# cmd=local: the baselines train beside stages 2-4, after the commands on the critical path: the
# no-KD one in the first slot the teachers leave free, the pseudo-label one (which needs the
# teachers) in the first slot free beside distillation and fine-tuning, else in stage 5; stage 5
# waits for them.
beside=false baseline_seconds=0 pl_started=false
if runs 5 && runs 2 && [ "$cmd" = local ] && [ "$max_jobs_run" -gt 1 ]; then beside=true; fi

if runs 2; then
  begin
  if [ "$beside" = true ]; then queued=(baseline -- "${baseline_args[@]}"); fi
  # Stage 2: one Conformer-CTC teacher per language, on its own set when the data has one.
  # shellcheck disable=SC2086
  step teachers "$langs" --after prepare -- train-teacher --data "$data" --lang "{item}" --model-config "conf/model/$preset.yaml" \
    --train-config "conf/train/teacher_$preset.yaml" $teacher_sets $(noise_for "conf/train/teacher_$preset.yaml") "$exp/teacher_{item}"
  finished 2
fi

if runs 3; then
  begin
  # the pseudo-label baseline starts beside distillation where that leaves distillation a slot,
  # else when a slot frees (the no-KD baseline may still be training)
  reap_ended
  if [ "$beside" = true ] && [ "$pl_baseline" = true ]; then
    if [ $(( ${#job_name[@]} + 2 )) -le "$max_jobs_run" ]; then launch baseline_pl -- "${pl_baseline_args[@]}"
    else queued=(baseline_pl -- "${pl_baseline_args[@]}"); fi
    pl_started=true
  fi
  # Stage 3: distill every teacher into one multilingual student (each utterance from its own
  # teacher), on the transcribed set and the untranscribed one (--unlabeled).
  # shellcheck disable=SC2086
  step distill --after teachers -- distill --data "$data" --model-config "$student_config" \
    --kd-config "conf/kd/$preset.yaml" --lid-weight "$lid_weight" --train-config "conf/train/distill_$preset.yaml" \
    $(noise_for "conf/train/distill_$preset.yaml") $unlabeled_sets $teachers "$exp/student_kd"
  finished 3
fi

if runs 4; then
  begin
  # Stage 4: language-adaptive fine-tuning of the student: CTC + λ·CE(language id).
  # shellcheck disable=SC2086
  step finetune --after distill -- finetune --data "$data" --init "$exp/student_kd" --lid-weight "$finetune_lid_weight" \
    --train-config "conf/train/finetune_$preset.yaml" $(noise_for "conf/train/finetune_$preset.yaml") "$exp/student"
  if [ "$streaming" = true ]; then
    # The streaming student starts from the student (its weights; the convolutions become causal)
    # and fine-tunes as long again: on the demo, as close to the full-context student as a
    # streaming student distilled from the teachers in as many updates as both took, for a third
    # of them (bench/README.md, "Streaming at the demo schedules").
    # shellcheck disable=SC2086
    step finetune-streaming --after finetune -- finetune --data "$data" --init "$exp/student" \
      --model-config "$streaming_config" --lid-weight "$finetune_lid_weight" --train-config "conf/train/finetune_$preset.yaml" \
      $(noise_for "conf/train/finetune_$preset.yaml") "$exp/student_streaming"
  fi
  finished 4
fi

if runs 5; then
  # Stage 5: the baselines; when they trained beside stages 2-4, the table counts the time the
  # run waited for them.
  begin
  if [ "$beside" = true ]; then
    reap_ended
    if [ ${#queued[@]} -gt 0 ]; then queued=(); pl_started=false; fi  # it never found a slot
    if [ "$pl_baseline" = true ] && [ "$pl_started" = false ]; then
      if [ ${#job_name[@]} -gt 0 ]; then
        launch baseline_pl -- "${pl_baseline_args[@]}"
      else  # alone: on every core
        pl_begin=$SECONDS
        here "${pl_baseline_args[@]}"
        baseline_seconds=$((baseline_seconds + SECONDS - pl_begin))
      fi
    fi
    drain
    record 5 "$baseline_seconds" "beside:$((SECONDS - started))"
  else
    step baseline --after prepare -- "${baseline_args[@]}"
    if [ "$pl_baseline" = true ]; then step baseline_pl --after teachers -- "${pl_baseline_args[@]}"; fi
    finished 5
  fi
fi

test_sets=$manifests/test_cuts.jsonl.gz   # with the unseen languages' test set, when prepared
dev_sets=$manifests/dev_cuts.jsonl.gz
if prepared test_unseen; then test_sets="$test_sets $manifests/test_unseen_cuts.jsonl.gz"; fi
if prepared dev_unseen; then dev_sets="$dev_sets $manifests/dev_unseen_cuts.jsonl.gz"; fi

if runs 6; then
  begin
  # Stage 6: calibrate the student's and the baseline's rejection of unseen languages on dev
  # (at 1% false rejections: the demo student's energy score flags 78.3% of dev_unseen, 66.7% at 0.5%),
  # then decode the test set (and the unseen languages' one) with every model (a teacher: its own
  # language's utterances), and with the student also by prefix beam and WFST (lexicon + 3-gram).
  # shellcheck disable=SC2086
  step calibrate "$exp/student $baselines" --after "finetune baseline baseline_pl" -- calibrate-lid "{item}" $dev_sets \
    --max-false-reject "$max_false_reject"
  # shellcheck disable=SC2086
  step decode-teachers "$teachers" --after teachers -- decode "{item}" $test_sets --name test
  # shellcheck disable=SC2086
  step decode "$exp/student $baselines" --after calibrate -- decode "{item}" $test_sets --name test
  decodes="decode-teachers decode decode-beam"
  step decode-beam "ctc-prefix-beam wfst" --after finetune -- decode "$exp/student" "$manifests/test_cuts.jsonl.gz" \
    --method "{item}"
  if [ "$streaming" = true ]; then  # as audio would arrive, chunk by chunk (partial results: log/)
    step decode-streaming --after finetune-streaming -- decode "$exp/student_streaming" "$manifests/test_cuts.jsonl.gz" \
      --streaming
    decodes="$decodes decode-streaming"
  fi
  for set in $conditions; do
    if prepared "$set"; then
      set_teachers=$(condition_teachers "$set")
      if [ -n "$set_teachers" ]; then
        step "decode-$set-teachers" "$set_teachers" --after teachers -- \
          decode "{item}" "$manifests/${set}_cuts.jsonl.gz" --name "$set"
        decodes="$decodes decode-$set-teachers"
      fi
      step "decode-$set" "$exp/student $baselines" --after calibrate -- \
        decode "{item}" "$manifests/${set}_cuts.jsonl.gz" --name "$set"
      decodes="$decodes decode-$set"
    fi
  done
  finished 6
fi

if runs 7; then
  begin
  # Stage 7: score every decode dir, then one table per test condition: teachers vs student vs
  # no-KD baseline (error rates on the trained languages; unseen speech counts for rejection
  # only), and every model's average on every condition.
  dirs=""
  for set in test $conditions; do
    if [ "$set" = test ] || prepared "$set"; then
      for model in $(decoders "$set"); do dirs="$dirs $model/decode_${set}_ctc-greedy"; done
    fi
  done
  streamed=""
  if [ "$streaming" = true ]; then streamed=$exp/student_streaming/decode_test_ctc-greedy_streaming; fi
  # shellcheck disable=SC2086
  step score --after "${decodes:-}" -- score $dirs "$exp/student/decode_test_ctc-prefix-beam" "$exp/student/decode_test_wfst-lm3" $streamed
  # shellcheck disable=SC2086
  step compare --after score -- score --compare --metric cer $dirs $streamed   # both write into the decode dirs
  if [ "$cmd" = local ]; then
    # shellcheck disable=SC2086
    mlkd score --compare --metric cer --markdown $dirs $streamed >"$exp/compare.md"
  fi
  finished 7
fi

drain
if [ "$cmd" = slurm ] && [ "$dry_run" = true ]; then
  echo "$0: dry run: job scripts in $exp/slurm/, the graph in $exp/slurm/jobs.tsv; nothing submitted" >&2
elif [ "$cmd" = slurm ]; then
  echo "$0: submitted; the last job (${job_id[compare]:-none}) prints the table into $exp/slurm/log/compare.${job_id[compare]:-JOBID}.out" >&2
else
  python local/results.py --exp "$exp" --times "$times" --command "$command_line" --compare "$exp/compare.md"
fi
