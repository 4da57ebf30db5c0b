#!/usr/bin/env python3
"""tamper_frame.py [--crc-only] FILE: flip one payload byte of the first bk
frame in FILE (a stored object) and recompute that frame's CRC-32C, so that
the keyless checks pass and only the AES-GCM tag can tell.  With --crc-only,
flip one bit of that frame's CRC-32C instead, so that the tag still holds and
only the CRC can tell.  Offsets: docs/frame-format.md (header length at 8,
payload length at 32, a 16-byte tag, then the CRC)."""
import struct
import sys


def crc32c(buf):
    crc = 0xFFFFFFFF
    for b in buf:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


crc_only = sys.argv[1] == "--crc-only"
path = sys.argv[-1]
data = bytearray(open(path, "rb").read())
header_len = struct.unpack(">I", data[8:12])[0]
payload_len = struct.unpack(">I", data[32:36])[0]
end = header_len + payload_len + 16
if crc_only:
    data[end] ^= 0x01
else:
    data[header_len + payload_len // 2] ^= 0x01
    data[end:end + 4] = struct.pack(">I", crc32c(bytes(data[:end])))
open(path, "wb").write(data)
