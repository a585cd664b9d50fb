"""int8 for devices: a streaming student's test-set CER through sherpa-onnx's OnlineRecognizer on the
fp32 and int8 graphs of `mlkd export --streaming --int8`, beside mlkd's own `decode --streaming`.

  python bench/streaming_int8.py MODEL_DIR CUTS [--chunk-ms 320]

Prints per language and overall the greedy CER of mlkd (`mlkd decode --streaming`, its PyTorch
model), of sherpa-onnx on model.onnx and on model.int8.onnx, the int8 / fp32 ratio, and on what
share of utterances sherpa-onnx gives the text of `mlkd decode --streaming --onnx` on the same
graph, and of mlkd's PyTorch model. sherpa-onnx runs in a subprocess (its own onnxruntime); each
utterance is fed whole, then a chunk and 40 ms of silence (sherpa-onnx decodes no partial last
chunk), and decoded chunk by chunk, as a stream that ends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import left_chunks, mlkd
from mlkd_cli.decode.inputs import resolve_inputs
from mlkd_cli.score.metrics import score_languages, score_utterance
from mlkd_cli.score.reading import read_text

SHERPA = r"""
import json, sys
import numpy as np, sherpa_onnx
model, tokens, chunk_size, left, audio = sys.argv[1:]
recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
    model=model, tokens=tokens, chunk_size=int(chunk_size), num_left_chunks=int(left), num_threads=1,
    sample_rate=16000, feature_dim=80, decoding_method="greedy_search")
texts = []
for samples in np.load(audio, allow_pickle=True):
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, samples)
    stream.accept_waveform(16000, np.zeros(int(16 * (int(chunk_size) * 40 + 40)), np.float32))  # its last chunk (docs/decode.md)
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    texts.append(recognizer.get_result(stream))
print(json.dumps(texts))
"""


def sherpa_texts(model: Path, chunk_ms: int, audio_file: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-c", SHERPA, str(model), str(model.parent / "tokens.txt"),
                             str(chunk_ms // 40), str(left_chunks(model)), str(audio_file)], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("cuts", type=Path)
    parser.add_argument("--chunk-ms", type=int, default=320)
    args = parser.parse_args()
    out = args.model_dir / f"export_streaming_{args.chunk_ms}ms"
    mlkd("export", str(args.model_dir), "--streaming", "--chunk-ms", str(args.chunk_ms), "--int8", "--force")
    graphs = ("model.onnx", "model.int8.onnx")
    ours = {"mlkd": decoded_text(args.model_dir, args.cuts, args.chunk_ms, "int8bench")}
    for graph in graphs:
        ours[f"mlkd --onnx {graph}"] = decoded_text(args.model_dir, args.cuts, args.chunk_ms, "int8bench",
                                                    "--onnx", str(out / graph))
    items = resolve_inputs([str(args.cuts)]).items
    hyps = {arm: [text.get(item.id, "") for item in items] for arm, text in ours.items()}
    with tempfile.TemporaryDirectory() as tmp:
        audio_file = Path(tmp) / "audio.npy"
        audio = np.empty(len(items), dtype=object)
        audio[:] = [item.cut.resample(16000).load_audio()[0].astype(np.float32) for item in items]
        np.save(audio_file, audio, allow_pickle=True)
        for graph in graphs:
            hyps[graph] = sherpa_texts(out / graph, args.chunk_ms, audio_file)
    scores = {arm: score_languages([score_utterance(item.id, item.ref_text, hyp, item.ref_lang)
                                    for item, hyp in zip(items, texts)]) for arm, texts in hyps.items()}
    print(f"{args.model_dir} at {args.chunk_ms} ms, {len(items)} utterances of {args.cuts}")
    print(f"{'language':9} {'mlkd CER':>9} {'fp32 CER':>9} {'int8 CER':>9} {'int8/fp32':>10} {'--onnx fp32':>12} "
          f"{'--onnx int8':>12}  (fp32, int8: sherpa-onnx; --onnx: mlkd decode --streaming --onnx)")
    overall = {arm: s[0] for arm, s in scores.items()}
    rows = [(lang, {arm: scores[arm][1][lang] for arm in scores}) for lang in scores["mlkd"][1]] + [("all", overall)]
    for lang, by_arm in rows:
        cer = {arm: 100 * s.chars.rate for arm, s in by_arm.items()}
        print(f"{lang:9} {cer['mlkd']:9.2f} {cer['model.onnx']:9.2f} {cer['model.int8.onnx']:9.2f} "
              f"{cer['model.int8.onnx'] / cer['model.onnx']:10.3f} {cer['mlkd --onnx model.onnx']:12.2f} "
              f"{cer['mlkd --onnx model.int8.onnx']:12.2f}")
    for graph in graphs:
        same = {arm: 100 * np.mean([a == b for a, b in zip(hyps[graph], hyps[arm])])
                for arm in ("mlkd", f"mlkd --onnx {graph}")}
        print(f"sherpa-onnx on {graph} gives the text of `mlkd decode --streaming --onnx {graph}` on "
              f"{same[f'mlkd --onnx {graph}']:.1f}% of utterances, of mlkd's PyTorch model on {same['mlkd']:.1f}%")


def decoded_text(model_dir: Path, cuts: Path, chunk_ms: int, name: str, *options: str) -> dict[str, str]:
    """hyp.text of `mlkd decode MODEL_DIR CUTS --streaming` (with ``options``) at ``chunk_ms``."""
    mlkd("decode", str(model_dir), str(cuts), "--streaming", "--chunk-ms", str(chunk_ms), "--name", name, *options,
         "--force")
    suffix = f"_onnx-{Path(options[-1]).stem}" if options else ""
    return read_text(model_dir / f"decode_{name}_ctc-greedy_streaming-{chunk_ms}ms{suffix}" / "hyp.text")


if __name__ == "__main__":
    main()
