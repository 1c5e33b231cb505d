"""Memory history: _record_memory_history, _snapshot in PyTorch's layout, _dump_snapshot, and bad calls."""

from __future__ import annotations

import gc
import pickle
import pickletools
import weakref

import pytest

from conftest import last_json, run_python

KiB = 1024


def _allocate_for_history(xha, sizes):
    return [xha.empty_pinned(size) for size in sizes]


@pytest.fixture
def recording(enabled):
    xha = enabled
    xha._record_memory_history(max_entries=100_000, clear_history=True)
    yield xha
    xha._record_memory_history(enabled=None, clear_history=True)


def test_snapshot_has_pytorchs_layout_with_our_blocks_and_stacks(recording, torch):
    xha = recording
    kept = _allocate_for_history(xha, (40 * KiB, 72 * KiB, 136 * KiB))
    dropped = _allocate_for_history(xha, (24 * KiB,))
    dropped_ptr = dropped[0].data_ptr()
    del dropped
    snap = xha._snapshot()

    assert set(snap) >= {"segments", "device_traces"}
    assert len(snap["device_traces"]) == 1
    by_address = {segment["address"]: segment for segment in snap["segments"]}
    for tensor in kept:
        segment = by_address[tensor.data_ptr()]
        assert segment["device"] == 0 and segment["stream"] == 0 and segment["segment_pool_id"] == (0, 0)
        assert segment["total_size"] == segment["allocated_size"] == segment["active_size"] == tensor.numel()
        (block,) = segment["blocks"]
        assert block["state"] == "active_allocated" and block["size"] == tensor.numel()
        assert block["address"] == tensor.data_ptr()
        # Where it was allocated: this file's helper, called from this test.
        names = [frame["name"] for frame in block["frames"]]
        assert names[0] == "_allocate_for_history" or "_allocate_for_history" in names, names
        assert "test_snapshot_has_pytorchs_layout_with_our_blocks_and_stacks" in names
        assert all(set(frame) == {"filename", "line", "name"} for frame in block["frames"])
    if dropped_ptr in by_address:
        assert by_address[dropped_ptr]["blocks"][0]["state"] == "inactive"

    trace = snap["device_traces"][0]
    actions = {(entry["action"], entry["addr"]) for entry in trace}
    for tensor in kept:
        assert ("alloc", tensor.data_ptr()) in actions
    assert ("free_requested", dropped_ptr) in actions and ("free_completed", dropped_ptr) in actions
    for entry in trace:
        assert set(entry) >= {"action", "addr", "size", "stream", "time_us", "frames", "pool_id"}
    times = [entry["time_us"] for entry in trace]
    assert times == sorted(times)
    alloc = next(e for e in trace if e["action"] == "alloc" and e["addr"] == kept[0].data_ptr())
    assert any(frame["name"] == "_allocate_for_history" for frame in alloc["frames"])
    assert snap["xpu_host"]["stats"]["active_requests"]["current"] >= len(kept)

    # PyTorch's own snapshot tools read it.
    from torch.cuda import _memory_viz

    summary = _memory_viz.segsum(snap)
    assert f"segments: {len(snap['segments'])}" in summary
    assert "entries" in _memory_viz.trace(snap)
    flame = _memory_viz.segments(snap, format_flamegraph=lambda lines: lines)
    assert "_allocate_for_history" in flame and "active_allocated" in flame
    del kept


def test_snapshot_pickle_uses_only_what_pytorchs_viewer_unpickles(recording):
    """MemoryViz.js unpickles the snapshot itself and knows only some opcodes."""
    xha = recording
    kept = _allocate_for_history(xha, (8 * KiB, 16 * KiB))
    data = pickle.dumps(xha._snapshot())
    readable = {
        "PROTO", "FRAME", "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "MARK", "STOP",
        "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "DICT", "LIST", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
        "SETITEM", "SETITEMS", "APPEND", "APPENDS", "SHORT_BINUNICODE", "BINUNICODE",
        "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NEWTRUE", "NEWFALSE", "NONE",
    }
    used = {op.name for op, _, _ in pickletools.genops(data)}
    assert used <= readable, used - readable
    assert data[1] <= 4, "MemoryViz.js reads pickle protocols 2 to 4"
    del kept


