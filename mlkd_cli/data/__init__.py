"""Data preparation: Kaldi dir validation, lhotse manifests, features, tokenizer."""
