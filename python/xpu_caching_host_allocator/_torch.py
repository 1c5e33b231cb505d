"""The PyTorch extension ``_C``, loaded only when a PyTorch feature is used.

``import xpu_caching_host_allocator`` never imports torch: the C API works
without it. The extension is built against one torch (``_build_info``) and
refuses another, whose C++ ABI may differ.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Optional

from . import _build_info

_lock = threading.Lock()
_extension: Optional[ModuleType] = None


def _release(version: str) -> str:
    """``2.15.0+cu132`` -> ``2.15.0``: the local label names the wheel's variant, not its C++ ABI."""
    return version.split("+", 1)[0]


def torch_imported() -> bool:
    """Whether this process has imported torch (nothing of PyTorch can be ours otherwise)."""
    return sys.modules.get("torch") is not None


def extension() -> ModuleType:
    """The extension, importing torch first (its libraries must be loaded before it).

    Raises RuntimeError, saying why and what to do, when there is none or it
    does not fit the torch installed.
    """
    global _extension
    if _extension is not None:
        return _extension
    with _lock:
        if _extension is not None:
            return _extension
        built_against = _build_info.TORCH_VERSION
        if not built_against:
            raise RuntimeError(
                "xpu_caching_host_allocator was built without its PyTorch extension (no torch >= 2.8 was "
                "installed when it was built). Install torch >= 2.8 first, then reinstall this package in "
                "the same environment with `pip install .`"
            )
        try:
            import torch
        except ImportError as error:
            raise RuntimeError(f"xpu_caching_host_allocator's PyTorch features need torch: {error}") from error
        if _release(torch.__version__) != _release(built_against):
            raise RuntimeError(
                f"xpu_caching_host_allocator's PyTorch extension was built against torch {built_against}, "
                f"but torch {torch.__version__} is installed; its C++ ABI may differ. Reinstall this package "
                "with `pip install --force-reinstall .` in this environment"
            )
        _extension = importlib.import_module(f"{__package__}._C")
        return _extension


def extension_if_loaded() -> Optional[ModuleType]:
    """The extension if it is loaded already, without importing anything."""
    return _extension
