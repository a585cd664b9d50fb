"""Train a small Wav2Vec2ForCTC from a config on one language of a prepared data dir, on CPU,
and save it as a Hugging Face checkpoint dir (what `mlkd distill LANG=hf:DIR` reads).

This stands in for the per-language checkpoints users download (no hub here): the real
transformers class, trained from scratch for a wall-clock budget, with its processor.
Usage: python bench/hf_teacher.py DATA_DIR LANG OUT_DIR [--minutes 12]
Prints the training time, the audio seen and the dev and test CER (greedy) it reaches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from lhotse import CutSet
from lhotse.dataset.collation import collate_audio

from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.score.alignment import char_errors
from mlkd_cli.teachers.base import TeacherInputs
from mlkd_cli.teachers.hf import load_hf_teacher
from mlkd_cli.train.batches import make_sampler

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "|"]


def vocabulary(texts: list[str]) -> list[str]:
    return SPECIALS + sorted({c.upper() for text in texts for c in text if c != " "})


def build(out: Path, vocab: list[str]):
    import transformers

    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), pad_token_id=0, hidden_size=144, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=576, conv_dim=(64, 128, 128, 128, 128, 128, 128), feat_extract_norm="layer",
        do_stable_layer_norm=True, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=8,
        mask_time_prob=0.05, ctc_loss_reduction="mean", ctc_zero_infinity=True, layerdrop=0.0,
        hidden_dropout=0.1, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                                  word_delimiter_token="|")
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=True)
    processor = transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)
    return transformers.Wav2Vec2ForCTC(config), processor


def labels(processor, texts: list[str]) -> torch.Tensor:
    batch = processor.tokenizer([t.upper() for t in texts], padding=True, return_tensors="pt")
    return batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)


def train(data: Path, lang: str, out: Path, minutes: float) -> None:
    prepared = PreparedData(data)
    own = CutSet.from_cuts(c for c in prepared.cuts("train") if c.supervisions[0].language == lang)
    model, processor = build(out, vocabulary([c.supervisions[0].text for c in own]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    warmup, start, step, audio = 300, time.perf_counter(), 0, 0.0
    model.train()
    while time.perf_counter() - start < minutes * 60:
        for cuts in make_sampler(own, 50.0, shuffle=True, seed=step):
            samples, lens = collate_audio(cuts)
            waves = [s[:n].numpy() for s, n in zip(samples, lens.tolist())]
            inputs = processor(waves, sampling_rate=16000, return_tensors="pt", padding=True, return_attention_mask=True)
            loss = model(inputs["input_values"], attention_mask=inputs["attention_mask"],
                         labels=labels(processor, [c.supervisions[0].text for c in cuts])).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            for group in optimizer.param_groups:
                group["lr"] = 1e-3 * min(1.0, (step + 1) / warmup)
            optimizer.step()
            step, audio = step + 1, audio + sum(c.duration for c in cuts)
            if step % 50 == 0:
                print(f"step {step}: loss {loss.item():.3f}  {audio / (time.perf_counter() - start):.1f} s audio/s", flush=True)
            if time.perf_counter() - start >= minutes * 60:
                break
    seconds = time.perf_counter() - start
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    teacher = load_hf_teacher(lang, out)
    cer = {name: greedy_cer(teacher, CutSet.from_cuts(c for c in prepared.cuts(name) if c.supervisions[0].language == lang))
           for name in ("dev", "test")}
    print(f"hf teacher {lang}: {step} updates, {audio / 3600:.2f} h of audio seen in {seconds / 60:.1f} min "
          f"({audio / seconds:.1f} s audio/s); " + "; ".join(f"{name} CER {100 * e.rate:.1f}% ({e.errors}/{e.ref_len})"
                                                             for name, e in cer.items()))


@torch.inference_mode()
def greedy_cer(teacher, cuts: CutSet):
    errors = None
    for batch in make_sampler(cuts, 100.0, shuffle=False, seed=0):
        samples, lens = collate_audio(batch)
        for cut, hyp in zip(batch, teacher.transcribe(TeacherInputs(None, None, samples, lens))):
            e = char_errors(cut.supervisions[0].text.lower(), hyp.text.lower())
            errors = e if errors is None else errors + e
    return errors

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("lang")
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=12.0)
    args = parser.parse_args()
    train(args.data, args.lang, args.out, args.minutes)
