"""The bundled library's C API through ctypes (include/xpu_caching_host_allocator.h).

Loaded once, from the package's own ``lib/`` directory, where the PyTorch
extension's RUNPATH finds the same file: one allocator per process, whether
the C API is reached from here or from PyTorch.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Optional

from . import _build_info

# xpu_host_result (the header's enum).
SUCCESS = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_OUT_OF_MEMORY = 2
ERROR_SIZE_TOO_LARGE = 3
ERROR_UNKNOWN_BLOCK = 4
ERROR_NOT_ALLOCATED = 5
ERROR_NO_DRIVER = 6
ERROR_LEVEL_ZERO = 7
ERROR_ALREADY_INITIALIZED = 8
ERROR_INTERNAL = 9
ERROR_INVALID_CONFIGURATION = 10
ERROR_FORKED = 11
ERROR_EXITING = 12
ERROR_UNKNOWN_POOL = 13
ERROR_POOL_BUSY = 14
ERROR_NO_CAPTURE_HOOKS = 15

_RESULT_NAMES = {
    value: name
    for name, value in globals().items()
    if name == "SUCCESS" or (name.startswith("ERROR_") and isinstance(value, int))
}


class Error(Exception):
    """A call into the library failed; ``code`` is its ``xpu_host_result``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def code_name(self) -> str:
        """The result's name in the C header, e.g. ``XPU_HOST_ERROR_NO_DRIVER``."""
        return "XPU_HOST_" + _RESULT_NAMES.get(self.code, f"ERROR_{self.code}")


class ConfigurationError(Error, ValueError):
    """A configuration string with an unknown key or a bad value."""


class InvalidArgumentError(Error, ValueError):
    """An argument the library cannot take: a bad size, a pointer not its own, a double free."""


class AllocatorError(Error, RuntimeError):
    """The library refused in its present state, or the driver failed."""


class AlreadyInitializedError(AllocatorError):
    """A setting that must come before the allocator starts, after it started."""


class NoDriverError(AllocatorError):
    """No Level Zero driver (the message says which was looked for)."""


class OutOfMemoryError(AllocatorError, MemoryError):
    """No pinned memory left, even after emptying the cache and retrying once."""


_EXCEPTIONS: dict[int, type[Error]] = {
    ERROR_INVALID_CONFIGURATION: ConfigurationError,
    ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    ERROR_SIZE_TOO_LARGE: InvalidArgumentError,
    ERROR_UNKNOWN_BLOCK: InvalidArgumentError,
    ERROR_NOT_ALLOCATED: InvalidArgumentError,
    ERROR_ALREADY_INITIALIZED: AlreadyInitializedError,
    ERROR_NO_DRIVER: NoDriverError,
    ERROR_OUT_OF_MEMORY: OutOfMemoryError,
}


class Stat(ctypes.Structure):
    _fields_ = [("current", ctypes.c_int64), ("peak", ctypes.c_int64), ("allocated", ctypes.c_int64), ("freed", ctypes.c_int64)]


class DurationStat(ctypes.Structure):
    _fields_ = [("total_us", ctypes.c_int64), ("max_us", ctypes.c_int64), ("min_us", ctypes.c_int64), ("count", ctypes.c_int64)]


#: xpu_host_counters, in the header's order: gauges, then durations, then counts.
GAUGES = ("allocations", "allocated_bytes", "active_requests", "active_bytes", "requested_bytes", "pending_blocks", "cached_bytes")
DURATIONS = ("host_alloc_time", "host_free_time")
COUNTS = (
    "num_host_alloc",
    "num_host_free",
    "cache_hits",
    "cache_misses",
    "retired_blocks",
    "idle_bytes",
    "largest_free_block",
    "captured_blocks",
    "backend_unused_bytes",
)


class Counters(ctypes.Structure):
    _fields_ = (
        [(name, Stat) for name in GAUGES]
        + [(name, DurationStat) for name in DURATIONS]
        + [(name, ctypes.c_int64) for name in COUNTS]
    )


class Stats(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("counters", Counters)]


