"""The embedded demo corpus: multilingual Kaldi data dirs synthesized with eSpeak NG from Debian fortunes.

``build.build_corpus`` makes it; ``text`` holds the languages and sentences (cheap to import).
"""
