#!/usr/bin/env bash
# Data preparation speed on this machine for the demo size: eSpeak NG synthesis (seconds of
# audio per second) and fbank extraction (x real time), as measured by `mlkd prepare` itself.
#   bench/prepare.sh [--size demo] [--nj 2] [--work bench/work]
set -euo pipefail
cd "$(dirname "$0")/.."
size=demo
nj=2
fbank_nj=2
work=bench/work
. local/parse_options.sh
export PATH="$PWD/.venv/bin:$PATH"

rm -rf "$work"
python bench/synth.py --size "$size" -j "$nj" "$work/corpus"
start=$(date +%s.%N)
mlkd prepare -j "$fbank_nj" "$work/corpus/train" "$work/corpus/dev" "$work/corpus/test" "$work/data" 2> "$work/prepare.err"
end=$(date +%s.%N)
grep -o "fbank .*real time.*" "$work/data/log/prepare.log"
python - "$start" "$end" "$work/corpus/corpus.json" <<'PY'
import json, sys
start, end, summary = float(sys.argv[1]), float(sys.argv[2]), json.load(open(sys.argv[3]))
audio = sum(s["hours"] for split in summary["splits"].values() for s in split.values()) * 3600
print(f"mlkd prepare (validation, manifests, tokenizer, fbank): {audio:.0f} s of audio in {end - start:.1f} s "
      f"= {audio / (end - start):.0f}x real time")
PY
