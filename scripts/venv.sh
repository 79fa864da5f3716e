# Sourced by the other scripts: creates or reuses .venv and installs the project when its requirements changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BEAM_DISTIL_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
# The folder of the portable llama-cpp-python wheel (compiled on first use; scripts/llama_wheel.sh says why).
LLAMA_WHEELS="$(bash "$ROOT/scripts/llama_wheel.sh" "$VENV/bin/python")"
STAMP="$VENV/.beam_distil_installed"
WANT="$( (cat "$ROOT/setup.py" "${BASH_SOURCE[0]}" "$ROOT/scripts/install.sh" "$ROOT/scripts/llama_wheel.sh"; echo "$LLAMA_WHEELS") | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  bash "$ROOT/scripts/install.sh" "$VENV/bin/python" -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
