#!/usr/bin/env python3
"""fake_wal.py DIR TIMELINE FIRST_SEGNO COUNT [--segment-size N] [--system-id N] [--marker TEXT]

Write COUNT files that look like PostgreSQL WAL segments to the shipper and to
bk verify: named TTTTTTTTXXXXXXXXYYYYYYYY, starting with an
XLogLongPageHeaderData (PostgreSQL 15 magic 0xD110, XLP_LONG_HEADER, the
segment's own address, system identifier, segment size, 8 kB blocks), the
rest random (incompressible, like a busy cluster's WAL is not, on purpose:
it makes every byte count). With --marker, the text is planted every 64 kB,
so tests can prove it never appears in plaintext on Kafka or in the
repository.
"""
import argparse
import os
import struct

parser = argparse.ArgumentParser()
parser.add_argument("dir")
parser.add_argument("timeline", type=int)
parser.add_argument("first_segno", type=int)
parser.add_argument("count", type=int)
parser.add_argument("--segment-size", type=int, default=16 * 1024 * 1024)
parser.add_argument("--system-id", type=int, default=7000000000000000001)
parser.add_argument("--marker", default=None)
args = parser.parse_args()

per_id = 0x100000000 // args.segment_size
for segno in range(args.first_segno, args.first_segno + args.count):
    name = "%08X%08X%08X" % (args.timeline, segno // per_id, segno % per_id)
    header = struct.pack("<HHIQI", 0xD110, 0x0002, args.timeline,
                         segno * args.segment_size, 0)
    header += b"\0" * 4
    header += struct.pack("<QII", args.system_id, args.segment_size, 8192)
    body = bytearray(os.urandom(args.segment_size - len(header)))
    if args.marker:
        mark = args.marker.encode()
        for pos in range(0, len(body) - len(mark), 65536):
            body[pos:pos + len(mark)] = mark
    with open(os.path.join(args.dir, name), "wb") as f:
        f.write(header)
        f.write(body)
    print(name)
