#!/usr/bin/env bash
# Follow the README's install lines verbatim in a clean virtual environment, from a wheel built
# from this checkout, and check that the torch installed first is still the one installed last.
#
#   bash scripts/check_install.sh [sj2] [sj014]     # default: both framework generations
#
# The lines between the README's `install-check` markers run as written (`bpsn-ext demo`
# included), except that the checkout ".[" becomes the built wheel's path and, for sj014, the
# older generation's pins (the README gives them) are appended to the line that installs the
# wheel.  Then, in that venv: torch's version string is unchanged, no nvidia-* package came in,
# `import bpsn_ext`, `bpsn_ext.spikingjelly`, `bpsn_ext.snntorch` and the native CPU kernel
# work, and torchvision either imports and a SpikingJelly model-zoo network with BPSN runs, or
# the check says plainly that it does not (PyPI's torchvision beside a CPU torch; the README's
# "torchvision on CPU" gives the matched pair).
# Needs python3 >= 3.11 and the package index; `.ci/run` runs it through `scripts/dev.sh test`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
GENERATIONS=("$@")
[[ ${#GENERATIONS[@]} -gt 0 ]] || GENERATIONS=(sj2 sj014)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bpsn-install-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

readme_lines() {  # the commands between the markers, without the ``` fences
  sed -n '/<!-- install-check:begin/,/<!-- install-check:end/p' "$ROOT/README.md" \
    | grep -v '^<!--' | grep -v '^```'
}

if [[ -z "$(readme_lines)" ]]; then
  echo "check_install: README.md has no install-check block" >&2
  exit 1
fi

echo "[check_install] building the wheel from $ROOT" >&2
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/bpsn_ext-*.whl)

for gen in "${GENERATIONS[@]}"; do
  case "$gen" in
    sj2) extra="" ;;
    sj014) extra=" spikingjelly==0.0.0.0.14 snntorch==0.9.4" ;;
    *) echo "check_install: unknown generation '$gen' (expected sj2 or sj014)" >&2; exit 2 ;;
  esac
  echo "[check_install] $gen: a clean venv, the README's lines" >&2
  "$PY" -m venv "$WORK/venv-$gen"
  mkdir -p "$WORK/run-$gen"
  (
    cd "$WORK/run-$gen"
    # shellcheck disable=SC1091
    source "$WORK/venv-$gen/bin/activate"
    first=1
    while IFS= read -r line; do
      [[ -n "${line// }" ]] || continue
      line=${line//\".\[/\"$WHEEL\[}
      [[ $line == *"$WHEEL"* ]] && line=${line%%#*}$extra
      echo "+ $line" >&2
      eval "$line" > pip.log 2>&1 || { cat pip.log >&2; exit 1; }
      if [[ $first == 1 ]]; then
        python -c 'import torch; print(torch.__version__)' > torch-before.txt
        first=0
      fi
    done < <(readme_lines)
    BPSN_EXT_CACHE="$WORK/cache-$gen" python -W ignore "$ROOT/scripts/check_install.py" \
      "$(cat torch-before.txt)" "$gen"
  )
  rm -rf "$WORK/venv-$gen"
done
echo "[check_install] passed: ${GENERATIONS[*]}" >&2
