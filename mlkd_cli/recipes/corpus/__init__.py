"""The embedded demo corpus: multilingual Kaldi data dirs synthesized with eSpeak NG from Debian fortunes.

``build.build_corpus`` makes it; ``splits`` holds its splits and sizes, ``text`` its languages and
sentences (both cheap to import).
"""
