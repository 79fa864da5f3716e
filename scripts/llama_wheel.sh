#!/usr/bin/env bash
# Builds, once per set of compiler flags, a portable llama-cpp-python wheel and prints the folder that holds it.
#
#   pip install --no-index --find-links "$(scripts/llama_wheel.sh)" llama-cpp-python
#   scripts/llama_wheel.sh [--where] [PYTHON]     # --where: print the folder, build nothing
#
# Why not a plain `pip install llama-cpp-python`: PyPI has no wheel for it, and its source build defaults to
# GGML_NATIVE (-march=native), which bakes in whatever the build CPU has (AVX-512, AMX). That wheel crashes
# with SIGSEGV/SIGILL on other CPUs, on Dataflow workers that differ from the image builder, and even on the
# same CPU under a kernel that does not grant AMX. So the default here is an x86-64 baseline every CPU with AVX2
# runs (Intel Haswell 2013+, AMD Zen+); on other architectures, the generic baseline.
#
# Why a wheelhouse of its own: pip caches the wheels it builds and reuses them whatever CMAKE_ARGS says now, so
# changing flags would not reach a machine that built one before. Here the folder name is a hash of the version,
# the flags, the Python tag and the architecture, and the build bypasses pip's wheel cache (--no-cache-dir): a
# wheel built with other flags is never picked up.
#
# To build for one specific CPU instead (faster on that CPU, crashes on others; never for Dataflow or images):
#   BEAM_DISTIL_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON" ./scripts/test.sh
# Where the wheels go: $BEAM_DISTIL_WHEELHOUSE (default ~/.cache/beam-distil/wheelhouse).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The version setup.py pins, so that the two never disagree.
LLAMA_CPP_PYTHON_VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9][0-9.]*\)".*/\1/p' "$ROOT/setup.py")"
[ -n "$LLAMA_CPP_PYTHON_VERSION" ] || { echo "setup.py pins no llama-cpp-python==VERSION" >&2; exit 1; }
WHERE_ONLY=0
if [ "${1:-}" = "--where" ]; then
  WHERE_ONLY=1
  shift
fi
PYTHON_BIN="${1:-python3}"

case "$(uname -m)" in
  x86_64|amd64)
    PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  *)
    PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF"
    ;;
esac
LLAMA_CMAKE_ARGS="${BEAM_DISTIL_LLAMA_CMAKE_ARGS:-$PORTABLE_CMAKE_ARGS}"

PY_TAG="$("$PYTHON_BIN" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
KEY="$(printf '%s|%s|%s|%s' "$LLAMA_CPP_PYTHON_VERSION" "$LLAMA_CMAKE_ARGS" "$PY_TAG" "$(uname -m)" | sha256sum | cut -c1-16)"
WHEELHOUSE="${BEAM_DISTIL_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/beam-distil/wheelhouse}"
TARGET="$WHEELHOUSE/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION-$KEY"

if [ "$WHERE_ONLY" = 1 ]; then
  echo "$TARGET"
  exit 0
fi
if ! compgen -G "$TARGET/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" > /dev/null; then
  echo "Compiling llama-cpp-python $LLAMA_CPP_PYTHON_VERSION with $LLAMA_CMAKE_ARGS (6 to 11 minutes on 2 cores)..." >&2
  mkdir -p "$WHEELHOUSE"
  BUILD_DIR="$(mktemp -d "$WHEELHOUSE/.building-XXXXXX")"
  trap 'rm -rf "$BUILD_DIR"' EXIT
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PYTHON_BIN" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
    --wheel-dir "$BUILD_DIR" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  printf '%s\n' "$LLAMA_CMAKE_ARGS" > "$BUILD_DIR/CMAKE_ARGS"
  # Two set-ups racing: the first rename wins, the second finds the folder there and keeps it.
  mv -T "$BUILD_DIR" "$TARGET" 2> /dev/null || true
fi
echo "$TARGET"
