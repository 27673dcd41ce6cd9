"""Print the advance widths of the characters a badge can show, in DejaVu Sans at 11 px (the font shields.io
badges fall back to where Verdana is missing), for prober/page/badges.py's WIDTHS table.

    python scripts/badge_widths.py [/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf]

Reads the font's cmap (format 4) and hmtx tables with struct: no font library needed."""

from __future__ import annotations

import string
import struct
import sys

CHARS = string.ascii_letters + string.digits + " .-_%:/()"


def tables(data: bytes) -> dict[str, tuple[int, int]]:
    count = struct.unpack(">H", data[4:6])[0]
    found = {}
    for i in range(count):
        tag, _checksum, offset, length = struct.unpack(">4sIII", data[12 + 16 * i : 28 + 16 * i])
        found[tag.decode()] = (offset, length)
    return found


def glyph_ids(data: bytes, offset: int) -> dict[int, int]:
    count = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
    for i in range(count):
        platform, encoding, sub = struct.unpack(">HHI", data[offset + 4 + 8 * i : offset + 12 + 8 * i])
        at = offset + sub
        if platform == 3 and encoding == 1 and struct.unpack(">H", data[at : at + 2])[0] == 4:
            segs = struct.unpack(">H", data[at + 6 : at + 8])[0] // 2
            ends = struct.unpack(f">{segs}H", data[at + 14 : at + 14 + 2 * segs])
            base = at + 16 + 2 * segs
            starts = struct.unpack(f">{segs}H", data[base : base + 2 * segs])
            deltas = struct.unpack(f">{segs}h", data[base + 2 * segs : base + 4 * segs])
            range_at = base + 4 * segs
            offsets = struct.unpack(f">{segs}H", data[range_at : range_at + 2 * segs])
            out = {}
            for ch in CHARS:
                code = ord(ch)
                for s in range(segs):
                    if starts[s] <= code <= ends[s]:
                        if offsets[s] == 0:
                            out[code] = (code + deltas[s]) & 0xFFFF
                        else:
                            where = range_at + 2 * s + offsets[s] + 2 * (code - starts[s])
                            glyph = struct.unpack(">H", data[where : where + 2])[0]
                            out[code] = (glyph + deltas[s]) & 0xFFFF if glyph else 0
                        break
            return out
    raise SystemExit("no format 4 Unicode cmap")


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    data = open(path, "rb").read()
    t = tables(data)
    units = struct.unpack(">H", data[t["head"][0] + 18 : t["head"][0] + 20])[0]
    metrics = struct.unpack(">H", data[t["hhea"][0] + 34 : t["hhea"][0] + 36])[0]
    ids = glyph_ids(data, t["cmap"][0])
    hmtx = t["hmtx"][0]

    def advance(glyph: int) -> int:
        index = min(glyph, metrics - 1)
        return struct.unpack(">H", data[hmtx + 4 * index : hmtx + 4 * index + 2])[0]

    widths = {ch: round(advance(ids[ord(ch)]) * 11 / units, 2) for ch in CHARS}
    print("WIDTHS = {")
    for ch, width in widths.items():
        print(f"    {ch!r}: {width},")
    print("}")


if __name__ == "__main__":
    main()
