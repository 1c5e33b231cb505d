"""PyTorch's own pinned-memory paths, driven through the registered allocator.

A CPU-only PyTorch has no accelerator to pin for; the package's PrivateUse1
test backend (xpu_caching_host_allocator._testing) gives it one whose hooks
pin through at::getHostAllocator(at::kXPU), as a PyTorch XPU build's XPU
hooks do. Each test runs in a process of its own: the backend renames
PrivateUse1 for good.
"""

from __future__ import annotations

from textwrap import dedent

from conftest import last_json, run_python

PRELUDE = """
import json
import torch
import xpu_caching_host_allocator as xha
from xpu_caching_host_allocator._testing import register_privateuse1_test_backend

xha.enable()
backend = register_privateuse1_test_backend()

def stats():
    return xha.host_memory_stats()
"""


def test_pin_memory_and_is_pinned_use_our_allocator():
    result = run_python(
        PRELUDE
        + dedent(
            """
        assert str(torch.accelerator.current_accelerator()) == backend and torch.accelerator.is_available()
        x = torch.arange(10_000, dtype=torch.float32)
        s0 = stats()
        was_pinned = x.is_pinned()
        y = x.pin_memory()
        s1 = stats()
        z = torch.empty(3000, dtype=torch.int64, pin_memory=True)
        s2 = stats()
        again = y.pin_memory()  # pinned already: the same tensor
        from xpu_caching_host_allocator import _torch
        out = {
            "accelerator": str(torch.accelerator.current_accelerator()),
            "was_pinned": was_pinned, "y_pinned": y.is_pinned(), "z_pinned": z.is_pinned(),
            "x_still_unpinned": x.is_pinned(),
            "equal": torch.equal(x, y), "same": again.data_ptr() == y.data_ptr(),
            "held": [_torch.extension().library_holds(t.data_ptr()) for t in (x, y, z)],
            "d1": [s1["active_requests.current"] - s0["active_requests.current"],
                   s1["requested_bytes.current"] - s0["requested_bytes.current"]],
            "d2": [s2["active_requests.current"] - s1["active_requests.current"],
                   s2["requested_bytes.current"] - s1["requested_bytes.current"]],
        }
        ptr = y.data_ptr()
        del y, again
        s3 = stats()
        out["d3"] = s3["active_requests.current"] - s2["active_requests.current"]
        y2 = x.pin_memory()
        s4 = stats()
        out["reused"] = [y2.data_ptr() == ptr, s4["cache_hits"] - s3["cache_hits"]]
        print(json.dumps(out))
        """
        )
    )
    got = last_json(result)
    assert got["accelerator"] == "xpuhosttest"
    assert got["was_pinned"] is False and got["x_still_unpinned"] is False
    assert got["y_pinned"] is True and got["z_pinned"] is True
    assert got["equal"] is True and got["same"] is True
    assert got["held"] == [False, True, True]
    assert got["d1"] == [1, 40_000]
    assert got["d2"] == [1, 24_000]
    assert got["d3"] == -1
    assert got["reused"] == [True, 1]


def test_dataloader_pin_memory_uses_our_allocator():
    result = run_python(
        PRELUDE
        + dedent(
            """
        from torch.utils.data import DataLoader, TensorDataset

        data = TensorDataset(torch.arange(64 * 100, dtype=torch.float32).reshape(64, 100), torch.arange(64))
        out = {}
        for workers in (0, 2):
            if workers:
                # With history on, the stacks come from DataLoader's pin-memory thread.
                xha._record_memory_history(clear_history=True)
            s0 = stats()
            pinned, total, seen = True, 0, []
            for features, labels in DataLoader(data, batch_size=8, pin_memory=True, num_workers=workers):
                pinned = pinned and features.is_pinned() and labels.is_pinned()
                total += float(features.sum())
                seen.append(int(labels[0]))
            del features, labels
            s1 = stats()
            out[str(workers)] = {
                "pinned": pinned,
                "sum": total,
                "first_labels": seen,
                "allocations": (s1["cache_hits"] + s1["cache_misses"]) - (s0["cache_hits"] + s0["cache_misses"]),
                "live_after": s1["active_requests.current"] - s0["active_requests.current"],
            }
        allocs = [e for e in xha._snapshot()["device_traces"][0] if e["action"] == "alloc"]
        out["pin_thread_stacks"] = sum(
            any(f["name"] == "_pin_memory_loop" for f in e["frames"]) for e in allocs
        )
        xha._record_memory_history(enabled=None, clear_history=True)
        print(json.dumps(out))
        """
        )
    )
    got = last_json(result)
    assert got["pin_thread_stacks"] == 16, got
    expected_sum = float(sum(range(64 * 100)))
    for workers in ("0", "2"):
        run = got[workers]
        assert run["pinned"] is True, workers
        assert run["sum"] == expected_sum
        assert run["first_labels"] == list(range(0, 64, 8))
        # 8 batches of two tensors each: 16 allocations from our allocator, all freed.
        assert run["allocations"] == 16, run
        assert run["live_after"] == 0
