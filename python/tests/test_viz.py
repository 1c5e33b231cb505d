"""Pictures of memory: the viz command with and without PyTorch, and the page in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import run_python

KiB = 1024
WINDOW = (1280, 1000)


def _allocate_for_browser(xha):
    tensors = []
    for size in (96 * KiB, 200 * KiB, 328 * KiB, 456 * KiB):
        tensors.append(xha.empty_pinned(size))
    return tensors


@pytest.fixture(scope="module")
def snapshot_file(enabled, tmp_path_factory):
    """A snapshot of allocations this test made, some still alive: (path, kept tensors' addresses and sizes)."""
    xha = enabled
    xha._record_memory_history(max_entries=10_000, clear_history=True)
    try:
        tensors = _allocate_for_browser(xha)
        gone = tensors.pop(1)
        del gone
        path = tmp_path_factory.mktemp("viz") / "snapshot.pickle"
        xha._dump_snapshot(str(path))
        kept = [(t.data_ptr(), t.numel()) for t in tensors]
        yield path, kept, tensors
    finally:
        xha._record_memory_history(enabled=None, clear_history=True)


def _viz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xpu_caching_host_allocator.viz", *args], capture_output=True, text=True, timeout=300)


def test_viz_writes_pytorchs_viewer_with_the_snapshot(snapshot_file, tmp_path):
    path, kept, _ = snapshot_file
    page = tmp_path / "host_memory.html"
    result = _viz(str(path), "-o", str(page))
    assert result.returncode == 0, result.stderr
    assert str(page) in result.stdout and "blocks held" in result.stdout
    text = page.read_text()
    # PyTorch's page: its viewer module with the pickled snapshot, base64, as trace_plot writes it.
    assert "MemoryViz.js" in text and "add_local_files" in text and "Active Memory Timeline" in text
    files = json.loads(re.search(r"const local_files = (\[.*?\])\n", text).group(1))
    embedded = pickle.loads(base64.b64decode(files[0]["base64"]))
    with open(path, "rb") as f:
        assert embedded == pickle.load(f)
    # And the offline view of the same snapshot.
    assert 'id="xpu-host-offline"' in text and 'data-wait="1"' in text
    offline = json.loads(re.search(r'<script id="xpu-host-snapshot" type="application/json">(.*?)</script>', text, re.S).group(1))
    assert {s["address"] for s in offline["segments"]} >= {address for address, _ in kept}

    state = tmp_path / "state.html"
    assert _viz(str(path), "--plot", "state", "-o", str(state)).returncode == 0
    assert "Allocator State History" in state.read_text()


def test_viz_without_pytorch_prints_a_summary(snapshot_file, tmp_path):
    path, kept, _ = snapshot_file
    page = tmp_path / "offline.html"
    result = run_python(
        f"""
        import sys
        sys.modules["torch"] = None
        from xpu_caching_host_allocator.viz import main
        sys.exit(main([{str(path)!r}, "-o", {str(page)!r}]))
        """
    )
    out = result.stdout
    assert "blocks held:" in out and "trace entries:" in out
    live = int(re.search(r"active_allocated\s+(\d+) blocks", out).group(1))
    assert live >= len(kept)
    for address, _ in kept:
        assert f"{address:#x}" in out
    assert "_allocate_for_browser" in out
    assert "offline view only" in out
    text = page.read_text()
    assert "add_local_files" not in text and 'data-wait="0"' in text


# --- the page in a browser ---------------------------------------------------


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (2, 6), header
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            upper_left = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else upper_left)) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
        previous = line
    return width, height, rows


def _chromium() -> str:
    found = os.environ.get("XPU_HOST_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(found):
        if os.environ.get("XPU_HOST_TEST_SKIP_BROWSER") == "1":
            pytest.skip("no chromium, and XPU_HOST_TEST_SKIP_BROWSER=1")
        pytest.fail("headless Chromium is needed for the browser check: apt-get install chromium (scripts/install-deps does)")
    return found


def _run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        # No network here: every host name fails at once, so PyTorch's CDN
        # scripts fail fast, as they do for a user offline.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        # Timers run in virtual time: the page's fallback timer does not hold the run up.
        "--virtual-time-budget=10000",
        *extra, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_page_renders_in_headless_chromium(snapshot_file, tmp_path):
    path, kept, _ = snapshot_file
    page = tmp_path / "host_memory.html"
    assert _viz(str(path), "-o", str(page)).returncode == 0
    artifacts = Path(os.environ.get("XPU_HOST_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "host_memory.png"
    if shot.exists():
        shot.unlink()

    result = _run_chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert shot.exists(), f"no screenshot\n{result.stderr[-3000:]}"
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == WINDOW
    white = b"\xff\xff\xff"
    pixels = [row[i : i + 3] for row in rows[::4] for i in range(0, len(row), 12)]
    colored = [p for p in pixels if p != white]
    # Not blank: text, the timeline's bands, the blocks' bars.
    assert len(colored) > len(pixels) // 20, f"{len(colored)} of {len(pixels)} sampled pixels are not white"
    assert len(set(colored)) > 20, "the drawing has colors, not only text"
    shutil.copy(page, artifacts / "host_memory.html")

    dom = _run_chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    text = dom.stdout
    (artifacts / "host_memory.dom.html").write_text(text)
    # The offline view drew (no network here for PyTorch's viewer), from the page's data.
    assert 'id="xpu-host-timeline"' in text and 'id="xpu-host-blocks"' in text and 'id="xpu-host-error"' not in text
    blocks = re.search(r'<table id="xpu-host-blocks".*?</table>', text, re.S).group(0)
    trace = re.search(r'<table id="xpu-host-trace".*?</table>', text, re.S).group(0)
    for address, size in kept:
        # Each allocation the test kept: a live block, with its size and the function that allocated it ...
        row = re.search(rf"<tr[^>]*><td[^>]*>{address:#x}</td><td[^>]*>{size}</td><td[^>]*>active_allocated</td>.*?</tr>", blocks, re.S)
        assert row, f"block {address:#x} ({size} bytes) is not in the page's table"
        assert "_allocate_for_browser" in row.group(0)
        # ... and its alloc in the trace, and its band in the timeline.
        assert re.search(rf"<td[^>]*>alloc</td><td[^>]*>{address:#x}</td><td[^>]*>{size}</td>", trace)
        assert f'data-addr="{address:#x}"' in text
    summary = re.search(r'<p id="xpu-host-summary"[^>]*>(.*?)</p>', text, re.S).group(1)
    assert "trace entries" in summary
    print(f"screenshot {shot}: {width}x{height} pixels, {shot.stat().st_size} bytes; "
          f"{len(colored)} of {len(pixels)} sampled pixels not white, {len(set(colored))} colors")
