"""xpu_caching_host_allocator: pinned host memory for PyTorch XPU, from Python.

The package bundles the Rust library (``lib/libxpu_caching_host_allocator.so.0``)
and, when it was built with torch >= 2.8 installed, a small PyTorch extension
that registers the library's ``at::HostAllocator`` adapter with PyTorch::

    import xpu_caching_host_allocator as xha

    xha.configure("pinned_max_cached_size_mb:4096")   # optional, before enable()
    xha.enable()                                       # PyTorch's XPU host allocator is now ours
    ...
    xha.host_memory_stats()["cache_hits"]

Names follow PyTorch's (``torch.cuda.host_memory_stats``,
``torch.cuda.memory._record_memory_history``, ...). Without PyTorch
everything but ``enable``, ``is_enabled`` and ``empty_pinned`` works, through
ctypes. Every function is thread-safe. The library needs a Level Zero
driver: Intel's GPU driver, or any driver the Level Zero loader is pointed at
with ``ZE_ENABLE_ALT_DRIVERS`` before the process starts.
"""

from __future__ import annotations

import collections
import ctypes
import pickle
import sys
import threading
from typing import TYPE_CHECKING, Any, Literal, Optional

try:
    from . import _build_info
except ImportError as _error:  # the source tree: _build_info.py is written by the build
    raise ImportError(
        "xpu_caching_host_allocator is not built here (no _build_info.py): install it with "
        "`pip install .` from the repository, and import it from outside python/"
    ) from _error
from . import _history, _lib, _torch
from ._history import HistoryOffError
from ._lib import (
    AllocatorError,
    AlreadyInitializedError,
    ConfigurationError,
    Error,
    InvalidArgumentError,
    NoDriverError,
    OutOfMemoryError,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "AllocatorError",
    "AlreadyInitializedError",
    "ConfigurationError",
    "Error",
    "HistoryOffError",
    "InvalidArgumentError",
    "NoDriverError",
    "OutOfMemoryError",
    "__version__",
    "configure",
    "describe",
    "empty_cache",
    "empty_pinned",
    "enable",
    "host_caching_allocator_alloc",
    "host_caching_allocator_delete",
    "host_memory_stats",
    "host_memory_stats_as_nested_dict",
    "init",
    "is_enabled",
    "library_version",
    "reset_accumulated_host_memory_stats",
    "reset_peak_host_memory_stats",
    "stats_string",
    "torch_extension_version",
]

__version__: str = _build_info.LIBRARY_VERSION


def library_version() -> str:
    """The version of the library loaded, ``major.minor.patch`` (``xpu_host_version``)."""
    encoded = int(_lib.lib().xpu_host_version())
    return f"{encoded >> 16}.{(encoded >> 8) & 0xFF}.{encoded & 0xFF}"


def torch_extension_version() -> Optional[str]:
    """The torch version the PyTorch extension was built against, or None if it was not built."""
    return _build_info.TORCH_VERSION or None


# --- settings and start -----------------------------------------------------


def configure(settings: str) -> None:
    """Applies settings in PyTorch's ``key:value,key:value`` form, before the allocator starts.

    The keys are the library's (``pinned_fit``, ``pinned_max_cached_size_mb``,
    ``pinned_use_background_threads``, ...; the README's Configuration table),
    applied over ``PYTORCH_ALLOC_CONF``'s ``pinned_*`` keys and
    ``XPU_CACHING_HOST_ALLOCATOR_CONF``. They take effect when the allocator
    starts: at ``init()``, ``enable()`` or the first allocation.

    Raises:
        ConfigurationError (a ValueError): an unknown key or a bad value; nothing changes.
        AlreadyInitializedError (a RuntimeError): the allocator has started; nothing changes.
    """
    if not isinstance(settings, str):
        raise TypeError(f"configure() takes a str, not {type(settings).__name__}")
    _lib.check(_lib.lib().xpu_host_configure(settings.encode("utf-8")), "xpu_host_configure")


def init() -> None:
    """Starts the allocator now, so that a missing driver is reported now (NoDriverError). Idempotent."""
    _lib.check(_lib.lib().xpu_host_init(), "xpu_host_init")


def describe() -> str:
    """One line: the Level Zero driver and devices in use (starts the allocator)."""
    return _lib.read_string("xpu_host_describe")


# --- PyTorch ------------------------------------------------------------------

_enable_lock = threading.Lock()


