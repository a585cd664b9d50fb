#!/usr/bin/env bash
# Synthesize the embedded demo corpus (eSpeak NG speech reading Debian fortunes).
# Usage: local/make_corpus.sh [--langs "en de es it ru"] [--size demo] [--seed 0] [-j 2] OUT_DIR
# (every option: mlkd make-corpus --help)
set -euo pipefail

echo "$0 $*"
mlkd make-corpus "$@"
