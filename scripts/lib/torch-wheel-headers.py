#!/usr/bin/env python3
"""torch-wheel-headers.py resolve VERSION
   torch-wheel-headers.py extract URL SIZE DESTINATION

The two halves of scripts/fetch-torch-headers, which says what they are for.

resolve: finds the PyPI torch wheel for CPython 3.11 on Linux x86-64 (the
manylinux tag its release uses) of VERSION, an exact X.Y.Z or a minor X.Y
meaning its newest X.Y.Z. Prints one tab-separated line: the exact version,
the wheel's file name, its URL, its size and its sha256 as PyPI lists them.

extract: writes the wheel's torch/include/ members under DESTINATION,
downloading only the zip's central directory and those members, with HTTP
Range requests. Each member's CRC-32 and size are checked against the central
directory, and every response's total length against SIZE. The wheel's sha256
cannot be checked without downloading all of it.

Both print what they did to stderr, and exit 1 with a message on a failure.
"""
import json
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

INDEX = "https://pypi.org/pypi/torch/json"
PREFIX = "torch/include/"
TIMEOUT = 60
downloaded = 0


def fail(message):
    print(f"fetch-torch-headers: {message}", file=sys.stderr)
    sys.exit(1)


def get(url, first=None, last=None, total=None):
    """The body of url, or of its bytes first..last (inclusive) of total."""
    global downloaded
    request = urllib.request.Request(url)
    if first is not None:
        request.add_header("Range", f"bytes={first}-{last}")
    # A single dropped connection should not cost a whole run.
    for attempt in range(3):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                if first is not None:
                    expected = f"bytes {first}-{last}/{total}"
                    if response.status != 206 or response.headers.get("Content-Range") != expected:
                        fail(f"{url} answered a range request with status {response.status}, "
                             f"Content-Range {response.headers.get('Content-Range')!r}, not {expected!r}")
                body = response.read()
            break
        except urllib.error.HTTPError as error:
            fail(f"{url}: HTTP {error.code} {error.reason}")
        except (urllib.error.URLError, OSError) as error:
            if attempt == 2:
                fail(f"cannot download {url}: {getattr(error, 'reason', error)} (no network, or PyPI unreachable?)")
            time.sleep(2 * (attempt + 1))
    if first is not None and len(body) != last - first + 1:
        fail(f"{url}: asked for {last - first + 1} bytes from {first}, got {len(body)}")
    downloaded += len(body)
    return body


def wheel_tags(filename):
    """(build tag as an int, python tag, abi tag, platform tags) of a wheel's file name."""
    parts = filename[: -len(".whl")].split("-")
    build = int(re.match(r"\d*", parts[2]).group() or 0) if len(parts) == 6 else 0
    return build, parts[-3], parts[-2], parts[-1].split(".")


def resolve(spec):
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", spec):
        fail(f"{spec!r} is not a torch version: give X.Y (its newest X.Y.Z) or X.Y.Z")
    # The project's JSON, not /pypi/torch/VERSION/json: it lists every release,
    # which a minor needs, and some PyPI mirrors serve nothing else.
    releases = json.loads(get(INDEX))["releases"]

    def wheel(version):
        candidates = []
        for file in releases.get(version, []):
            name = file["filename"]
            if not name.endswith(".whl") or file.get("yanked"):
                continue
            build, python, abi, platforms = wheel_tags(name)
            if python == "cp311" and abi == "cp311" and any(
                    re.fullmatch(r"manylinux\w*_x86_64", platform) for platform in platforms):
                candidates.append((build, file))
        # Like pip, the highest build tag: 2.10.0 was re-uploaded as build 3.
        return max(candidates, key=lambda candidate: candidate[0])[1] if candidates else None

    if spec.count(".") == 2:
        versions = [spec] if spec in releases else []
    else:
        versions = [v for v in releases if re.fullmatch(re.escape(spec) + r"\.\d+", v)]
        versions.sort(key=lambda v: int(v.rsplit(".", 1)[1]), reverse=True)
    if not versions:
        # Point at the nearest thing that exists: that minor's releases, or the major's minors.
        major, minor = spec.split(".")[0], ".".join(spec.split(".")[:2])
        patches = sorted((v for v in releases if re.fullmatch(re.escape(minor) + r"\.\d+", v)),
                         key=lambda v: int(v.rsplit(".", 1)[1]))
        minors = sorted({int(v.split(".")[1]) for v in releases if re.fullmatch(re.escape(major) + r"\.\d+\.\d+", v)})
        there = ", ".join(patches) if patches else ", ".join(f"{major}.{y}" for y in minors) or "none"
        fail(f"torch {spec} is not on PyPI (releases there: {there})")
    for version in versions:
        file = wheel(version)
        if file:
            break
    else:
        fail(f"torch {', '.join(versions)} on PyPI: no wheel for cp311 on manylinux x86-64")
    url = urllib.parse.urljoin(INDEX, file["url"])
    print(f"torch {spec}: {version}, {file['filename']}", file=sys.stderr)
    print("\t".join([version, file["filename"], url, str(file["size"]), file["digests"]["sha256"]]))


