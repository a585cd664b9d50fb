#!/usr/bin/env bash
# Distillation throughput, cached vs on-the-fly teacher targets, vs plain CTC of the same student.
#   bench/distill.sh [DATA_DIR] [EXP_DIR]   (default: data exp, made by `make demo` up to the teachers)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/distill.py "${1:-data}" "${2:-exp}" --steps 200
