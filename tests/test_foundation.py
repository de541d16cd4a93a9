"""The package set-up: our top-level packages, libLLVM discovery and the Mitsuba variant."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["twin", "calibrate", "learn", "cli", "scenes"])
def test_packages_import_from_this_repository(name):
    module = importlib.import_module(name)
    assert os.path.realpath(module.__file__).startswith(str(REPO)), module.__file__


def test_llvm_version_parsing():
    from twin.engine import _llvm_version

    assert _llvm_version("/usr/lib/x86_64-linux-gnu/libLLVM-19.so") == 19
    assert _llvm_version("/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1") == 19
    assert _llvm_version("/usr/lib/llvm-17/lib/libLLVM.so") == 17
    assert _llvm_version("/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1") == 14


def test_import_sets_drjit_llvm_path_to_a_recent_llvm():
    from twin.engine import MIN_LLVM_VERSION, _llvm_version

    env = {k: v for k, v in os.environ.items() if k != "DRJIT_LIBLLVM_PATH"}
    out = subprocess.run([sys.executable, "-c", "import twin, os; print(os.environ['DRJIT_LIBLLVM_PATH'])"],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert os.path.exists(out)
    assert _llvm_version(out) >= MIN_LLVM_VERSION


def test_old_llvm_gives_one_clear_error():
    code = (
        "import os; os.environ['DRJIT_LIBLLVM_PATH']='/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1';"
        "os.environ['TWIN_MITSUBA_VARIANT']='llvm_ad_mono_polarized';"
        "from twin.engine import ensure_variant\n"
        "try:\n ensure_variant()\nexcept Exception as e: print(type(e).__name__, e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("EngineError")
    assert "libllvm19" in out and "16" in out


def test_variant_is_a_radio_variant():
    from twin.engine import ensure_variant

    variant = ensure_variant()
    # A CPU fallback to a non-radio variant (scalar_rgb ...) was a defect of the papers' code.
    assert variant in ("llvm_ad_mono_polarized", "cuda_ad_mono_polarized")
