"""Memory history: the recorder that gathers Python stacks, and snapshots.

The library keeps the history (xpu_host_record_history); this module gives
it a recorder whose contexts are Python stack frames, and turns the
library's trace entries and segments into the dict PyTorch's
``torch.cuda.memory._snapshot()`` returns, so that PyTorch's viewer
(``torch.cuda._memory_viz``) and this package's (``viz``) read it.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import sys
import threading
from types import FrameType
from typing import Any, Callable, Literal, Optional, Union

from . import _lib

#: The trace actions, by the library's numbers (c10's TraceEntry::Action).
ACTIONS = ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free")

#: Context levels, by name, as PyTorch's _record_memory_history takes them (c10's RecordContext).
CONTEXT_LEVELS = {None: 0, "state": 1, "alloc": 2, "all": 3}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

Frame = dict[str, Any]


def _python_frames(frame: Optional[FrameType]) -> list[Frame]:
    """The stack from ``frame`` outwards, innermost first, as PyTorch's frames
    ({"filename", "line", "name"}), leaving out this package's own frames."""
    frames: list[Frame] = []
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            frames.append({"filename": code.co_filename, "line": frame.f_lineno, "name": code.co_name})
        frame = frame.f_back
    return frames


class _Recorder:
    """The library's recorder: each context is a number naming a Python stack kept here.

    The library calls ``gather`` for each allocation or free it records (on
    any thread, without its locks held; ctypes takes the GIL) and ``release``
    once for each context it lets go. A context this recorder did not make
    (another recorder's, installed through PyTorch's own record_history) is
    simply unknown here: it has no frames.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stacks: dict[int, list[Frame]] = {}
        self._numbers = itertools.count(1)
        # Kept for the life of the process, as the library requires.
        self._gather = _lib.GATHER(self._on_gather)
        self._release = _lib.RELEASE(self._on_release)
        self.struct = _lib.HistoryRecorder(ctypes.sizeof(_lib.HistoryRecorder), None, self._gather, self._release)

    def _on_gather(self, _user_data: Optional[int]) -> int:
        try:
            # The frame that called into C, on this thread (none on a thread Python never ran on).
            frames = _python_frames(sys._getframe().f_back)
            number = next(self._numbers)
            with self._lock:
                self._stacks[number] = frames
            return number
        except BaseException:  # noqa: BLE001 - a callback from C must not raise: no context then
            return 0

    def _on_release(self, _user_data: Optional[int], context: Optional[int]) -> None:
        if context:
            with self._lock:
                self._stacks.pop(context, None)

    def frames(self, context: Optional[int]) -> list[Frame]:
        """The frames of ``context`` (a copy), or [] for none or one not ours."""
        if not context:
            return []
        with self._lock:
            return list(self._stacks.get(context, ()))

    def kept(self) -> int:
        """How many stacks the library holds now (for tests)."""
        with self._lock:
            return len(self._stacks)


_lock = threading.Lock()
_recorder: Optional[_Recorder] = None
_exit_hook_installed = False


def recorder() -> _Recorder:
    global _recorder
    with _lock:
        if _recorder is None:
            _recorder = _Recorder()
        return _recorder


def _off_at_exit() -> None:
    # Contexts are Python objects: let the library give them all back while
    # Python still runs, and gather no more during interpreter shutdown.
    try:
        if _lib.lib().xpu_host_history_enabled():
            _lib.lib().xpu_host_record_history(False, 1, 0, None, True)
    except Exception:  # noqa: BLE001 - nothing to report to at exit
        pass


Enabled = Union[bool, Literal["all", "state"], None]
ContextLevel = Literal["state", "alloc", "all", None]


def record_memory_history(
    enabled: Enabled = "all",
    context: ContextLevel = "all",
    stacks: Literal["python", "all"] = "all",
    max_entries: int = sys.maxsize,
    clear_history: bool = False,
) -> None:
    global _exit_hook_installed
    if enabled is True:
        enabled = "all"
    elif enabled is False:
        enabled = None
    if enabled not in (None, "all"):
        if enabled == "state":
            raise ValueError(
                "enabled='state' (live blocks without a trace) is not offered: the library records trace "
                "entries whenever history is on; use enabled='all' with a small max_entries"
            )
        raise ValueError(f"enabled must be True, False, None, 'all' or 'state', not {enabled!r}")
    if context not in CONTEXT_LEVELS:
        raise ValueError(f"context must be None, 'state', 'alloc' or 'all', not {context!r}")
    if stacks not in ("python", "all"):
        raise ValueError(f"stacks must be 'python' or 'all', not {stacks!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries <= 0:
        raise ValueError(f"max_entries must be a positive int, not {max_entries!r}")
    max_entries = min(max_entries, sys.maxsize)
    lib = _lib.lib()
    if enabled is None:
        _lib.check(lib.xpu_host_record_history(False, max_entries, 0, None, bool(clear_history)), "xpu_host_record_history")
        return
    level = CONTEXT_LEVELS[context]
    struct = ctypes.byref(recorder().struct) if level > 0 else None
    _lib.check(lib.xpu_host_record_history(True, max_entries, level, struct, bool(clear_history)), "xpu_host_record_history")
    with _lock:
        if not _exit_hook_installed:
            atexit.register(_off_at_exit)
            _exit_hook_installed = True


def history_enabled() -> bool:
    return bool(_lib.lib().xpu_host_history_enabled())


def _pool(pool: _lib.PoolId) -> tuple[int, int]:
    return (int(pool.first), int(pool.second))


def _check_size(item: Any, struct: type, what: str) -> None:
    if item.size < ctypes.sizeof(struct):
        raise _lib.AllocatorError(
            f"the library's {what} is {item.size} bytes, smaller than the {ctypes.sizeof(struct)} this package reads: "
            "it is older than the package",
            _lib.ERROR_INTERNAL,
        )


def _visit(
    function: str, visitor: Any, struct: Any, c_name: str, convert: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """What ``convert`` makes of each item the library's ``function`` visits, in
    the order visited. A Python exception cannot pass through the library's C
    frames: the first one stops the visit and is raised once the library returns."""
    found: list[dict[str, Any]] = []
    failure: list[BaseException] = []

    def visit(_user_data: Optional[int], pointer: Any) -> bool:
        try:
            item = pointer.contents
            _check_size(item, struct, c_name)
            found.append(convert(item))
            return True
        except BaseException as error:  # noqa: BLE001 - kept, raised after the library returns
            failure.append(error)
            return False

    callback = visitor(visit)
    _lib.check(getattr(_lib.lib(), function)(callback, None), function)
    if failure:
        # Taken out of the list: kept there, it would hold its own traceback's
        # frames (and what they hold, tensors too) in a cycle until a collection.
        raise failure.pop()
    return found


def traces() -> list[dict[str, Any]]:
    """The trace entries the library keeps, oldest first, as PyTorch's snapshot has them."""
    stacks = recorder() if _recorder is not None else None

    def convert(entry: Any) -> dict[str, Any]:
        action = ACTIONS[entry.action] if 0 <= entry.action < len(ACTIONS) else f"action_{entry.action}"
        return {
            "action": action,
            "addr": int(entry.address),
            "size": int(entry.bytes),
            "stream": int(entry.stream.id) if entry.stream.device_type != -1 else 0,
            "time_us": int(entry.time_us),
            "pool_id": _pool(entry.pool),
            # Read during the visit: the library may release the context right after.
            "frames": stacks.frames(entry.context) if stacks is not None else [],
        }

    return _visit("xpu_host_get_traces", _lib.TRACE_VISITOR, _lib.TraceEntry, "xpu_host_trace_entry", convert)


