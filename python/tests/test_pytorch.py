"""The package with PyTorch: enable(), the registered allocator, pinned tensors and their statistics."""

from __future__ import annotations

import random
import threading
import time

import pytest

from conftest import last_json, run_python

KiB = 1024
MiB = 1024 * KiB


def test_enable_registers_our_allocator_with_pytorch():
    result = run_python(
        """
        import json
        import torch
        import xpu_caching_host_allocator as xha
        from xpu_caching_host_allocator import _torch

        before = xha.is_enabled()
        name_before = _torch.extension().registered_name()
        try:
            xha.empty_pinned(16)
            early = None
        except RuntimeError as error:
            early = str(error)
        errors = []
        for bad in (-1, 256, True, "1"):
            try:
                xha.enable(bad)
            except ValueError as error:
                errors.append(str(error))
        xha.enable()
        print(json.dumps({
            "before": before, "name_before": name_before, "early": early, "errors": errors,
            "after": xha.is_enabled(), "name_after": _torch.extension().registered_name(),
            "built_against": xha.torch_extension_version(), "torch": torch.__version__,
        }))
        """
    )
    got = last_json(result)
    # A CPU build of PyTorch registers no XPU host allocator of its own.
    assert got["before"] is False and got["name_before"] == ""
    assert "enable()" in got["early"]
    assert len(got["errors"]) == 4
    assert got["after"] is True and got["name_after"] == "xpu_caching_host_allocator"
    assert got["built_against"].split("+")[0] == got["torch"].split("+")[0]


