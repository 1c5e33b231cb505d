#!/usr/bin/env python3
"""retarget-version-need.py LIBRARY OLD NEW

Makes an ELF64 shared library's version need OLD (say GLIBCXX_3.4.32) name NEW
instead (say GLIBCXX_3.4.29), in place. NEW must already be a need of the
library from the same file, so its name is in the string table and ld.so
checks nothing new.

Why: Debian 13's Level Zero loader 1.20.6 needs GLIBCXX_3.4.32 from libstdc++
for one symbol only, std::ios_base_library_init, a marker GCC 13 references in
every object that includes <iostream> and that no relocation uses. Debian 12's
libstdc++ stops at GLIBCXX_3.4.30, so ld.so refuses the library. Marking the
need weak instead would load it too, but ld.so then warns on stderr in every
process that links the loader. Exits non-zero, changing nothing, if OLD is
missing or NEW is not needed from the same file.
"""
import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE


def elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = (h << 4) + c
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g
    return h & 0xFFFFFFFF


def retarget(data: bytearray, old: bytes, new: bytes) -> int:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    changed = 0
    for _, sh_type, _, _, offset, _, link, info, _, _ in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]

        def name_at(index: int) -> bytes:
            start = strtab + index
            return bytes(data[start : data.index(b"\0", start)])

        need = offset
        for _ in range(info):  # Elf64_Verneed: vn_version, vn_cnt, vn_file, vn_aux, vn_next
            _, count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entries, entry = [], need + aux
            for _ in range(count):  # Elf64_Vernaux: vna_hash, vna_flags, vna_other, vna_name, vna_next
                fields = struct.unpack_from("<IHHII", data, entry)
                entries.append((entry, fields))
                entry += fields[4]
            names = {name_at(fields[3]): fields[3] for _, fields in entries}
            for position, (_, flags, other, name, _) in entries:
                if name_at(name) != old:
                    continue
                if new not in names:
                    raise SystemExit(f"{new.decode()} is not needed from the same file as {old.decode()}")
                struct.pack_into("<IHHI", data, position, elf_hash(new), flags, other, names[new])
                changed += 1
            need += next_need
    return changed


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    path, old, new = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
    with open(path, "rb") as file:
        data = bytearray(file.read())
    if not retarget(data, old, new):
        raise SystemExit(f"{path}: needs no {old.decode()}")
    with open(path, "wb") as file:
        file.write(data)
    print(f"{path}: version need {old.decode()} now names {new.decode()}", file=sys.stderr)


if __name__ == "__main__":
    main()
