"""The embedded demo corpus: multilingual Kaldi data dirs synthesized with eSpeak NG from Debian fortunes."""

from mlkd_cli.corpus.build import build_corpus

__all__ = ["build_corpus"]
