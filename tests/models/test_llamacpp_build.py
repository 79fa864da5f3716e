"""The llama.cpp library the project installs runs on any x86-64 CPU with AVX2, not only on the machine that
compiled it: no AVX-512 or AMX instruction in it (a native build on an AMX machine crashes in-process with
SIGSEGV, and with SIGILL on older CPUs), and a wheel built with other flags is never picked up instead."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LLAMA_WHEEL_SCRIPT = REPO_ROOT / "scripts" / "llama_wheel.sh"
AMX_MNEMONICS = ("ldtilecfg", "tileloadd", "tilestored", "tdpbssd", "tdpbf16ps", "tdpbusd", "tilezero")
# AVX-512 shows as zmm registers, the 16 upper xmm/ymm registers (EVEX only) or opmask registers.
AVX512_OPERANDS = re.compile(r"%zmm|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\{%k[1-7]\}")


def instruction_counts(library: Path) -> Dict[str, int]:
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True
    ).stdout
    return {
        "avx512_registers": len(AVX512_OPERANDS.findall(listing)),
        "amx": sum(listing.count(mnemonic) for mnemonic in AMX_MNEMONICS),
        "avx2_registers": listing.count("%ymm"),
    }


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the baseline is defined for x86-64")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils) to read the library")
@pytest.mark.skipif(
    bool(os.environ.get("BEAM_DISTIL_LLAMA_CMAKE_ARGS")),
    reason="BEAM_DISTIL_LLAMA_CMAKE_ARGS asks for another build on purpose",
)
def test_installed_llama_cpp_stays_within_the_portable_baseline() -> None:
    import llama_cpp

    libraries = sorted({path.resolve() for path in (Path(llama_cpp.__file__).parent / "lib").glob("lib*.so*")})
    assert any(path.name.startswith("libggml-cpu") for path in libraries), libraries

    counts = {path.name: instruction_counts(path) for path in libraries}

    for name, count in counts.items():
        assert count["avx512_registers"] == 0, f"{name} uses AVX-512: built for the build machine's CPU?"
        assert count["amx"] == 0, f"{name} uses AMX tiles: built for the build machine's CPU?"
    cpu_backend = next(count for name, count in counts.items() if name.startswith("libggml-cpu"))
    assert cpu_backend["avx2_registers"] > 1000  # the baseline is AVX2, not a slow generic build


def test_a_wheel_built_with_other_flags_lives_in_another_folder(tmp_path) -> None:
    def folder(**env: str) -> str:
        environment = {key: value for key, value in os.environ.items() if key != "BEAM_DISTIL_LLAMA_CMAKE_ARGS"}
        environment.update(BEAM_DISTIL_WHEELHOUSE=str(tmp_path), **env)
        result = subprocess.run(
            ["bash", str(LLAMA_WHEEL_SCRIPT), "--where"], env=environment, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    portable = folder()
    native = folder(BEAM_DISTIL_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON")

    assert portable == folder()  # the same flags find the same wheel again
    assert native != portable
    assert Path(portable).parent == Path(native).parent == tmp_path
    assert "llama-cpp-python-0.3.36-" in Path(portable).name  # the version setup.py pins
