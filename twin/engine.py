"""The one place that picks the Mitsuba variant and finds libLLVM for Dr.Jit's CPU backend.

Dr.Jit's LLVM backend needs a shared libLLVM of version 16 or newer; with 14/15 the
first trace dies with ``LLVM ERROR: Cannot select ... fmaximum``. :func:`configure_llvm`
runs when ``twin`` is imported, before Mitsuba is, and sets ``DRJIT_LIBLLVM_PATH`` when
unset. :func:`ensure_variant` selects the CUDA variant when a GPU is usable and the LLVM
variant otherwise; ``TWIN_MITSUBA_VARIANT`` forces one. Nothing else calls ``set_variant``.
"""

from __future__ import annotations

import glob
import os
import re
from types import ModuleType

from twin.errors import EngineError

__all__ = ["find_libllvm", "configure_llvm", "ensure_variant", "MIN_LLVM_VERSION", "sionna_rt"]

MIN_LLVM_VERSION = 16
VARIANT_ENV = "TWIN_MITSUBA_VARIANT"
CUDA_VARIANT = "cuda_ad_mono_polarized"
LLVM_VARIANT = "llvm_ad_mono_polarized"

_SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
    "/usr/local/lib", "/opt/homebrew/opt/llvm/lib", "/usr/local/opt/llvm/lib",
)
_INSTALL_HINT = (
    "install libLLVM 16 or newer (Debian/Ubuntu: `apt-get install libllvm19`; "
    "`make setup` does it) or point DRJIT_LIBLLVM_PATH at such a libLLVM.so"
)


def _llvm_version(path: str) -> int | None:
    name = os.path.basename(path)
    match = re.search(r"LLVM[-.](?:so\.)?(\d+)", name) or re.search(r"llvm-(\d+)", path)
    return int(match.group(1)) if match else None


def find_libllvm() -> str | None:
    """The newest shared libLLVM of version >= 16 on this machine, or None."""
    candidates: list[tuple[int, str]] = []
    patterns = [f"{d}/libLLVM*.so*" for d in _SEARCH_DIRS]
    patterns += ["/usr/lib/llvm-*/lib/libLLVM*.so*", "/opt/homebrew/opt/llvm/lib/libLLVM.dylib"]
    for pattern in patterns:
        for path in glob.glob(pattern):
            version = _llvm_version(path)
            if version is not None and version >= MIN_LLVM_VERSION and os.path.isfile(path):
                candidates.append((version, path))
    return max(candidates)[1] if candidates else None


def configure_llvm() -> str | None:
    """Set ``DRJIT_LIBLLVM_PATH`` to a suitable libLLVM when unset; return the path in force."""
    current = os.environ.get("DRJIT_LIBLLVM_PATH")
    if current:
        return current
    found = find_libllvm()
    if found:
        os.environ["DRJIT_LIBLLVM_PATH"] = found
    return found


def _cuda_usable() -> bool:
    try:
        import drjit as dr

        return bool(dr.has_backend(dr.JitBackend.CUDA))
    except Exception:  # noqa: BLE001 - any failure means no usable CUDA
        return False


def ensure_variant() -> str:
    """Select the Mitsuba variant once (CUDA if usable, else LLVM) and return its name.

    Raises :class:`EngineError` with what to install when neither backend works.
    """
    configure_llvm()
    import mitsuba as mi

    if mi.variant() is not None:
        return str(mi.variant())
    forced = os.environ.get(VARIANT_ENV)
    wanted = [forced] if forced else ([CUDA_VARIANT] if _cuda_usable() else []) + [LLVM_VARIANT]
    errors = []
    for variant in wanted:
        if variant == LLVM_VARIANT:
            path = os.environ.get("DRJIT_LIBLLVM_PATH")
            version = _llvm_version(path) if path else None
            if path is None:
                raise EngineError(f"no libLLVM >= {MIN_LLVM_VERSION} found for Dr.Jit's CPU backend: {_INSTALL_HINT}")
            if version is not None and version < MIN_LLVM_VERSION:
                raise EngineError(
                    f"DRJIT_LIBLLVM_PATH={path} is libLLVM {version}; Dr.Jit needs >= {MIN_LLVM_VERSION} "
                    f"(older ones fail with 'Cannot select ... fmaximum'): {_INSTALL_HINT}"
                )
        try:
            mi.set_variant(variant)
            return variant
        except Exception as err:  # noqa: BLE001 - collected into one message below
            errors.append(f"{variant}: {err}")
    raise EngineError("no Mitsuba variant could be selected (" + "; ".join(errors) + f"); {_INSTALL_HINT}")


def sionna_rt() -> ModuleType:
    """Import ``sionna.rt`` after selecting the variant here (so it never picks its own)."""
    ensure_variant()
    import sionna.rt

    return sionna.rt
