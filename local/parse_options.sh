# Kaldi-style option parsing, sourced by recipe scripts after they define their defaults:
#   --stage 3 --langs "en de"  sets stage=3 and langs="en de".
# Only variables the script already defined can be set, so a misspelt option is an error.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Options (with their defaults):" >&2
      grep -E '^[a-z_]+=' "$0" | sed -E 's/^([a-z_]+)=/  --\1 /; s/_/-/g' >&2
      exit 0 ;;
    --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
    --*)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      name="$1"; value="$2"; shift 2 ;;
    *) break ;;
  esac
  var="${name#--}"; var="${var//-/_}"
  if [ -z "${!var+set}" ]; then
    echo "$0: unknown option $name" >&2; exit 1
  fi
  printf -v "$var" '%s' "$value"
done