class Stream(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int8), ("device_index", ctypes.c_int8), ("id", ctypes.c_int64)]


class PoolId(ctypes.Structure):
    _fields_ = [("first", ctypes.c_uint64), ("second", ctypes.c_uint64)]


GATHER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
RELEASE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class HistoryRecorder(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("user_data", ctypes.c_void_p), ("gather", GATHER), ("release", RELEASE)]


class TraceEntry(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("action", ctypes.c_int),
        ("address", ctypes.c_size_t),
        ("bytes", ctypes.c_size_t),
        ("stream", Stream),
        ("pool", PoolId),
        ("time_us", ctypes.c_int64),
        ("context", ctypes.c_void_p),
    ]


class Segment(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("address", ctypes.c_size_t),
        ("bytes", ctypes.c_size_t),
        ("allocated", ctypes.c_bool),
        ("active", ctypes.c_bool),
        ("pool", PoolId),
        ("context", ctypes.c_void_p),
    ]


TRACE_VISITOR = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(TraceEntry))
SEGMENT_VISITOR = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(Segment))

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None


def library_path() -> str:
    """The bundled library file."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", _build_info.LIBRARY_FILE)


def _declare(lib: ctypes.CDLL) -> None:
    result = ctypes.c_int
    signatures = {
        "xpu_host_version": (ctypes.c_uint32, []),
        "xpu_host_configure": (result, [ctypes.c_char_p]),
        "xpu_host_init": (result, []),
        "xpu_host_allocate": (result, [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]),
        "xpu_host_free": (result, [ctypes.c_void_p]),
        "xpu_host_record_stream": (result, [ctypes.c_void_p, ctypes.c_void_p, Stream, ctypes.POINTER(ctypes.c_bool)]),
        "xpu_host_empty_cache": (result, []),
        "xpu_host_describe": (result, [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
        "xpu_host_get_stats": (result, [ctypes.POINTER(Stats)]),
        "xpu_host_stats_string": (result, [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
        "xpu_host_reset_peak_stats": (None, []),
        "xpu_host_reset_accumulated_stats": (None, []),
        "xpu_host_last_error_message": (ctypes.c_char_p, []),
        "xpu_host_record_history": (result, [ctypes.c_bool, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(HistoryRecorder), ctypes.c_bool]),
        "xpu_host_history_enabled": (ctypes.c_bool, []),
        "xpu_host_get_traces": (result, [TRACE_VISITOR, ctypes.c_void_p]),
        "xpu_host_get_segments": (result, [SEGMENT_VISITOR, ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def lib() -> ctypes.CDLL:
    """The library, loaded on first use."""
    global _library
    if _library is None:
        with _lock:
            if _library is None:
                path = library_path()
                if not os.path.exists(path):
                    raise ImportError(
                        f"xpu_caching_host_allocator: the bundled library {path} is missing; "
                        "install the package with pip (pip install .) rather than running it from the source tree"
                    )
                loaded = ctypes.CDLL(path)
                _declare(loaded)
                _library = loaded
    return _library


def last_error_message() -> str:
    """The calling thread's last error message from the library."""
    message = lib().xpu_host_last_error_message()
    return message.decode("utf-8", "replace") if message else ""


def check(result: int, call: str) -> None:
    """Raises the exception for ``result`` with the library's message, prefixed with ``call``."""
    if result != SUCCESS:
        raise error(result, call)


def error(result: int, call: str) -> Error:
    """The exception for a failed ``call``, carrying the library's message."""
    message = last_error_message() or f"{call} failed with result {result}"
    return _EXCEPTIONS.get(result, AllocatorError)(message, result)


def read_string(function_name: str) -> str:
    """A string the library writes into a caller's buffer (describe, stats_string)."""
    function = getattr(lib(), function_name)
    needed = ctypes.c_size_t(0)
    check(function(None, 0, ctypes.byref(needed)), function_name)
    buffer = ctypes.create_string_buffer(max(needed.value, 1))
    check(function(buffer, len(buffer), ctypes.byref(needed)), function_name)
    return buffer.value.decode("utf-8", "replace")
