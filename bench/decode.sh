#!/usr/bin/env bash
# Decoding speed per method, mlkd vs sherpa-onnx, the LM's effect on WER, an hour-long file.
#   bench/decode.sh [MODEL_DIR] [DATA_DIR]   (default: exp/student data, made by `make demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/decode.py "${1:-exp/student}" "${2:-data}" --threads 2
