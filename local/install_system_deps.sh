#!/usr/bin/env bash
# Installs the Debian packages mlkd's recipes and tests need: eSpeak NG (speech synthesis),
# the fortunes collections (sentences of the embedded corpus) and a single-node SLURM with
# munge (the tests start their own cluster), libsox (fast resampling for speed and telephone
# augmentation), Festival and flite voices (more voice engines in the corpus) and lugaru-data
# (recorded wind and desert ambience for the noisy test set), and jemalloc (local/run.sh preloads it:
# CPU training runs about 1.5 times as fast as with glibc's malloc). Installs with apt-get when run as root;
# otherwise says what to install and fails.
set -euo pipefail

packages=(espeak-ng fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl fortunes-cs slurmctld slurmd slurm-client munge libsox3
          festival flite festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k
          festvox-ru festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph lugaru-data libjemalloc2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "$0: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Error: missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