def central_directory(url, size):
    """(offset, entries): where the central directory starts, and its entries
    as (name, method, crc, compressed size, size, local header offset)."""
    tail_size = min(size, 22 + 0xFFFF + 20)  # EOCD, the longest comment, the zip64 locator
    tail_start = size - tail_size
    tail = get(url, tail_start, size - 1, size)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0:
        fail(f"{url}: no end of central directory record: not a zip?")
    count, cd_size, cd_offset = struct.unpack_from("<10xHII", tail, end)
    locator = end - 20
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        (zip64_end,) = struct.unpack_from("<8xQ", tail, locator)
        if zip64_end < tail_start or tail[zip64_end - tail_start:zip64_end - tail_start + 4] != b"PK\x06\x06":
            fail(f"{url}: zip64 end of central directory record not where its locator says")
        count, cd_size, cd_offset = struct.unpack_from("<32xQQQ", tail, zip64_end - tail_start)
    if cd_offset + cd_size > size:
        fail(f"{url}: central directory at {cd_offset}+{cd_size} runs past the end ({size})")
    directory = get(url, cd_offset, cd_offset + cd_size - 1, size) if cd_size else b""
    entries, position = [], 0
    for _ in range(count):
        if directory[position:position + 4] != b"PK\x01\x02":
            fail(f"{url}: central directory entry {len(entries)} is damaged")
        (flags, method, crc, compressed, uncompressed, name_length, extra_length, comment_length,
         offset) = struct.unpack_from("<8xHH4xIIIHHH8xI", directory, position)
        name = directory[position + 46:position + 46 + name_length].decode("utf-8" if flags & 0x800 else "cp437")
        extra = directory[position + 46 + name_length:position + 46 + name_length + extra_length]
        # Zip64: the fields that overflowed are in extra field 1, in this order.
        while len(extra) >= 4:
            tag, length = struct.unpack_from("<HH", extra)
            if tag == 1:
                values = iter(struct.unpack_from(f"<{length // 8}Q", extra, 4))
                if uncompressed == 0xFFFFFFFF:
                    uncompressed = next(values)
                if compressed == 0xFFFFFFFF:
                    compressed = next(values)
                if offset == 0xFFFFFFFF:
                    offset = next(values)
            extra = extra[4 + length:]
        entries.append((name, method, crc, compressed, uncompressed, offset))
        position += 46 + name_length + extra_length + comment_length
    return cd_offset, entries


def extract(url, size, destination):
    size = int(size)
    cd_offset, entries = central_directory(url, size)
    directory_bytes = downloaded
    # Each member's bytes run from its local header to the next member's (or
    # to the central directory): that covers its local extra field and any
    # data descriptor without guessing their lengths.
    starts = sorted(entry[5] for entry in entries) + [cd_offset]
    following = dict(zip(starts, starts[1:]))
    wanted = sorted((e for e in entries if e[0].startswith(PREFIX) and not e[0].endswith("/")), key=lambda e: e[5])
    if not wanted:
        fail(f"{url} has no {PREFIX} members")
    # Neighbouring members are fetched together: the headers sit side by side
    # in the wheel, and one request per file would mean thousands of them. A
    # gap of up to 1 MiB is fetched and thrown away rather than split on;
    # 64 MiB per request bounds what is held in memory.
    groups = []
    for entry in wanted:
        first, end = entry[5], following[entry[5]]
        if groups and first - groups[-1][1] <= 1 << 20 and end - groups[-1][0] <= 64 << 20:
            groups[-1][1] = end
            groups[-1][2].append(entry)
        else:
            groups.append([first, end, [entry]])
    written = 0
    for first, end, members in groups:
        data = get(url, first, end - 1, size)
        for name, method, crc, compressed, uncompressed, offset in members:
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or "\\" in name:
                fail(f"{url}: refusing the member name {name!r}")
            local = offset - first
            if data[local:local + 4] != b"PK\x03\x04":
                fail(f"{url}: no local header for {name} at {offset}")
            flags, name_length, extra_length = struct.unpack_from("<6xH18xHH", data, local)
            local_name = data[local + 30:local + 30 + name_length].decode("utf-8" if flags & 0x800 else "cp437")
            if local_name != name:
                fail(f"{url}: the local header at {offset} names another member than {name}")
            start = local + 30 + name_length + extra_length
            body = data[start:start + compressed]
            if method == 8:
                inflater = zlib.decompressobj(-15)
                body = inflater.decompress(body) + inflater.flush()
            elif method != 0:
                fail(f"{url}: {name} uses compression method {method}, neither stored nor deflated")
            if len(body) != uncompressed or zlib.crc32(body) != crc:
                fail(f"{url}: {name} does not match its CRC-32 or size in the central directory")
            path = os.path.join(destination, *parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as sink:
                sink.write(body)
            written += uncompressed
    print(f"{len(wanted)} headers ({written} bytes) from {len(groups)} range requests; downloaded {downloaded} bytes "
          f"({directory_bytes} of zip directory, {downloaded - directory_bytes} of members) of a {size}-byte wheel",
          file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "resolve":
        resolve(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "extract":
        extract(*sys.argv[2:])
    else:
        fail(__doc__)