def enable(priority: int = 1) -> None:
    """Makes this library PyTorch's host (pinned-memory) allocator for XPU.

    Calls ``at::setHostAllocator(at::kXPU, adapter, priority)`` through the
    package's PyTorch extension, after starting the allocator (so a missing
    driver is reported here). PyTorch XPU registers its own with priority 0;
    the default 1 wins over it. From then on PyTorch's pinned memory --
    ``tensor.pin_memory()``, ``torch.empty(..., pin_memory=True)``,
    ``DataLoader(pin_memory=True)``, non-blocking copies -- comes from this
    allocator. Call it before other threads use PyTorch (PyTorch's
    registration is not thread-safe; calls from this package are serialised).

    Raises:
        ValueError: ``priority`` is not 0 to 255.
        RuntimeError: no usable PyTorch extension (the message says why), or
            PyTorch kept an allocator registered with a higher priority.
        NoDriverError: no Level Zero driver.
    """
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255:
        raise ValueError(f"priority must be an int from 0 to 255, not {priority!r}")
    extension = _torch.extension()
    init()
    with _enable_lock:
        extension.register_with_pytorch(priority)
        if not extension.is_registered():
            raise RuntimeError(
                f"PyTorch kept its host allocator for XPU ({extension.registered_name()}), registered with a "
                f"priority higher than {priority}: call enable() with a higher priority"
            )


def is_enabled() -> bool:
    """Whether ``at::getHostAllocator(at::kXPU)`` is this package's allocator."""
    if not _torch.torch_imported():
        return False
    try:
        extension = _torch.extension()
    except RuntimeError:
        return False
    return bool(extension.is_registered())


def empty_pinned(size: int) -> "torch.Tensor":
    """A CPU ``uint8`` tensor of ``size`` bytes whose storage comes from PyTorch's
    registered XPU host allocator (``at::getHostAllocator(at::kXPU)->allocate``),
    as PyTorch's own pinned tensors' does. Call ``enable()`` first.

    Raises:
        RuntimeError: no host allocator registered for XPU, or no PyTorch extension.
        torch.OutOfMemoryError: no pinned memory left.
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size must be 0 or more, not {size}")
    tensor: "torch.Tensor" = _torch.extension().empty_pinned(size)
    return tensor


# --- raw blocks (no PyTorch needed) -------------------------------------------

_blocks_lock = threading.Lock()
_blocks: dict[int, int] = {}


def host_caching_allocator_alloc(size: int) -> int:
    """Allocates ``size`` bytes of pinned memory (512-aligned) and returns its address (0 for size 0).

    The C API's ``xpu_host_allocate``, as ``torch.cuda.caching_allocator_alloc``
    is for device memory; give it back with ``host_caching_allocator_delete``.
    Works without PyTorch.
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size must be 0 or more, not {size}")
    data = ctypes.c_void_p()
    context = ctypes.c_void_p()
    _lib.check(_lib.lib().xpu_host_allocate(size, ctypes.byref(data), ctypes.byref(context)), "xpu_host_allocate")
    address = data.value or 0
    if address:
        with _blocks_lock:
            _blocks[address] = context.value or 0
    return address


def host_caching_allocator_delete(address: int) -> None:
    """Frees memory from ``host_caching_allocator_alloc`` (0 does nothing).

    Raises:
        InvalidArgumentError (a ValueError): not an address this function handed out, or freed already.
    """
    if not address:
        return
    with _blocks_lock:
        context = _blocks.pop(address, None)
    if context is None:
        raise InvalidArgumentError(
            f"host_caching_allocator_delete: {address:#x} is not memory host_caching_allocator_alloc handed out "
            "(or it was freed already)",
            _lib.ERROR_UNKNOWN_BLOCK,
        )
    _lib.check(_lib.lib().xpu_host_free(context), "xpu_host_free")


# --- statistics ---------------------------------------------------------------

#: The keys PyTorch 2.15's torch.cuda.host_memory_stats_as_nested_dict() has, in its order.
TORCH_KEYS = (
    "num_host_alloc",
    "num_host_free",
    "allocations",
    "active_requests",
    "allocated_bytes",
    "active_bytes",
    "host_alloc_time",
    "host_free_time",
)


def host_memory_stats_as_nested_dict() -> dict[str, Any]:
    """The statistics as a nested dict: PyTorch's keys first, then the library's own.

    PyTorch 2.15's (``torch.cuda.host_memory_stats_as_nested_dict()``):
    ``allocations``, ``allocated_bytes`` (blocks and bytes held from the
    backend; blocks of up to 32 KiB share 64 KiB driver allocations),
    ``active_requests``, ``active_bytes`` (handed out), each ``{current,
    peak, allocated, freed}``; ``host_alloc_time`` and ``host_free_time``
    (µs in the backend's calls: ``{total, max, min, count, avg}``);
    ``num_host_alloc``, ``num_host_free``. The library's own:
    ``requested_bytes``, ``pending_blocks`` (freed, waiting for stream
    events), ``cached_bytes`` (gauges), ``cache_hits``, ``cache_misses``,
    ``retired_blocks``, ``idle_bytes``, ``largest_free_block``,
    ``captured_blocks``, ``backend_unused_bytes`` (free room in the slabs
    small blocks share). All 0 before the allocator starts.
    """
    stats = _lib.Stats()
    stats.size = ctypes.sizeof(_lib.Stats)
    _lib.check(_lib.lib().xpu_host_get_stats(ctypes.byref(stats)), "xpu_host_get_stats")
    counters = stats.counters
    values: dict[str, Any] = {}
    for name in _lib.GAUGES:
        stat = getattr(counters, name)
        values[name] = {"current": stat.current, "peak": stat.peak, "allocated": stat.allocated, "freed": stat.freed}
    for name in _lib.DURATIONS:
        duration = getattr(counters, name)
        values[name] = {
            "total": duration.total_us,
            "max": duration.max_us,
            "min": duration.min_us,
            "count": duration.count,
            # As PyTorch's: integer microseconds, 0 before any call.
            "avg": duration.total_us // duration.count if duration.count else 0,
        }
    for name in _lib.COUNTS:
        values[name] = getattr(counters, name)
    ordered = {name: values.pop(name) for name in TORCH_KEYS}
    ordered.update(values)
    return ordered


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out.append((prefix, value))


