"""Decoding speed of the demo student on the demo test set, per method, and against sherpa-onnx.

1. `mlkd decode` on the prepared test cuts (precomputed fbank) with each method; the real-time
   factor is the one `mlkd decode` reports (model loaded, graph built on an earlier run).
2. The same model from the test wav files (fbank computed on the fly), against sherpa-onnx's
   offline CTC recognizer on the `mlkd export`ed model, same files, same thread count.
3. WER per language with and without the word LM (greedy vs WFST with lexicon + 3-gram).
4. An hour-long wav (test audio concatenated) decoded in one go: wall time and peak memory.
Usage: python bench/decode.py MODEL_DIR DATA_DIR [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
from common import mlkd


def peak_rss_mib(args: list[str]) -> float:
    """Peak memory of `mlkd ARGS` alone: measured by a fresh parent that runs nothing else
    (RUSAGE_CHILDREN keeps the largest child ever, e.g. an earlier export)."""
    probe = ("import resource, subprocess, sys; "
             "subprocess.run([sys.executable, '-m', 'mlkd_cli', *sys.argv[1:]], check=True, "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def stats(decode_dir: Path) -> dict:
    return json.loads((decode_dir / "stats.json").read_text())


def wer_by_language(decode_dir: Path) -> dict[str, float]:
    mlkd("score", str(decode_dir))
    report = json.loads((decode_dir / "score.json").read_text())
    return {lang: s["wer"]["rate"] for lang, s in report["languages"].items()}


def jiwer_check(decode_dir: Path) -> str:
    import jiwer

    def table(name: str) -> dict[str, str]:
        rows = (line.split(maxsplit=1) for line in (decode_dir / name).read_text(encoding="utf-8").splitlines())
        return {row[0]: row[1] if len(row) > 1 else "" for row in rows}

    refs, hyps = table("ref.text"), table("hyp.text")
    ids = sorted(refs)
    theirs = jiwer.wer([refs[i] for i in ids], [hyps.get(i, "") for i in ids])
    ours = json.loads((decode_dir / "score.json").read_text())["overall"]["wer"]["rate"]
    return f"WER {100 * ours:.3f}% vs {100 * theirs:.3f}% ({'equal' if abs(ours - theirs) < 1e-9 else 'DIFFERENT'})"


def sherpa_seconds(export_dir: Path, wavs: list[Path], threads: int) -> float:
    import sherpa_onnx

    recognizer = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
        model=str(export_dir / "model.onnx"), tokens=str(export_dir / "tokens.txt"), num_threads=threads)
    start = time.perf_counter()
    streams = []
    for wav in wavs:
        samples, rate = sf.read(wav, dtype="float32")
        stream = recognizer.create_stream()
        stream.accept_waveform(rate, samples)
        streams.append(stream)
    recognizer.decode_streams(streams)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model, cuts = Path(args.model), Path(args.data) / "manifests" / "test_cuts.jsonl.gz"
    threads = ["--threads", str(args.threads)]

    print(f"{model} on {cuts} ({args.threads} threads)")
    runs = [("ctc-greedy", []), ("ctc-greedy", ["--int8"]), ("ctc-prefix-beam", []), ("wfst", ["--graph", "ctc"]),
            ("wfst", ["--graph", "lm"])]
    for method, extra in runs:  # --force: timed afresh even when an earlier run is up to date
        if method == "wfst":
            mlkd("decode", str(model), str(cuts), "--method", method, *extra, *threads, "--force")  # builds the graphs
        mlkd("decode", str(model), str(cuts), "--method", method, *extra, *threads, "--force")
    dirs = {label: model / name for label, name in [
        ("ctc-greedy", "decode_test_ctc-greedy"), ("ctc-greedy int8", "decode_test_ctc-greedy_int8"),
        ("ctc-prefix-beam (beam 8)", "decode_test_ctc-prefix-beam"), ("wfst, CTC topology", "decode_test_wfst-ctc"),
        ("wfst, lexicon + 3-gram", "decode_test_wfst-lm3")]}
    greedy_rtf = stats(dirs["ctc-greedy"])["rtf"]
    for label, d in dirs.items():
        rtf = stats(d)["rtf"]
        print(f"  {label:28s} RTF {rtf:.4f}  ({rtf / greedy_rtf:.2f} x greedy)")

    greedy, lm = wer_by_language(dirs["ctc-greedy"]), wer_by_language(dirs["wfst, lexicon + 3-gram"])
    print(f"  jiwer vs mlkd score (kaldialign) on the greedy test hyps: {jiwer_check(dirs['ctc-greedy'])}")
    print("  WER greedy -> WFST with lexicon + 3-gram LM: " +
          "  ".join(f"{lang} {100 * greedy[lang]:.1f}->{100 * lm[lang]:.1f}" for lang in sorted(greedy)))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from lhotse import CutSet

        wavs = sorted({cut.recording.sources[0].source for cut in CutSet.from_file(cuts)})
        listing = work / "test.list"
        listing.write_text("".join(f"{w}\n" for w in wavs))
        start = time.perf_counter()
        mlkd("decode", str(model), str(listing), "--name", "bench-wav", *threads, "--force")
        mlkd_wall = time.perf_counter() - start
        wav_stats = stats(model / "decode_bench-wav_ctc-greedy")
        mlkd_seconds = wav_stats["rtf"] * wav_stats["audio_seconds"]
        mlkd("export", str(model), "-o", str(work / "export"))
        sherpa = sherpa_seconds(work / "export", [Path(w) for w in wavs], args.threads)
        print(f"  from {len(wavs)} wav files (fbank on the fly): mlkd greedy {mlkd_seconds:.2f} s "
              f"(RTF {wav_stats['rtf']:.4f}; {mlkd_wall:.1f} s with start-up), sherpa-onnx {sherpa:.2f} s "
              f"(RTF {sherpa / wav_stats['audio_seconds']:.4f}): mlkd / sherpa-onnx = {mlkd_seconds / sherpa:.2f}")

        hour = work / "hour.wav"
        with sf.SoundFile(hour, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
            written = 0
            while written < 3600 * 16000:
                for w in wavs:
                    samples, _ = sf.read(w, dtype="int16")
                    out.write(samples)
                    written += len(samples)
                    if written >= 3600 * 16000:
                        break
        start = time.perf_counter()
        peak = peak_rss_mib(["decode", str(model), str(hour), "--name", "bench-hour", *threads, "--force"])
        seconds = time.perf_counter() - start
        audio = sf.info(hour).duration
        print(f"  one {audio / 60:.1f}-minute wav: decoded in {seconds:.1f} s (RTF {seconds / audio:.4f} "
              f"with start-up), peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
