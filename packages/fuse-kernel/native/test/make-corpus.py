#!/usr/bin/env python3
"""Writes the fuzz target's seed corpus (native/test/corpus/): one file per request sequence a
kernel really sends, in the record format fuzz.c reads. Run it again after changing the format."""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
ROOT, BY_CID, MODEL, WHOLE, PART, LINK = 1, 2, 3, 4, 5, 6
unique = [100]

def req(opcode, nodeid, body=b''):
    unique[0] += 1
    header = struct.pack('<IIQQIIIHH', 40 + len(body), opcode, unique[0], nodeid, 0, 0, 1, 0, 0)
    data = header + body
    return bytes([0]) + struct.pack('<H', len(data)) + data

def answer(how=0x2f):
    return bytes([0x80 | how])

LOOKUP, FORGET, GETATTR, READLINK, OPEN, READ, RELEASE, STATFS = 1, 2, 3, 5, 14, 15, 18, 17
GETXATTR, LISTXATTR, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, ACCESS, DESTROY, BATCH_FORGET, INTERRUPT = 22, 23, 25, 26, 27, 28, 29, 34, 38, 42, 36
WRITE, MKDIR, SETATTR = 16, 9, 4

def open_in(flags=0):
    return struct.pack('<II', flags, 0)

def read_in(fh, offset, size):
    return struct.pack('<QQIIQII', fh, offset, size, 0, 0, 0, 0)

def release_in(fh):
    return struct.pack('<QIIQ', fh, 0, 0, 0)

seeds = {
    'lookup-getattr': req(LOOKUP, MODEL, b'whole.bin\0') + req(GETATTR, WHOLE, bytes(16)) + req(LOOKUP, MODEL, b'missing\0'),
    'lookup-dynamic': req(LOOKUP, BY_CID, b'm\0') + answer(0x10) + req(LOOKUP, ROOT, b'name\0') + answer(0x00),
    'open-read-complete': req(OPEN, WHOLE, open_in()) + req(READ, WHOLE, read_in(1, 0, 4096)) + req(READ, WHOLE, read_in(1, (2 << 20) - 100, 4096)) + req(RELEASE, WHOLE, release_in(1)),
    'open-read-filling': req(OPEN, PART, open_in()) + answer(0x20) + req(READ, PART, read_in(1, 0, 65536)) + req(READ, PART, read_in(1, 1 << 20, 131072)) + answer(0x30) + answer(0x40) + req(RELEASE, PART, release_in(1)),
    'open-unanswered-expire': req(OPEN, PART, open_in()) + answer(0x60) + req(READ, PART, read_in(1, 1 << 20, 4096)) + answer(0x60),
    'open-write-refused': req(OPEN, WHOLE, open_in(os.O_WRONLY)) + req(OPEN, WHOLE, open_in(os.O_TRUNC)) + req(WRITE, WHOLE, bytes(40) + b'x') + req(MKDIR, MODEL, bytes(8) + b'd\0') + req(SETATTR, WHOLE, bytes(88)),
    'readdir': req(OPENDIR, MODEL, open_in()) + req(READDIR, MODEL, read_in(1, 0, 4096)) + req(READDIR, MODEL, read_in(1, 2, 80)) + req(RELEASEDIR, MODEL, release_in(1)),
    'readdirplus': req(OPENDIR, MODEL, open_in()) + req(44, MODEL, read_in(1, 0, 4096)) + req(44, MODEL, read_in(1, 1, 200)) + req(RELEASEDIR, MODEL, release_in(1)) + req(OPENDIR, ROOT, open_in()) + answer(0x50) + req(44, ROOT, read_in(1, 0, 4096)),
    'readdir-dynamic': req(OPENDIR, ROOT, open_in()) + answer(0x50) + req(READDIR, ROOT, read_in(1, 0, 4096)) + req(RELEASEDIR, ROOT, release_in(1)),
    'readlink-statfs': req(READLINK, LINK) + req(STATFS, ROOT) + req(READLINK, WHOLE),
    'xattr-access': req(GETXATTR, WHOLE, struct.pack('<II', 64, 0) + b'user.x\0') + req(LISTXATTR, WHOLE, struct.pack('<II', 0, 0)) + req(LISTXATTR, WHOLE, struct.pack('<II', 64, 0)) + req(ACCESS, WHOLE, struct.pack('<II', 4, 0)) + req(ACCESS, WHOLE, struct.pack('<II', 2, 0)),
    'forget-interrupt-flush': req(FORGET, WHOLE, struct.pack('<Q', 1)) + req(BATCH_FORGET, 0, struct.pack('<II', 2, 0) + struct.pack('<QQ', WHOLE, 1) * 2) + req(INTERRUPT, 0, struct.pack('<Q', 5)) + req(FLUSH, WHOLE, bytes(24)),
    'destroy-init': req(DESTROY, 0) + req(GETATTR, ROOT, bytes(16)) + req(INIT, 0, struct.pack('<IIII', 7, 31, 1 << 17, 0)) + req(GETATTR, ROOT, bytes(16)),
    'truncated': req(READ, WHOLE, read_in(1, 0, 4096)[:10]) + req(OPEN, WHOLE, b'') + req(LOOKUP, MODEL, b'no-nul'),
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)
print(f'{len(seeds)} seeds in {OUT}', file=sys.stderr)