def test_dump_snapshot_and_ring_of_max_entries(enabled, tmp_path):
    xha = enabled
    xha._record_memory_history(max_entries=6, clear_history=True)
    try:
        for _ in range(10):
            t = xha.empty_pinned(4 * KiB)
            del t
        path = tmp_path / "snapshot.pickle"
        xha._dump_snapshot(str(path))
        with open(path, "rb") as f:
            loaded = pickle.load(f)
        assert len(loaded["device_traces"][0]) == 6, "the oldest entries went first"
        assert set(loaded) >= {"segments", "device_traces", "xpu_host"}
    finally:
        xha._record_memory_history(enabled=None, clear_history=True)


def test_bad_history_calls_are_clear_errors_and_lose_nothing(enabled, torch):
    xha = enabled
    xha._record_memory_history(enabled=None, clear_history=True)
    tensor = xha.empty_pinned(32 * KiB)
    tensor.fill_(7)
    before = xha.host_memory_stats()
    with pytest.raises(RuntimeError, match=r"memory history is off.*_record_memory_history\(\)"):
        xha._snapshot()
    with pytest.raises(xha.HistoryOffError):
        xha._dump_snapshot("/nonexistent-dir/never-written.pickle")
    for bad in ({"max_entries": 0}, {"max_entries": -5}, {"context": "sometimes"}, {"stacks": "cpp"}, {"enabled": "state"}, {"enabled": "yes"}):
        with pytest.raises(ValueError):
            xha._record_memory_history(**bad)
    assert not xha._history.history_enabled(), "a refused call turns nothing on"
    after = xha.host_memory_stats()
    assert after == before
    assert int(tensor.sum()) == 7 * 32 * KiB
    # Recording still starts after the errors.
    xha._record_memory_history(max_entries=10)
    try:
        again = xha.empty_pinned(KiB)
        assert any(e["addr"] == again.data_ptr() for e in xha._snapshot()["device_traces"][0])
    finally:
        xha._record_memory_history(enabled=None, clear_history=True)


def test_history_without_torch_has_python_stacks():
    result = run_python(
        """
        import json, sys
        sys.modules["torch"] = None
        import xpu_caching_host_allocator as xha

        def stage_one():
            return xha.host_caching_allocator_alloc(5000)

        xha._record_memory_history(context="all")
        address = stage_one()
        snap = xha._snapshot()
        xha.host_caching_allocator_delete(address)
        xha._record_memory_history(enabled=None)
        kept_after_off = xha._history.recorder().kept()
        xha._record_memory_history(enabled=None, clear_history=True)
        kept_after_clear = xha._history.recorder().kept()
        alloc = [e for e in snap["device_traces"][0] if e["action"] == "alloc" and e["addr"] == address][0]
        print(json.dumps({"frames": [f["name"] for f in alloc["frames"]], "size": alloc["size"],
                          "segments": [s["address"] for s in snap["segments"]], "address": address,
                          "kept": [kept_after_off, kept_after_clear]}))
        """
    )
    got = last_json(result)
    assert got["frames"][:2] == ["stage_one", "<module>"]
    assert got["size"] == 5120
    assert got["address"] in got["segments"]
    # Off, the trace's entries keep their stacks; cleared, the library gives every one back.
    assert got["kept"][0] > 0 and got["kept"][1] == 0


def _read_holding(read, tensor):
    """Reads with `tensor` in this frame, which the traceback of an error raised here holds."""
    read()


def test_an_error_while_visiting_is_raised_after_the_library_returns(recording, monkeypatch):
    xha = recording
    kept = _allocate_for_history(xha, (48 * KiB,))

    class Broken(Exception):
        pass

    def broken(_pool):
        raise Broken("converting an entry failed")

    # Both the traces' and the segments' entries name their pool.
    monkeypatch.setattr(xha._history, "_pool", broken)
    gc.disable()
    try:
        for read in (xha._history.segments, xha._history.traces):
            probe = xha.empty_pinned(8 * KiB)
            alive = weakref.ref(probe)
            try:
                _read_holding(read, probe)
            except Broken:
                pass
            else:
                pytest.fail(f"{read.__name__}() did not raise the visit's error")
            del probe
            # Without a collection: the error left nothing in a reference cycle.
            assert alive() is None, f"{read.__name__}() kept the failed visit's frames alive"
    finally:
        gc.enable()
    monkeypatch.undo()
    addresses = {segment["address"] for segment in xha._snapshot()["segments"]}
    assert kept[0].data_ptr() in addresses, "after the failed visits, the next one reads everything"
