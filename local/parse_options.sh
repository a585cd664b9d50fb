# Kaldi-style option parsing, sourced by recipe scripts after they define their defaults:
#   --stage 3 --langs "en de"  sets stage=3 and langs="en de".
# Only variables the script already defined can be set, so a misspelt option is an error.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Options (with their defaults):" >&2
      # the defaults are the assignments above the line that sources this file
      sed -n '/parse_options\.sh/q; p' "${script_path:-$0}" | grep -E '^[a-z_]+=' | sed -E 's/^([a-z_]+)=/  --\1 /; :a; s/^(  --[a-z-]*)_/\1-/; ta' >&2
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
