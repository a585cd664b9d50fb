#!/usr/bin/env bash
# Training throughput and peak memory of the demo preset on this machine.
#   bench/train.sh [DATA_DIR]   (default: data, made by `make demo` or local/run.sh --stop-stage 1)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/train.py "${1:-data}" --steps 200
