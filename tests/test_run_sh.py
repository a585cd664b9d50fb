"""local/run.sh checks its inputs before any stage runs: one error line each, exit 1, nothing made."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESETS = "demo full tiny"
BUILDER_LANGS = "en de es it fr ru pl cs"
NO_DATA = ("no prepared data in --data {tmp}/data ({tmp}/data/manifests/train_cuts.jsonl.gz not found); "
           "make it with `mlkd prepare`, or start at --stage 0")


def run_sh(tmp: Path, *args: str, path: str = "", cmd: str = "local") -> subprocess.CompletedProcess:
    """`bash local/run.sh` from the repo root, every output dir inside ``tmp``; ``path`` goes first on PATH."""
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # run.sh sets it per command
    env = {**inherited, "PATH": f"{path}{Path(sys.executable).parent}:{os.environ['PATH']}", "MLKD_CMD": cmd}
    dirs = ["--corpus", str(tmp / "corpus"), "--data", str(tmp / "data"), "--exp", str(tmp / "exp")]
    return subprocess.run(["bash", "local/run.sh", *dirs, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture(scope="module")
def prepared_en_de(tmp_path_factory) -> Path:
    """A --data dir whose training manifest has English and German cuts (lhotse's JSON, metadata only)."""
    data = tmp_path_factory.mktemp("prepared")
    (data / "manifests").mkdir()
    with gzip.open(data / "manifests" / "train_cuts.jsonl.gz", "wt") as f:
        for utt in ("en-1", "de-1", "en-2", "de-2"):
            supervision = {"id": utt, "recording_id": utt, "start": 0.0, "duration": 1.0, "channel": 0, "text": "a",
                           "language": utt[:2]}
            f.write(json.dumps({"id": utt, "start": 0.0, "duration": 1.0, "channel": 0,
                                "supervisions": [supervision], "type": "MonoCut"}) + "\n")
    return data


def assert_refused(result: subprocess.CompletedProcess, tmp: Path, error: str, inputs: tuple[str, ...] = ()) -> None:
    """Exit 1 after the command line and exactly one error line, and no dir made but the inputs."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and lines[0].startswith("local/run.sh --corpus ")
    assert lines[1:] == [f"local/run.sh: {error}"]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp.iterdir()) == sorted(inputs)


@pytest.mark.parametrize("args, error", [
    (["--lang", "en"], "unknown option --lang"),
    (["--stage", "x"], "--stage must be a stage number 0..7, got 'x'"),
    (["--stage", "8"], "--stage must be a stage number 0..7, got '8'"),
    (["--stop-stage", "100"], "--stop-stage must be a stage number 0..7, got '100'"),
    (["--stage", "3", "--stop-stage", "2"], "--stop-stage 2 is before --stage 3, so nothing would run"),
    (["--langs", " "], '--langs is empty; give at least one language, e.g. --langs "en de"'),
    (["--preset", "huge"], f"--preset 'huge': conf/model/huge.yaml not found; presets: {PRESETS}"),
    (["--langs", "en xx de yy"], f"--langs: the corpus builder has no language xx yy; it has: {BUILDER_LANGS}"),
    (["--stage", "1"], "no corpus in --corpus {tmp}/corpus ({tmp}/corpus/train not found); make it with --stage 0"),
    (["--stage", "2"], NO_DATA),
    (["--stage", "6", "--stop-stage", "6"], NO_DATA),
    (["--streaming", "yes"], "--streaming must be true or false, got 'yes'"),
    (["--streaming", "true", "--preset", "demo2"], "--preset 'demo2': conf/model/demo2.yaml not found; presets: " + PRESETS),
    (["--noise", "/no/musan"], "--noise /no/musan: no noise set there (a dir with wav.scp, or an lhotse manifest)"),
])
def test_a_bad_option_is_one_error_before_anything_runs(tmp_path, args, error):
    assert_refused(run_sh(tmp_path, *args), tmp_path, error.format(tmp=tmp_path))


def test_a_preset_needs_all_its_files_only_when_training_runs(tmp_path):
    """`--preset` names conf/*/<preset>.yaml for stages 2-5; a stage-0-only run does not read it."""
    result = run_sh(tmp_path, "--preset", "huge", "--langs", "xx", "--stop-stage", "0")
    assert_refused(result, tmp_path, f"--langs: the corpus builder has no language xx; it has: {BUILDER_LANGS}")


def test_a_language_without_training_data_is_refused(tmp_path, prepared_en_de):
    result = run_sh(tmp_path, "--stage", "2", "--data", str(prepared_en_de), "--langs", "en fr de es")
    cuts = prepared_en_de / "manifests" / "train_cuts.jsonl.gz"
    assert_refused(result, tmp_path, f"--langs: no fr es utterances in {cuts} (it has: de en); drop them from "
                                     "--langs, or prepare data with them")


def stand_in_mlkd(tmp: Path, body: str) -> str:
    """A bash script ``body`` as `mlkd` in ``tmp``/bin; the PATH prefix that finds it."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "mlkd").write_text(f"#!/usr/bin/env bash\n{body}")
    (bin_dir / "mlkd").chmod(0o755)
    return f"{bin_dir}:"


def logging_mlkd(tmp: Path) -> str:
    """A stand-in `mlkd` that appends its arguments to ``tmp``/mlkd.log; the PATH prefix that finds it."""
    return stand_in_mlkd(tmp, f'echo "$*" >> {tmp}/mlkd.log\n')


def test_valid_inputs_pass_the_checks_and_the_stages_run(tmp_path, prepared_en_de):
    """With a stand-in `mlkd` that logs its arguments, stages 2-3 run for exactly the checked languages."""
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "3", "--langs", "de en", "--preset", "tiny",
                    "--data", str(prepared_en_de), path=logging_mlkd(tmp_path))
    assert result.returncode == 0, result.stderr
    commands = [line.split()[0] + " " + line.split()[-1] for line in (tmp_path / "mlkd.log").read_text().splitlines()]
    teachers = [f"train-teacher {tmp_path}/exp/teacher_{lang}" for lang in ("de", "en")]
    assert sorted(commands[:2]) == teachers
    assert commands[2:] == [f"distill {tmp_path}/exp/student_kd"]


def test_it_runs_from_any_directory_with_paths_relative_to_the_recipe(tmp_path, prepared_en_de):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": f"{logging_mlkd(tmp_path)}{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLKD_CMD": "local"}
    result = subprocess.run(["bash", str(ROOT / "local" / "run.sh"), "--stage", "2", "--stop-stage", "2", "--langs", "en",
                             "--preset", "tiny", "--data", str(prepared_en_de), "--exp", str(tmp_path / "exp")],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "--model-config conf/model/tiny.yaml" in (tmp_path / "mlkd.log").read_text()  # found from the recipe
    assert list(elsewhere.iterdir()) == []
    help_text = subprocess.run(["bash", str(ROOT / "local" / "run.sh"), "--help"], cwd=elsewhere, capture_output=True,
                               text=True, timeout=30)
    assert help_text.returncode == 0 and "  --max-jobs-run 2" in help_text.stderr


def test_the_noise_set_goes_only_to_stages_whose_config_mixes_in_noise(tmp_path, prepared_en_de):
    (tmp_path / "corpus" / "noise").mkdir(parents=True)
    (tmp_path / "corpus" / "noise" / "wav.scp").write_text("n1 n1.wav\n")
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "5", "--langs", "en de", "--preset", "demo",
                    "--max-jobs-run", "1", "--data", str(prepared_en_de), path=logging_mlkd(tmp_path))
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "mlkd.log").read_text().splitlines()
    noise = {line.split()[-1].rsplit("/", 1)[-1]: f"--noise-set {tmp_path}/corpus/noise" in line for line in calls}
    assert noise == {"teacher_de": True, "teacher_en": True, "student_kd": True, "student": True,
                     "baseline": False, "baseline_pl": False}  # conf/train/baseline_demo.yaml: clean audio
    lid_weights = {line.split()[-1].rsplit("/", 1)[-1]: line.split("--lid-weight ")[1].split()[0]
                   for line in calls if "--lid-weight" in line}
    # each λ chosen on dev
    assert lid_weights == {"student_kd": "3", "student": "10", "baseline": "3", "baseline_pl": "3"}


def test_a_slurm_dry_run_writes_the_dependency_graph_and_submits_nothing(tmp_path, prepared_en_de):
    result = run_sh(tmp_path, "--stage", "2", "--langs", "en de", "--preset", "tiny", "--dry-run", "true",
                    "--data", str(prepared_en_de), path=logging_mlkd(tmp_path), cmd="slurm")
    assert result.returncode == 0, result.stderr
    assert "--exp" in result.stderr and "node-local filesystem" in result.stderr  # tmp_path is under /tmp
    graph = {job: waits.split() for job, _, waits in
             (line.split("\t") for line in (tmp_path / "exp" / "slurm" / "jobs.tsv").read_text().splitlines())}
    decodes = ["decode-teachers", "decode", "decode-beam"]
    assert graph == {"teachers": [], "distill": ["teachers"], "finetune": ["distill"], "baseline": [],
                     "baseline_pl": ["teachers"], "calibrate": ["finetune", "baseline", "baseline_pl"],
                     "decode-teachers": ["teachers"], "decode": ["calibrate"], "decode-beam": ["finetune"],
                     "score": decodes, "compare": ["score"]}
    calls = (tmp_path / "mlkd.log").read_text().splitlines()
    assert all(call.startswith("slurm ") and "--submit" not in call for call in calls)
    training = [c for c in calls if c.split(" -- ")[1].split()[0] in ("train-teacher", "distill", "finetune")]
    assert training and all("--config conf/slurm/gpu.yaml" in c for c in training)
    assert all("--config conf/slurm/cpu.yaml" in c for c in calls if c not in training)
    calibrations = [c for c in calls if " -- calibrate-lid " in c]  # at the recipe's 1% false rejections
    assert calibrations and all(c.endswith("--max-false-reject 0.01") for c in calibrations)
    refused = run_sh(tmp_path / "local", "--dry-run", "true")
    assert refused.returncode == 1 and "--dry-run true writes a SLURM job graph" in refused.stderr


def test_a_language_missing_from_the_corpus_is_refused_at_stage_1(tmp_path):
    train = tmp_path / "corpus" / "train"
    train.mkdir(parents=True)
    (train / "utt2lang").write_text("de-a-1 de\nen-a-1 en\n")
    result = run_sh(tmp_path, "--stage", "1", "--langs", "en it")
    assert_refused(result, tmp_path, f"--langs: no it utterances in {train}/utt2lang; drop it from --langs, "
                                     "or make the corpus with it (--stage 0)", inputs=("corpus",))


def test_the_command_line_is_echoed_first_as_given(tmp_path):
    result = run_sh(tmp_path, "--langs", "en de", "--stage", "9")
    dirs = f"--corpus {tmp_path}/corpus --data {tmp_path}/data --exp {tmp_path}/exp"
    assert result.stderr.splitlines() == [f"local/run.sh {dirs} --langs en\\ de --stage 9",
                                          "local/run.sh: --stage must be a stage number 0..7, got '9'"]


def test_help_lists_exactly_the_options(tmp_path):
    result = subprocess.run(["bash", "local/run.sh", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    lines = result.stderr.splitlines()
    assert result.returncode == 0 and lines[:2] == ["local/run.sh --help", "Options (with their defaults):"]
    assert [line.split()[0] for line in lines[2:]] == [
        "--stage", "--stop-stage", "--langs", "--size", "--seed", "--nj", "--corpus", "--data", "--tokenizer",
        "--vocab-size", "--preset", "--exp", "--lid-weight", "--finetune-lid-weight", "--max-false-reject", "--noise",
        "--unlabeled", "--pl-baseline", "--streaming",
        "--max-jobs-run", "--dry-run"]
    preset = "  --preset demo      # conf/model/{,student_}$preset.yaml, conf/train/{teacher,distill,finetune,baseline}"
    assert f"{preset}_$preset.yaml" in lines  # underscores in comments stay


def test_streaming_fine_tunes_a_streaming_student_from_the_student_and_decodes_it_as_a_stream(tmp_path, prepared_en_de):
    """--streaming true: after the student, stage 4 fine-tunes exp/student_streaming from it with the
    preset's streaming model config (the baselines stay full-context), stage 6 decodes it with
    --streaming, and stage 7 scores it and puts it in the table."""
    result = run_sh(tmp_path, "--stage", "3", "--langs", "de en", "--preset", "tiny", "--streaming", "true",
                    "--data", str(prepared_en_de), path=logging_mlkd(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "mlkd.log").read_text().splitlines()
    exp = tmp_path / "exp"
    model_configs = {line.split()[-1]: line.split()[line.split().index("--model-config") + 1]
                     for line in lines if "--model-config" in line}
    assert model_configs == {f"{exp}/student_kd": "conf/model/student_tiny.yaml",
                             f"{exp}/baseline": "conf/model/student_tiny.yaml",
                             f"{exp}/baseline_pl": "conf/model/student_tiny.yaml",
                             f"{exp}/student_streaming": "conf/model/student_tiny_streaming.yaml"}
    [streaming] = [line for line in lines if line.endswith(f"{exp}/student_streaming")]
    assert streaming.startswith(f"finetune --data {prepared_en_de} --init {exp}/student ")
    assert lines.index(streaming) > lines.index(next(line for line in lines if line.endswith(f"{exp}/student")))
    assert f"decode {exp}/student_streaming {prepared_en_de}/manifests/test_cuts.jsonl.gz --streaming" in lines
    streamed = f"{exp}/student_streaming/decode_test_ctc-greedy_streaming"
    score = next(line for line in lines if line.startswith("score ") and "--compare" not in line)
    assert score.endswith(streamed)
    assert all(line.endswith(streamed) for line in lines if line.startswith("score --compare"))


@pytest.mark.parametrize("malloc", ["jemalloc", "glibc"])
def test_every_command_runs_with_jemalloc_unless_told_otherwise(tmp_path, prepared_en_de, malloc):
    """local/install_system_deps.sh installs libjemalloc2; run.sh preloads it for every mlkd command
    (and RESULTS.md names the allocator), MLKD_MALLOC=glibc keeps glibc's malloc."""
    path = stand_in_mlkd(tmp_path, f'echo "$1 LD_PRELOAD=${{LD_PRELOAD:-}}" >> {tmp_path}/mlkd.log\n')
    env = {**os.environ, "MLKD_MALLOC": malloc}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "2", "--langs", "de en", "--preset", "tiny",
                        "--data", str(prepared_en_de), path=path)
    assert result.returncode == 0, result.stderr
    preloads = {line.split(" ", 1)[1] for line in (tmp_path / "mlkd.log").read_text().splitlines()}
    jemalloc = subprocess.run(["bash", "-c", "ldconfig -p | awk '$1 == \"libjemalloc.so.2\" {p = $NF} END {print p}'"],
                              capture_output=True, text=True).stdout.strip()
    assert jemalloc.endswith("libjemalloc.so.2")
    assert preloads == {f"LD_PRELOAD={jemalloc if malloc == 'jemalloc' else ''}"}
    assert f", {'jemalloc' if malloc == 'jemalloc' else 'glibc malloc'}; " in result.stdout  # RESULTS.md's machine line


def test_a_long_library_listing_does_not_stop_the_run(tmp_path, prepared_en_de):
    """run.sh finds jemalloc in `ldconfig -p` under pipefail: a reader that stopped at the first match
    would end a long listing with SIGPIPE, and the run with exit status 141 before any check."""
    path = logging_mlkd(tmp_path)
    (tmp_path / "bin" / "ldconfig").write_text(
        "#!/usr/bin/env bash\necho '\tlibjemalloc.so.2 (libc6,x86-64) => /nonexistent/libjemalloc.so.2'\n"
        "seq 1 200000 | sed 's/^/\tlibfake/'\n")
    (tmp_path / "bin" / "ldconfig").chmod(0o755)
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "2", "--langs", "de en", "--preset", "tiny",
                    "--data", str(prepared_en_de), path=path)
    assert result.returncode == 0, result.stderr[-300:]
    assert len((tmp_path / "mlkd.log").read_text().splitlines()) == 2


def test_a_run_times_its_stages_and_writes_results(tmp_path, prepared_en_de):
    """Every local run ends by printing and writing RESULTS.md: the command, commit, machine, each
    stage's wall time (a later run's stages replace the earlier's) and the scores once stage 7 ran."""
    path = logging_mlkd(tmp_path)
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "3", "--langs", "de en", "--preset", "tiny",
                    "--data", str(prepared_en_de), path=path)
    assert result.returncode == 0, result.stderr
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert result.stdout == results
    assert results.startswith(f"# Results of `local/run.sh --corpus {tmp_path}/corpus")
    assert "- commit: " in results and " CPU cores (" in results and "CPU capability " in results and "bf16 " in results
    rows = [line.split(" | ")[0] for line in results.splitlines() if line.startswith("| 2 ") or line.startswith("| 3 ")]
    assert rows == ["| 2 teachers", "| 3 distill"] and "(stage 7 has not run" in results
    result = run_sh(tmp_path, "--stage", "7", "--langs", "de en", "--preset", "tiny", "--data", str(prepared_en_de),
                    path=path)
    assert result.returncode == 0, result.stderr
    stages = [line.split("\t")[0] for line in (tmp_path / "exp" / "stage_times.tsv").read_text().splitlines()]
    assert stages == ["2", "3", "7"]
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "| 7 score |" in results and "| 2 teachers |" in results and "Scored " in results
    compare = next(line for line in (tmp_path / "mlkd.log").read_text().splitlines() if "--markdown" in line)
    assert compare.startswith("score --compare --metric cer --markdown ")


def timing_mlkd(tmp: Path, seconds: float, fail: str = "", slow: str = "") -> str:
    """A stand-in `mlkd` that logs "start|end ARGS @THREADS TIME" and sleeps ``seconds`` between (three
    times as long when its last argument ends with ``slow``); it exits 3 at once when its arguments
    contain ``fail``. The PATH prefix that finds it."""
    failing = f'[[ "$*" == *"{fail}"* ]] && exit 3\n' if fail else ""
    sleep = f'[[ "${{@: -1}}" == *"{slow}" ]] && sleep {2 * seconds}\n' if slow else ""
    return stand_in_mlkd(tmp, f'echo "start $* @$OMP_NUM_THREADS $(date +%s.%N)" >> {tmp}/mlkd.log\n{failing}'
                              f'sleep {seconds}\n{sleep}'
                              f'echo "end $* @$OMP_NUM_THREADS $(date +%s.%N)" >> {tmp}/mlkd.log\n')


def spans(tmp: Path) -> dict[str, tuple[float, float, str]]:
    """Each command's (start, end, OMP_NUM_THREADS), by its last argument (the experiment dir)."""
    events: dict[str, dict[str, float | str]] = {}
    for line in (tmp / "mlkd.log").read_text().splitlines():
        kind, *args, threads, time = line.split()
        events.setdefault(Path(args[-1]).name, {})[kind] = float(time)
        events[Path(args[-1]).name]["threads"] = threads.lstrip("@")
    return {name: (e["start"], e.get("end", float("nan")), e["threads"]) for name, e in events.items()}


def test_teachers_and_the_baselines_train_side_by_side_on_shares_of_the_cores(tmp_path, prepared_en_de):
    """--max-jobs-run 2 (the default): the teachers train two at a time, each on half the cores; the
    no-KD baseline, off the critical path, takes the first slot they leave and trains beside
    distillation, which starts when both teachers are done; the pseudo-label baseline waits for a
    slot that leaves distillation one: the no-KD baseline's, as soon as that ends. The stage
    table counts the baselines by the time the run waited for them."""
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "5", "--langs", "de en", "--preset", "tiny",
                    "--data", str(prepared_en_de), path=timing_mlkd(tmp_path, 0.5, slow="student_kd"))
    assert result.returncode == 0, result.stderr
    s = spans(tmp_path)
    half = str(max(1, os.cpu_count() // 2))
    assert s["baseline"][2] == s["teacher_de"][2] == s["teacher_en"][2] == s["student_kd"][2] == half
    assert s["baseline"][0] >= min(s["teacher_de"][1], s["teacher_en"][1])  # after a teacher, in its slot
    assert s["student_kd"][0] > max(s["teacher_de"][1], s["teacher_en"][1]) and s["baseline"][1] > s["student_kd"][0]
    # in the slot the no-KD baseline leaves, while distillation (three times as long) still runs
    assert s["baseline"][1] <= s["baseline_pl"][0] < s["student_kd"][1] and s["baseline_pl"][2] == half
    assert s["student"][0] >= s["student_kd"][1]
    assert f"+ mlkd train-teacher --data {prepared_en_de} --lang de" in result.stderr
    assert f">{tmp_path}/exp/log/teachers.de.log" in result.stderr
    rows = [line.split("\t") for line in (tmp_path / "exp" / "stage_times.tsv").read_text().splitlines()]
    assert [row[0] for row in rows] == ["2", "3", "4", "5"] and rows[3][3].startswith("beside:")
    assert "| 5 baselines (beside stages 2-4, then waited 0:00:0" in (tmp_path / "exp" / "RESULTS.md").read_text()


def test_one_job_at_a_time_runs_everything_in_order_on_all_cores(tmp_path, prepared_en_de):
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "5", "--langs", "de en", "--preset", "tiny",
                    "--max-jobs-run", "1", "--data", str(prepared_en_de), path=timing_mlkd(tmp_path, 0.0))
    assert result.returncode == 0, result.stderr
    s = spans(tmp_path)
    assert sorted(s, key=lambda name: s[name][0]) == ["teacher_de", "teacher_en", "student_kd", "student", "baseline",
                                                      "baseline_pl"]
    assert {threads for _, _, threads in s.values()} == {""}  # torch's default: every core


def test_a_failed_job_stops_the_run_and_its_neighbours_with_one_line_naming_its_log(tmp_path, prepared_en_de):
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "5", "--langs", "de en", "--preset", "tiny",
                    "--data", str(prepared_en_de), path=timing_mlkd(tmp_path, 1.0, fail="teacher_de"))
    assert result.returncode == 1
    log = tmp_path / "exp" / "log" / "teachers.de.log"
    assert result.stderr.splitlines()[-1] == f"local/run.sh: teachers.de failed (exit 3); its log: {log}"
    s = spans(tmp_path)
    assert "teacher_de" in s and "student_kd" not in s and all(end != end for _, end, _ in s.values())  # NaN: none ended


def test_teachers_learn_from_their_own_set_which_also_trains_the_tokenizer(tmp_path, prepared_en_de):
    """A corpus with teacher_train: stage 1 prepares it and trains the tokenizer on its text, stage 2
    trains each teacher on it; the student and the baselines keep train, the pool joins
    distillation and the pseudo-label baseline; --pl-baseline false leaves that baseline out."""
    for split in ("train", "teacher_train", "dev", "test"):
        (tmp_path / "corpus" / split).mkdir(parents=True)
    (tmp_path / "corpus" / "train" / "utt2lang").write_text("de-a-1 de\nen-a-1 en\n")
    path = logging_mlkd(tmp_path)
    result = run_sh(tmp_path, "--stage", "1", "--stop-stage", "1", "--langs", "de en", path=path)
    assert result.returncode == 0, result.stderr
    prepare = (tmp_path / "mlkd.log").read_text().splitlines()[0]
    assert "--train-set teacher_train" in prepare and f"{tmp_path}/corpus/teacher_train" in prepare
    data = tmp_path / "data_teach"
    shutil.copytree(prepared_en_de, data)
    for name in ("teacher_train", "unlabeled"):
        shutil.copy(data / "manifests" / "train_cuts.jsonl.gz", data / "manifests" / f"{name}_cuts.jsonl.gz")
    (tmp_path / "mlkd.log").unlink()
    result = run_sh(tmp_path, "--stage", "2", "--stop-stage", "5", "--langs", "de en", "--preset", "tiny",
                    "--max-jobs-run", "1", "--data", str(data), path=path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "mlkd.log").read_text().splitlines()
    assert all("--train-set teacher_train" in line for line in lines if line.startswith("train-teacher"))
    assert not any("--train-set" in line for line in lines if not line.startswith("train-teacher"))
    pl = next(line for line in lines if line.endswith("/exp/baseline_pl"))
    assert pl.startswith("distill ") and "--kd-config conf/kd/pseudo_label.yaml" in pl
    assert "--train-config conf/train/baseline_tiny.yaml" in pl and "--unlabeled-set unlabeled" in pl
    assert "--unlabeled-set unlabeled" in next(line for line in lines if line.endswith("/exp/student_kd"))
    (tmp_path / "mlkd.log").unlink()
    result = run_sh(tmp_path, "--stage", "5", "--stop-stage", "5", "--langs", "de en", "--preset", "tiny",
                    "--pl-baseline", "false", "--data", str(data), path=path)
    assert result.returncode == 0, result.stderr
    trained = [line.split()[-1] for line in (tmp_path / "mlkd.log").read_text().splitlines()]
    assert trained == [f"{tmp_path}/exp/baseline"]