def segments() -> list[dict[str, Any]]:
    """The blocks holding memory (and external registrations), by address, as PyTorch's snapshot's segments.

    The host allocator never splits a block, so each segment is one block:
    ``active_allocated`` (handed out), ``active_pending_free`` (freed, waiting
    for stream events, or kept out of circulation after a graph capture) or
    ``inactive`` (cached).
    """
    stacks = recorder() if _recorder is not None else None

    def convert(segment: Any) -> dict[str, Any]:
        size = int(segment.bytes)
        if segment.allocated:
            state = "active_allocated"
        elif segment.active:
            state = "active_pending_free"
        else:
            state = "inactive"
        frames = stacks.frames(segment.context) if stacks is not None else []
        return {
            "device": 0,
            "address": int(segment.address),
            "total_size": size,
            "allocated_size": size if segment.allocated else 0,
            "active_size": size if segment.active else 0,
            "requested_size": size if segment.allocated else 0,
            "stream": 0,
            "segment_type": "large" if size > 1 << 20 else "small",
            "segment_pool_id": _pool(segment.pool),
            "is_expandable": False,
            "frames": frames,
            "blocks": [
                {
                    "address": int(segment.address),
                    "size": size,
                    "requested_size": size,
                    "state": state,
                    "frames": frames,
                }
            ],
        }

    found = _visit("xpu_host_get_segments", _lib.SEGMENT_VISITOR, _lib.Segment, "xpu_host_segment", convert)
    found.sort(key=lambda s: s["address"])
    return found


class HistoryOffError(RuntimeError):
    """_snapshot() was called while memory history was off."""


def snapshot(extra: dict[str, Any]) -> dict[str, Any]:
    if not history_enabled():
        raise HistoryOffError(
            "xpu_caching_host_allocator._snapshot(): memory history is off. Call "
            "xpu_caching_host_allocator._record_memory_history() before the allocations you want to see, "
            "then _snapshot(). (Entries kept from an earlier recording stay until cleared: turning recording "
            "on again without clear_history shows them.)"
        )
    # Segments first: a block allocated between the two reads is then in the
    # trace, which the viewers replay, rather than in neither.
    snap: dict[str, Any] = {"segments": segments(), "device_traces": [traces()]}
    snap.update(extra)
    return snap
