"""A small pinned-memory pipeline on xpu_caching_host_allocator, in PyTorch.

    python python/examples/pinned_pipeline.py --out build/demo

Turns the allocator on in PyTorch, records memory history, runs a few epochs
of image batches through pinned staging buffers (two in flight, as a loader
that double-buffers does), then prints the statistics dict and writes the
snapshot as a pickle and as an HTML page. With an XPU device the batches go
through ``tensor.pin_memory()`` and a non-blocking copy to the device; a
PyTorch without one (PyPI's CPU wheels) stages them into buffers from the
registered allocator with ``empty_pinned``, which is where ``pin_memory()``
takes its memory from in an XPU build.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import xpu_caching_host_allocator as xha
from xpu_caching_host_allocator import viz


def stage(batch: torch.Tensor) -> torch.Tensor:
    """``batch`` copied into pinned memory from the registered host allocator."""
    pinned = xha.empty_pinned(batch.numel() * batch.element_size())
    return pinned.view(batch.dtype).view(batch.shape).copy_(batch)


def run_pipeline(epochs: int, device: str | None) -> tuple[int, float]:
    """Epochs over 600 small images in batches of 64 (the last one 24), as a
    DataLoader gives them, each batch staged in pinned memory; returns the
    number of batches and a checksum."""
    images = torch.randn(600, 3, 32, 32)
    labels = torch.arange(600) % 10
    in_flight: list[tuple[torch.Tensor, torch.Tensor]] = []
    batches, total = 0, 0.0
    for _ in range(epochs):
        for start in range(0, 600, 64):
            batch = (images[start : start + 64], labels[start : start + 64])
            if device is not None:
                staged = (batch[0].pin_memory(), batch[1].pin_memory())
                total += float(staged[0].to(device, non_blocking=True).sum().cpu())
            else:
                staged = (stage(batch[0]), stage(batch[1]))
                total += float(staged[0].sum())
            in_flight.append(staged)
            if len(in_flight) > 2:
                in_flight.pop(0)  # its blocks go back to the cache, for a later batch
            batches += 1
    return batches, total


def print_stats(stats: dict[str, int]) -> None:
    items = [f"{key:<30} {value:>12}" for key, value in stats.items()]
    for i in range(0, len(items), 3):
        print("  " + "   ".join(items[i : i + 3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="where to write the snapshot and its HTML page")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    # Settings come before the allocator starts; enable() starts it.
    xha.configure("pinned_max_cached_size_mb:256")
    xha.enable()
    print(f"PyTorch {torch.__version__}: host allocator for XPU is ours: {xha.is_enabled()}")
    print(f"  {xha.describe()}")
    xha._record_memory_history(max_entries=100_000)

    device = "xpu" if hasattr(torch, "xpu") and torch.xpu.is_available() else None
    how = "pin_memory() and non-blocking copies to xpu" if device else "empty_pinned() staging buffers (no XPU device here)"
    batches, total = run_pipeline(args.epochs, device)
    print(f"{batches} batches of images and labels through {how}; checksum {total:.1f}")

    stats = xha.host_memory_stats()
    print("host_memory_stats():")
    print_stats(stats)
    print(
        f"=> {stats['cache_hits']} of {stats['cache_hits'] + stats['cache_misses']} allocations served from the cache, "
        f"{stats['num_host_alloc']} new blocks (those of 32 KiB or less share 64 KiB driver allocations), "
        f"{stats['allocated_bytes.peak']} bytes pinned at most"
    )

    os.makedirs(args.out, exist_ok=True)
    pickle_path = os.path.abspath(os.path.join(args.out, "host_memory_snapshot.pickle"))
    html_path = os.path.abspath(os.path.join(args.out, "host_memory.html"))
    xha._dump_snapshot(pickle_path)
    snapshot = xha._snapshot()
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(viz.render_html(snapshot))
    print(f"snapshot: {pickle_path} ({len(snapshot['device_traces'][0])} trace entries, {len(snapshot['segments'])} blocks held)")
    print(f"memory picture: {html_path}")
    print(f"  (open it in a browser; or: {sys.executable} -m xpu_caching_host_allocator.viz {pickle_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
