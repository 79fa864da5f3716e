#!/usr/bin/env bash
# distilabel 1.5.3's own unit tests (areas.py) with their imports renamed to beam_distil, run with the project's
# python (<repo>/.venv). Prints pass/total per area, API and "internals, not API" apart, counting only the tests
# that pass on distilabel 1.5.3 itself on this machine.
#   strict:  the files as a user would port them (a missing name fails its whole file);
#   lenient: names beam_distil lacks become placeholders, so only the tests using them fail.
#
# Usage: benchmarks/distilabel_compat/run.sh [--causes]     (--causes: failure groups with one example each)
#
# First use sets up, under the gitignored work folder (DISTILABEL_COMPAT_WORK, default ./work):
#   sdist/    distilabel 1.5.3's sdist from PyPI (its tests/unit is copied into ref/, suite/, suite_lenient/)
#   refvenv/  distilabel 1.5.3 and what its tests need, to find which tests pass on distilabel itself
#   plugins/  pytest-timeout, pytest-asyncio, universal_pathlib, nltk for the copied tests, on PYTHONPATH of the
#             beam_distil run only (the project venv is left as it is)
# Delete the work folder (or one of those) to set it up again.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="$REPO/.venv/bin/python"
WORK="${DISTILABEL_COMPAT_WORK:-$HERE/work}"
VERSION=1.5.3
SDIST="$WORK/sdist/distilabel-$VERSION"
REFPY="$WORK/refvenv/bin/python"
# what distilabel's unit tests import besides distilabel (its "tests" extra, minus the benchmark plugin)
REF_PACKAGES=("distilabel[openai,instructor,minhash,vision]==$VERSION" pytest pytest-asyncio pytest-timeout nest-asyncio)
# installed into plugins/ at the versions the reference venv resolved
PLUGIN_PACKAGES=(pytest-timeout pytest-asyncio universal_pathlib pathlib_abc nltk joblib)

[ -x "$PY" ] || { echo "no project python at $PY: create <repo>/.venv first" >&2; exit 1; }
mkdir -p "$WORK"
cd "$WORK"
log="$WORK/setup.log"
step() { echo "[setup] $1 (log: $log)"; }

if [ ! -f "$WORK/refvenv/.ready" ]; then
  step "reference venv: distilabel $VERSION and its test tools"
  start=$SECONDS
  rm -rf refvenv ref_results.xml
  "$PY" -m venv refvenv >>"$log" 2>&1
  refvenv/bin/python -m pip install -q "${REF_PACKAGES[@]}" >>"$log" 2>&1
  touch refvenv/.ready
  echo "[setup] reference venv ready in $((SECONDS - start)) s"
fi

if [ ! -d "$SDIST/tests/unit" ]; then
  step "distilabel $VERSION sdist from PyPI"
  rm -rf sdist
  "$REFPY" -m pip download -q "distilabel==$VERSION" --no-binary :all: --no-deps -d sdist >>"$log" 2>&1
  tar -xzf "sdist/distilabel-$VERSION.tar.gz" -C sdist
fi

if [ ! -f plugins/.ready ]; then
  step "pytest plugins for the project python"
  rm -rf plugins
  pins=$("$REFPY" -c 'import sys; from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' "${PLUGIN_PACKAGES[@]}")
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-deps --target plugins $pins >>"$log" 2>&1
  touch plugins/.ready
fi

"$PY" "$HERE/prepare.py" "$SDIST/tests/unit" "$REPO/beam_distil" "$WORK" >/dev/null

if [ ! -f ref_results.xml ]; then
  echo "[setup] distilabel $VERSION's tests on distilabel itself (once; ref_results.xml)"
  (cd ref && HF_HUB_OFFLINE=1 timeout 1800 "$REFPY" -m pytest -q -p no:cacheprovider --timeout 120 -W ignore \
     --continue-on-collection-errors tests/unit --junitxml=../ref_results.xml >../ref_run.log 2>&1 || true)
  echo "=== distilabel $VERSION itself: $(tail -n 1 ref_run.log)"
fi

export PYTHONPATH="$WORK/plugins${PYTHONPATH:+:$PYTHONPATH}"
for mode in strict lenient; do
  dir=suite; [ "$mode" = lenient ] && dir=suite_lenient
  (cd "$dir" && HF_HUB_OFFLINE=1 timeout 1800 "$PY" -m pytest -q -p no:cacheprovider -p timeout --timeout 120 \
     -W ignore --continue-on-collection-errors tests/unit --junitxml="../beam_results_$mode.xml" \
     >"../beam_run_$mode.log" 2>&1 || true)
  echo "=== $mode: $(tail -n 1 "beam_run_$mode.log")"
  "$PY" "$HERE/report.py" ref_results.xml "beam_results_$mode.xml" "$@"
  echo
done
