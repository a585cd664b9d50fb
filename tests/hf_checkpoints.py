"""Tiny Hugging Face CTC checkpoints, written exactly as `save_pretrained` writes real ones."""

from __future__ import annotations

import json
from pathlib import Path

# wav2vec2-style character vocabulary as XLSR fine-tunes have it: specials, the word
# delimiter "|", upper-case letters
GERMAN_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜß'"]
# Strides multiply to 320 samples = 20 ms; kernels (10, 8, 8, 8). Output frames of L samples:
# (L - 10) // 5 + 1, then three times (x - 8) // 4 + 1.
CONV = {"conv_dim": (16, 16, 16, 16), "conv_stride": (5, 4, 4, 4), "conv_kernel": (10, 8, 8, 8)}


def tiny_config(kind: str, vocab_size: int, feat_extract_norm: str = "group", **overrides):
    import transformers

    config_class = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig}[kind]
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=64, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                    pad_token_id=0, feat_extract_norm=feat_extract_norm, do_stable_layer_norm=feat_extract_norm == "layer",
                    mask_time_prob=0.0, **CONV)
    settings.update(overrides)
    return config_class(**settings)


def save_tiny_ctc(out: Path, kind: str, vocab: list[str], feat_extract_norm: str = "group", seed: int = 0,
                  sampling_rate: int = 16000, talkative: bool = False, **overrides) -> Path:
    """A randomly initialised *ForCTC model with its processor (vocab.json, feature extractor settings).

    A random CTC head is nearly flat and its greedy output empty; a ``talkative`` one has its
    head scaled and the blank favoured, so it says short varied text (a token every few 40 ms
    frames), as a trained teacher does.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    model_class = {"wav2vec2": transformers.Wav2Vec2ForCTC, "hubert": transformers.HubertForCTC}[kind]
    model = model_class(tiny_config(kind, len(vocab), feat_extract_norm, **overrides))
    if talkative:
        with torch.no_grad():
            model.lm_head.weight.mul_(30.0)
            model.lm_head.bias[0] = 8.0
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                                  word_delimiter_token="|")
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0,
                                                      do_normalize=True,
                                                      return_attention_mask=feat_extract_norm == "layer")
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def frames_of(samples: int) -> int:
    """Hand-computed output frames of the tiny convolution stack (see CONV)."""
    n = (samples - 10) // 5 + 1
    for _ in range(3):
        n = (n - 8) // 4 + 1
    return n