def host_memory_stats() -> dict[str, Any]:
    """The statistics as a flat dict, as ``torch.cuda.host_memory_stats()`` has them.

    The nested dict flattened with ``"."`` and sorted (``"allocations.current"``,
    ``"host_alloc_time.avg"``, ``"num_host_alloc"``, ...): the same keys as
    PyTorch 2.15's, plus the library's (``"cache_hits"``, ``"cached_bytes.current"``,
    ``"pending_blocks.current"``, ...). See ``host_memory_stats_as_nested_dict``.
    """
    flat: list[tuple[str, Any]] = []
    _flatten("", host_memory_stats_as_nested_dict(), flat)
    flat.sort()
    return collections.OrderedDict(flat)


def reset_peak_host_memory_stats() -> None:
    """Sets every peak to its current value."""
    _lib.lib().xpu_host_reset_peak_stats()


def reset_accumulated_host_memory_stats() -> None:
    """Sets every ``allocated``/``freed`` total, time and count to 0."""
    _lib.lib().xpu_host_reset_accumulated_stats()


def stats_string() -> str:
    """The statistics as the library's one line for logs."""
    return _lib.read_string("xpu_host_stats_string")


def empty_cache() -> None:
    """Returns every free cached block to the driver (blocks in use or waiting for events stay)."""
    _lib.check(_lib.lib().xpu_host_empty_cache(), "xpu_host_empty_cache")


# --- memory history -----------------------------------------------------------


def _record_memory_history(
    enabled: _history.Enabled = "all",
    context: _history.ContextLevel = "all",
    stacks: Literal["python", "all"] = "all",
    max_entries: int = sys.maxsize,
    clear_history: bool = False,
) -> None:
    """Turns memory history on or off, as ``torch.cuda.memory._record_memory_history``.

    Args:
        enabled: "all" or True records every allocation, free requested, free
            completed, and memory got from and given back to the driver; None
            or False stops recording (entries are kept until cleared).
        context: which events keep a stack: None, "state" (live blocks only),
            "alloc" (also allocations in the trace), "all" (also frees).
        stacks: Python frames are gathered either way; C++ frames are not
            ("all" is accepted for PyTorch's signature).
        max_entries: the most trace entries kept; the oldest go first.
        clear_history: drop the entries kept so far.

    Raises:
        ValueError: a bad argument; nothing changes.
    """
    _history.record_memory_history(enabled, context, stacks, max_entries, clear_history)


def _snapshot() -> dict[str, Any]:
    """The memory history and the blocks held now, in the layout of ``torch.cuda.memory._snapshot()``.

    ``segments``: one per block holding memory (device 0: the host), each with
    one block whose ``state`` is ``active_allocated``, ``active_pending_free``
    or ``inactive``, and the frames it was allocated from;
    ``device_traces``: one list, the host's, of trace entries (``action``,
    ``addr``, ``size``, ``stream``, ``time_us``, ``pool_id``, ``frames``), oldest
    first. PyTorch's ``torch.cuda._memory_viz`` reads it, and so does
    ``python -m xpu_caching_host_allocator.viz``. Also ``xpu_host``: the
    library's version and statistics.

    Raises:
        HistoryOffError (a RuntimeError): memory history is off; call ``_record_memory_history()`` first.
    """
    extra = {
        "xpu_host": {
            "library_version": library_version(),
            "package_version": __version__,
            "stats": host_memory_stats_as_nested_dict(),
        }
    }
    return _history.snapshot(extra)


def _dump_snapshot(filename: str = "dump_snapshot.pickle") -> None:
    """Writes ``_snapshot()`` to ``filename`` as a pickle, as ``torch.cuda.memory._dump_snapshot``."""
    snap = _snapshot()
    with open(filename, "wb") as f:
        pickle.dump(snap, f)