def test_pinned_tensors_from_the_registered_allocator(enabled, torch):
    xha = enabled
    assert xha.is_enabled()
    xha.empty_cache()
    before = xha.host_memory_stats()
    raw = xha.empty_pinned(MiB)
    during = xha.host_memory_stats()
    assert raw.device.type == "cpu" and raw.dtype == torch.uint8 and raw.numel() == MiB
    assert raw.data_ptr() % 512 == 0
    assert during["active_requests.current"] == before["active_requests.current"] + 1
    assert during["active_bytes.current"] == before["active_bytes.current"] + MiB
    assert during["requested_bytes.current"] == before["requested_bytes.current"] + MiB
    assert during["cache_misses"] == before["cache_misses"] + 1
    assert during["num_host_alloc"] == before["num_host_alloc"] + 1
    assert during["allocated_bytes.current"] == before["allocated_bytes.current"] + MiB

    # Tensor operations on the memory, as on any CPU tensor.
    floats = raw.view(torch.float32)
    floats.copy_(torch.arange(floats.numel(), dtype=torch.float32))
    assert floats.sum().item() == pytest.approx(floats.numel() * (floats.numel() - 1) / 2)
    doubled = floats * 2
    floats.mul_(2)
    assert torch.equal(doubled, floats)
    assert torch.equal(floats[:4], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    matrix = floats[: 256 * 256].view(256, 256)
    assert torch.allclose(matrix @ torch.eye(256), matrix)
    ptr = raw.data_ptr()

    del raw, floats, matrix
    freed = xha.host_memory_stats()
    assert freed["active_requests.current"] == before["active_requests.current"]
    assert freed["cached_bytes.current"] >= MiB
    assert freed["largest_free_block"] >= MiB

    # The same size again: the block from the cache, no new driver call.
    again = xha.empty_pinned(MiB)
    hit = xha.host_memory_stats()
    assert again.data_ptr() == ptr
    assert hit["cache_hits"] == freed["cache_hits"] + 1
    assert hit["num_host_alloc"] == freed["num_host_alloc"]
    del again

    xha.empty_cache()
    emptied = xha.host_memory_stats()
    assert emptied["cached_bytes.current"] == 0
    assert emptied["num_host_free"] > hit["num_host_free"]
    assert emptied["allocated_bytes.current"] == emptied["active_bytes.current"] + emptied["idle_bytes"]


def test_a_block_used_on_a_stream_waits_for_it(enabled):
    """record_event through PyTorch's interface: the freed block waits for the stream's event."""
    xha = enabled
    from xpu_caching_host_allocator import _torch

    tensor = xha.empty_pinned(64 * KiB)
    before = xha.host_memory_stats()
    assert _torch.extension().record_event(tensor, 7) is True
    del tensor
    pending = xha.host_memory_stats()
    # Pending until the library polls the stream's event, which has completed
    # (nothing was submitted); empty_cache polls, then gives the block back.
    assert pending["active_requests.current"] == before["active_requests.current"] - 1
    deadline = time.monotonic() + 30
    while xha.host_memory_stats()["pending_blocks.current"] and time.monotonic() < deadline:
        xha.empty_cache()
        time.sleep(0.01)
    assert xha.host_memory_stats()["pending_blocks.current"] == 0


def test_stats_keys_are_pytorch_2_15s_plus_ours(enabled, torch):
    xha = enabled
    nested = xha.host_memory_stats_as_nested_dict()
    flat = xha.host_memory_stats()
    # PyTorch 2.15's keys, read from PyTorch itself where this build has its CUDA
    # host allocator and names them as 2.15 does (2.10 renamed four of them).
    release = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if hasattr(torch._C, "_cuda_hostMemoryStats") and release >= (2, 10):
        theirs = torch._C._cuda_hostMemoryStats()
    else:
        theirs = {name: 0 for name in ("num_host_alloc", "num_host_free")}
        for name in ("allocations", "active_requests", "allocated_bytes", "active_bytes"):
            theirs[name] = dict.fromkeys(("current", "peak", "allocated", "freed"), 0)
        for name in ("host_alloc_time", "host_free_time"):
            theirs[name] = dict.fromkeys(("total", "max", "min", "count", "avg"), 0)
    for key, value in theirs.items():
        assert key in nested
        if isinstance(value, dict):
            assert set(nested[key]) == set(value), key
    assert list(nested)[: len(theirs)] == list(theirs)
    flat_theirs = {f"{k}.{s}" if isinstance(v, dict) else k for k, v in theirs.items() for s in (v if isinstance(v, dict) else [None])}
    assert flat_theirs <= set(flat)
    ours = {"cache_hits", "cache_misses", "pending_blocks.current", "cached_bytes.current", "requested_bytes.peak",
            "retired_blocks", "idle_bytes", "largest_free_block", "captured_blocks", "backend_unused_bytes"}
    assert ours <= set(flat)
    assert list(flat) == sorted(flat)
    assert all(isinstance(v, int) for v in flat.values())
    # The flat dict is the nested one flattened as torch.cuda.host_memory_stats() flattens
    # PyTorch's: with PyTorch's own helper from 2.10, which made it a module's function
    # (before, it is local to host_memory_stats(): keys joined with ".", sorted).
    try:
        from torch.cuda.memory import _recurse_add_to_result
    except ImportError:

        def _recurse_add_to_result(result, prefix, obj, _):
            # As 2.8 has it inside host_memory_stats().
            if isinstance(obj, dict):
                if prefix:
                    prefix += "."
                for key, value in obj.items():
                    _recurse_add_to_result(result, prefix + key, value, _)
            else:
                result.append((prefix, obj))

    result: list = []
    _recurse_add_to_result(result, "", nested, str)
    assert sorted(result) == list(flat.items())


def test_reset_peak_and_accumulated(enabled):
    xha = enabled
    tensors = [xha.empty_pinned(256 * KiB) for _ in range(4)]
    peak = xha.host_memory_stats()["active_bytes.peak"]
    del tensors[1:]
    assert xha.host_memory_stats()["active_bytes.peak"] == peak
    xha.reset_peak_host_memory_stats()
    now = xha.host_memory_stats()
    assert now["active_bytes.peak"] == now["active_bytes.current"] < peak
    assert now["allocations.allocated"] > 0
    xha.reset_accumulated_host_memory_stats()
    reset = xha.host_memory_stats()
    assert reset["allocations.allocated"] == 0 and reset["active_bytes.freed"] == 0
    assert reset["cache_hits"] == 0 and reset["host_alloc_time.count"] == 0
    assert reset["active_bytes.current"] == now["active_bytes.current"], "currents stay"
    del tensors


def test_threads_allocate_free_and_read_stats_at_once(enabled, torch):
    xha = enabled
    baseline = xha.host_memory_stats()["active_requests.current"]
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                size = rng.choice((512, 4 * KiB, 64 * KiB, 300 * KiB, MiB))
                t = xha.empty_pinned(size)
                t.fill_(seed % 251)
                assert int(t[size - 1]) == seed % 251
                if rng.random() < 0.3:
                    xha.host_memory_stats()
                del t
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def reader() -> None:
        try:
            while not stop.is_set():
                stats = xha.host_memory_stats()
                assert stats["active_requests.current"] >= 0
                xha.empty_cache()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    assert xha.host_memory_stats()["active_requests.current"] == baseline
