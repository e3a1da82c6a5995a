"""Read Qt resource bundles (.rcc, format versions 1-3): list and extract their files.

    python tools/rcc.py BUNDLE.rcc            # list the files
    python tools/rcc.py BUNDLE.rcc OUT_DIR    # extract them

Layout (qtbase src/corelib/io/qresource.cpp): a 'qres' header with the offsets of the node
tree, the data blobs and the names table; tree nodes of 14 bytes (22 from version 2, with a
modification time); names as length-prefixed UTF-16BE; data blobs with a 4-byte length, zlib
compressed (qCompress: a 4-byte uncompressed length, then zlib) when the node's flag 1 is set.
"""
import os
import struct
import sys
import zlib


def read_rcc(path):
    """{path inside the bundle: bytes}."""
    buf = open(path, "rb").read()
    if buf[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    node_size = 14 if version < 2 else 22

    def name(off):
        n = struct.unpack(">H", buf[names + off : names + off + 2])[0]
        return buf[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    out = {}

    def walk(index, prefix):
        o = tree + index * node_size
        name_off, flags = struct.unpack(">IH", buf[o : o + 6])
        nm = name(name_off) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", buf[o + 6 : o + 14])
            for c in range(first, first + count):
                walk(c, f"{prefix}{nm}/" if index else "")
        else:
            data_off = struct.unpack(">I", buf[o + 10 : o + 14])[0]
            size = struct.unpack(">I", buf[data + data_off : data + data_off + 4])[0]
            blob = buf[data + data_off + 4 : data + data_off + 4 + size]
            if flags & 1:
                blob = zlib.decompress(blob[4:])
            elif flags & 4:
                raise ValueError("zstd-compressed resource: not supported")
            out[prefix + nm] = blob

    walk(0, "")
    return out


if __name__ == "__main__":
    files = read_rcc(sys.argv[1])
    for p, b in sorted(files.items()):
        if len(sys.argv) > 2:
            dst = os.path.join(sys.argv[2], p)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "wb").write(b)
        print(f"{len(b):>9} {p}")
