"""Memory snapshots as pictures and text.

    python -m xpu_caching_host_allocator.viz snapshot.pickle -o host_memory.html

With PyTorch installed the page is PyTorch's own viewer
(``torch.cuda._memory_viz.trace_plot``, or ``segment_plot`` with ``--plot
state``), which loads its scripts from a CDN when opened; this package adds an
offline view of the same snapshot that shows when those scripts cannot be
loaded. Without PyTorch it prints a plain-text summary (and with ``-o``
writes the offline view alone).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import sys
from typing import Any, Literal, Optional, Sequence

Plot = Literal["active", "segments", "state"]

_MARKER = "</body>"


def _viewer_script() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "viewer.js"), encoding="utf-8") as f:
        return f.read()


def _json_for_script(snapshot: dict[str, Any]) -> str:
    # Inside <script>, "</" would end the element: JSON allows "<\/".
    return json.dumps(snapshot, default=str).replace("</", "<\\/")


def offline_block(snapshot: dict[str, Any], wait_for_pytorch: bool) -> str:
    """The offline view: the snapshot as JSON and the script that draws it."""
    return (
        f'<div id="xpu-host-offline" data-wait="{1 if wait_for_pytorch else 0}" hidden></div>\n'
        f'<script id="xpu-host-snapshot" type="application/json">{_json_for_script(snapshot)}</script>\n'
        f"<script>\n{_viewer_script()}\n</script>\n"
    )


def offline_page(snapshot: dict[str, Any]) -> str:
    """A page with the offline view alone: no PyTorch, no network."""
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>Pinned host memory snapshot</title>\n</head>\n<body>\n"
        + offline_block(snapshot, wait_for_pytorch=False)
        + "</body>\n</html>\n"
    )


def pytorch_page(snapshot: dict[str, Any], plot: Plot = "active") -> str:
    """PyTorch's viewer page for the snapshot (needs torch), with the offline view added."""
    from torch.cuda import _memory_viz

    if plot == "state":
        page = str(_memory_viz.segment_plot(snapshot))
    else:
        page = str(_memory_viz.trace_plot(snapshot, plot_segments=(plot == "segments")))  # type: ignore[no-untyped-call]
    page = page.replace("<head>", '<head>\n<meta charset="utf-8">', 1)
    block = offline_block(snapshot, wait_for_pytorch=True)
    if _MARKER in page:
        index = page.rindex(_MARKER)
        return page[:index] + block + page[index:]
    return page + block


def render_html(snapshot: dict[str, Any], plot: Plot = "active", viewer: Literal["auto", "pytorch", "offline"] = "auto") -> str:
    """The HTML for ``snapshot``: PyTorch's viewer with the offline view if torch imports (``auto``), else the offline view."""
    if viewer == "offline":
        return offline_page(snapshot)
    if viewer == "pytorch":
        return pytorch_page(snapshot, plot)
    try:
        return pytorch_page(snapshot, plot)
    except ImportError:
        return offline_page(snapshot)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _where(frames: Sequence[dict[str, Any]]) -> str:
    if not frames:
        return "(no stack)"
    f = frames[0]
    return f"{f['filename']}:{f['line']}:{f['name']}"


def summarize(snapshot: dict[str, Any], top: int = 10) -> str:
    """A plain-text summary of a snapshot: blocks held by state, trace entries by action, the largest live blocks."""
    segments = snapshot.get("segments", [])
    traces = [entry for device in snapshot.get("device_traces", []) for entry in device]
    lines = []
    info = snapshot.get("xpu_host", {})
    if info:
        lines.append(f"xpu_caching_host_allocator {info.get('library_version', '?')} snapshot")
    by_state: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for segment in segments:
        for block in segment.get("blocks", []):
            by_state[block["state"]][0] += 1
            by_state[block["state"]][1] += block["size"]
    held = sum(segment["total_size"] for segment in segments)
    lines.append(f"blocks held: {len(segments)}, {_size(held)}")
    for state in ("active_allocated", "active_pending_free", "inactive"):
        count, size = by_state.get(state, [0, 0])
        lines.append(f"  {state:<20} {count:>6} blocks {_size(size):>12}")
    actions = collections.Counter(entry["action"] for entry in traces)
    lines.append(f"trace entries: {len(traces)}")
    for action in ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free"):
        if actions.get(action):
            lines.append(f"  {action:<20} {actions[action]:>6}")
    if traces:
        span_ms = (traces[-1]["time_us"] - traces[0]["time_us"]) / 1000
        lines.append(f"  over {span_ms:.1f} ms")
    live = sorted(
        (block for segment in segments for block in segment.get("blocks", []) if block["state"] == "active_allocated"),
        key=lambda block: -block["size"],
    )
    if live:
        lines.append(f"largest blocks allocated now (of {len(live)}):")
        for block in live[:top]:
            lines.append(f"  {block['address']:#x} {_size(block['size']):>12}  {_where(block.get('frames', []))}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xpu_caching_host_allocator.viz",
        description="Show a pinned host memory snapshot (from xpu_caching_host_allocator._dump_snapshot) "
        "as HTML (PyTorch's viewer, with an offline view) or as text.",
    )
    parser.add_argument("snapshot", help="the pickle _dump_snapshot() wrote")
    parser.add_argument("-o", "--output", help="the HTML file to write (default with PyTorch: host_memory.html)")
    parser.add_argument(
        "--plot",
        choices=("active", "segments", "state"),
        default="active",
        help="PyTorch's view: active memory timeline (default), cached segment timeline, or allocator state history",
    )
    parser.add_argument("--offline", action="store_true", help="write the offline view alone, without PyTorch's viewer")
    parser.add_argument("--text", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)

    with open(args.snapshot, "rb") as f:
        snapshot = pickle.load(f)
    if not isinstance(snapshot, dict) or "segments" not in snapshot:
        print(f"{args.snapshot}: not a memory snapshot (a dict with 'segments' and 'device_traces')", file=sys.stderr)
        return 2

    summary = summarize(snapshot)
    if args.text:
        print(summary)
        return 0
    has_torch = True
    if not args.offline:
        try:
            import torch.cuda._memory_viz  # noqa: F401
        except ImportError:
            has_torch = False
    if not has_torch or args.offline:
        print(summary)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(offline_page(snapshot))
            reason = "" if args.offline else " (no PyTorch: the offline view only)"
            print(f"wrote {os.path.abspath(args.output)}{reason}")
        return 0
    output = args.output or "host_memory.html"
    with open(output, "w", encoding="utf-8") as f:
        f.write(pytorch_page(snapshot, args.plot))
    print(summary)
    print(f"wrote {os.path.abspath(output)} (PyTorch's viewer; offline view when its scripts cannot be loaded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
