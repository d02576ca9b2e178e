#!/usr/bin/env python3
"""Writes the seed inputs of bulk_fuzz (tests/fuzz/bulk) into tests/fuzz/corpus/bulk_fuzz/seed-*.

An input is a sequence of steps `op:u8 len:u16 body[len]` (bulk_fuzz.cc): 0 an announcement,
1 a chunk request, 2 a chunk, 3 time passes, 4 a chunk for the last request's transfer.
usage: make_seeds.py"""
import os
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "bulk_fuzz")
os.makedirs(root, exist_ok=True)


def step(op, body):
    return struct.pack("<BH", op, len(body)) + body


def entry_ref(hlc, node, size, h, chunk, key, flags=0):
    return struct.pack("<BQQIQH", flags, hlc, node, size, h, chunk) + struct.pack("<H", len(key)) + key


def request(xfer, hlc, node, size, chunk, first, mask, key):
    return (struct.pack("<IQQIHIQ", xfer, hlc, node, size, chunk, first, mask) +
            struct.pack("<H", len(key)) + key)


def chunk(xfer, index, data):
    return struct.pack("<II", xfer, index) + data


def write(name, data):
    with open(os.path.join(root, "seed-" + name), "wb") as f:
        f.write(data)


hlc = 1_764_000_000_000 << 16
write("announce", step(0, entry_ref(hlc, 9, 5000, 1, 1328, b"k")))
write("announce-then-chunks",
      step(0, entry_ref(hlc, 9, 3000, 1, 1328, b"k")) +
      b"".join(step(4, chunk(0, i, b"x" * (1328 if i < 2 else 344))) for i in range(3)))
write("announce-timeouts",
      step(0, entry_ref(hlc, 9, 100_000, 7, 1000, b"big")) +
      b"".join(step(3, bytes([10])) for _ in range(8)))
write("newer-replaces",
      step(0, entry_ref(hlc, 9, 4000, 1, 512, b"a")) +
      step(0, entry_ref(hlc + 1, 9, 4000, 1, 512, b"a")) +
      step(0, entry_ref(hlc, 9, 4000, 1, 512, b"a")))
write("bounds",
      b"".join(step(0, entry_ref(hlc, 9, 1 << 20, 1, 1328, b"k%d" % i)) for i in range(6)))
write("serve-held", step(1, request(1, hlc, 1, 20000, 1328, 0, 0xFFFF, b"big")))
write("serve-last", step(1, request(3, hlc, 1, 20000, 1328, 15, 0x1, b"big")))
write("serve-unknown", step(1, request(2, hlc, 1, 20000, 1328, 0, 0x3, b"other")))
write("stray-chunk", step(2, chunk(12345, 0, b"y" * 100)))
write("bad-ref", step(0, entry_ref(hlc, 9, 0, 1, 100, b"")))
