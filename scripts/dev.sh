#!/usr/bin/env bash
# One entry point that builds the environments it needs and then runs a job.
#
#   bash scripts/dev.sh demo [bpsn-ext demo args]   # main job, in the current-generation env
#   bash scripts/dev.sh test [pytest args]          # test-suite against both framework generations
#   bash scripts/dev.sh env sj2|sj014               # just build (or refresh) one environment
#
# Environments live in .envs/<name> and are rebuilt only when the dependency tables of
# pyproject.toml, the install steps below or the torch spec change.  Variables:
#   BPSN_TORCH_SPEC   what pip installs first (default torch==2.13.0, the CPU wheel here);
#                     GPU users set e.g. BPSN_TORCH_SPEC="torch==2.13.0 --index-url <their index>"
#   BPSN_ENVS         which environments `test` uses (default "sj2 sj014")
#   BPSN_INSTALL_CHECK=0  skips `test`'s last stage, scripts/check_install.sh (the README's
#                     install lines in clean venvs from a built wheel, for the same generations)
#   BPSN_TRITON_TESTS=0   skips the Triton stage: the tests named *triton*, run again in the
#                     first environment under Triton's interpreter (TRITON_INTERPRET=1), which
#                     executes the GPU kernels on CPU tensors
#   PYTHON            the interpreter that creates the venvs (default python3, needs >= 3.11)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
TORCH_SPEC=${BPSN_TORCH_SPEC:-torch==2.13.0}
ENVS_DIR=$ROOT/.envs

framework_spec() {
  case "$1" in
    sj2) echo "spikingjelly==2.0.0 snntorch==1.0.0" ;;    # current releases
    sj014) echo "spikingjelly==0.0.0.0.14 snntorch==0.9.4" ;;  # what most published models use
    *) echo "unknown environment '$1' (expected sj2 or sj014)" >&2; return 2 ;;
  esac
}

# what decides an environment's contents: the [project] tables of pyproject.toml (dependencies,
# extras, scripts) and the install steps below; code edits need no rebuild (editable install)
deps_fingerprint() {
  { sed -n '/^\[project\]/,/^\[tool/p' "$ROOT/pyproject.toml"; sed -n '/^make_env()/,/^}/p' "$ROOT/scripts/dev.sh"; } \
    | sha1sum | cut -c1-16
}

make_env() {
  local name=$1 spec env stamp want
  spec=$(framework_spec "$name")
  env=$ENVS_DIR/$name
  stamp=$env/.bpsn-stamp
  want="$(deps_fingerprint) | $TORCH_SPEC | $spec"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "[dev.sh] building .envs/$name ($spec, $TORCH_SPEC)" >&2
  rm -rf "$env"
  "$PY" -m venv "$env"
  # torch first, then pin it: torchvision/torchaudio (pulled by SpikingJelly) must not replace it
  # shellcheck disable=SC2086
  "$env/bin/pip" install -q --disable-pip-version-check $TORCH_SPEC
  "$env/bin/python" -W ignore -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' \
    > "$env/constraints.txt"
  # shellcheck disable=SC2086
  "$env/bin/pip" install -q --disable-pip-version-check -c "$env/constraints.txt" \
    -e "$ROOT[dev,data]" $spec
  echo "$want" > "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    make_env sj2
    exec "$ENVS_DIR/sj2/bin/bpsn-ext" demo "$@"
    ;;
  test)
    status=0
    for name in ${BPSN_ENVS:-sj2 sj014}; do
      make_env "$name"
      echo "[dev.sh] pytest in .envs/$name: $(framework_spec "$name")" >&2
      (cd "$ROOT" && "$ENVS_DIR/$name/bin/python" -m pytest "$@") || status=1
    done
    if [[ ${BPSN_TRITON_TESTS:-1} != 0 ]]; then
      first=$(echo "${BPSN_ENVS:-sj2 sj014}" | awk '{print $1}')
      echo "[dev.sh] pytest -k triton in .envs/$first under TRITON_INTERPRET=1" >&2
      (cd "$ROOT" && TRITON_INTERPRET=1 "$ENVS_DIR/$first/bin/python" -m pytest -q -k triton \
        -p no:cacheprovider tests) || status=1
    fi
    if [[ ${BPSN_INSTALL_CHECK:-1} != 0 ]]; then
      # shellcheck disable=SC2086
      bash "$ROOT/scripts/check_install.sh" ${BPSN_ENVS:-sj2 sj014} || status=1
    fi
    exit $status
    ;;
  env)
    make_env "${1:?usage: dev.sh env sj2|sj014}"
    ;;
  *)
    sed -n '2,18p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
