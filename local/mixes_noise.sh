# Sourced by local/run.sh and bench/kd_seeds.sh: mixes_noise CONFIG succeeds when the train config
# CONFIG mixes in noise (augment.noise.prob > 0), the configs to give the corpus's --noise-set.
mixes_noise() {
  [ -f "$1" ] && python - "$1" <<'PY'
import sys, yaml
augment = (yaml.safe_load(open(sys.argv[1])) or {}).get("augment") or {}
sys.exit(0 if (augment.get("noise") or {}).get("prob", 0) > 0 else 1)
PY
}
