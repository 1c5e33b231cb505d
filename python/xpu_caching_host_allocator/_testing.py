"""For tests: a PrivateUse1 backend that drives PyTorch's own pinned-memory paths.

A CPU-only PyTorch has no accelerator, so ``tensor.pin_memory()``,
``tensor.is_pinned()``, ``torch.empty(..., pin_memory=True)`` and
``DataLoader(pin_memory=True)`` have nothing to pin for. PyTorch's
open-registration tests register a PrivateUse1 backend to exercise them;
this one does the same, with hooks whose ``getPinnedMemoryAllocator()`` is
``at::getHostAllocator(at::kXPU)`` -- the allocator ``enable()`` registered --
and whose ``isPinnedPtr`` asks the library. It is what a PyTorch XPU build's
XPU hooks do, minus the device.

It renames PrivateUse1 for the whole process and cannot be undone: use it in
a process of its own.
"""

from __future__ import annotations

import threading
import types

from . import _torch

_lock = threading.Lock()
_registered: str = ""


def register_privateuse1_test_backend(name: str = "xpuhosttest") -> str:
    """Registers the test backend under ``name`` (once per process) and returns the name.

    After it, ``torch.accelerator.current_accelerator()`` is ``name`` and
    PyTorch pins through the registered XPU host allocator.
    """
    global _registered
    with _lock:
        if _registered:
            if name != _registered:
                raise RuntimeError(f"the test backend is registered as {_registered!r} already")
            return _registered
        extension = _torch.extension()
        import torch

        extension.register_test_backend()
        torch.utils.rename_privateuse1_backend(name)
        module = types.ModuleType(f"torch.{name}")
        module.is_available = lambda: True  # type: ignore[attr-defined]
        module.device_count = lambda: 1  # type: ignore[attr-defined]
        module.current_device = lambda: 0  # type: ignore[attr-defined]
        module.is_initialized = lambda: True  # type: ignore[attr-defined]
        module._is_in_bad_fork = lambda: False  # type: ignore[attr-defined]
        module.manual_seed_all = lambda seed: None  # type: ignore[attr-defined]

        def set_device(device: object) -> None:
            index = device.index if isinstance(device, torch.device) else device
            if index not in (None, 0, -1):
                raise RuntimeError(f"the test backend has one device, index 0; not {device}")

        module.set_device = set_device  # type: ignore[attr-defined]
        torch._register_device_module(name, module)
        _registered = name
        return name
