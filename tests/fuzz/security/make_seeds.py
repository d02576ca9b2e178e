#!/usr/bin/env python3
"""Writes the seed inputs of frame_fuzz, config_fuzz and admin_fuzz (tests/fuzz/security) into
tests/fuzz/corpus/<target>/seed-*. The committed corpora were grown from these seeds by
libFuzzer and minimised with -merge=1 (docs/security.md "Fuzzing"); `tools/dev fuzz` campaigns
write what they find into a scratch copy, never here.

usage: make_seeds.py RUMOR_BINARY  (the `rumor` binary prints the config keys)"""
import hashlib
import os
import struct
import subprocess
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def write(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- frame_fuzz ----
# Raw seeds reuse the packet corpus (label ""; frame_fuzz's label is "fuzz": libFuzzer finds the
# label hash from the comparison).
packet_dir = os.path.join(root, "packet")
packets = sorted(os.listdir(packet_dir))[:40]
for i, name in enumerate(packets):
    with open(os.path.join(packet_dir, name), "rb") as f:
        p = f.read()
    write("frame_fuzz", "raw-%02d" % i, b"\x00" + p)
    if len(p) >= 20:
        # The messages behind a seal: shard, sender, then the packet's messages.
        write("frame_fuzz", "sealed-%02d" % i, b"\x01" + p[4:6] + struct.pack("<Q", 42 + i) + p[20:])
key = b"k" * 32
key_id = hashlib.blake2b(b"rumor-key-id\x00" + key, digest_size=8).digest()[0]
header = b"ru\x01\x01" + b"\x00\x00" + b"\x00\x00" + b"\x00" * 4 + struct.pack("<Q", 7)
for n, body in enumerate([b"", b"\x00" * 16, os.urandom(64), os.urandom(300)]):
    write("frame_fuzz", "forged-%d" % n, b"\x00" + header + bytes([key_id]) + os.urandom(24) + body)

# ---- config_fuzz ----
keys = subprocess.run([sys.argv[1], "agent", "--config-keys"], check=True,
                      capture_output=True, text=True).stdout
keys = keys.replace("key_file", "# key_file")
write("config_fuzz", "all-keys.toml", keys.encode())
write("config_fuzz", "small.toml", b'preset = "local"\nname = "n1"\nbind = "127.0.0.1:7001"\n'
      b'join = ["127.0.0.1:7002"]\n[encryption]\nmode = "require"\n'
      b'keys = ["a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="]\n[node]\nprobe_interval_ms = 500\n')
write("config_fuzz", "overrides", b"node.probe_interval_ms=100\nencryption.mode=send\n"
      b"transport.backend=mmsg\nlabel=prod\nstore.value_bytes_max=999999\n")


# ---- admin_fuzz ----
def frame(version, kind, fields, columns=None):
    body = bytes([version, kind])
    if columns is not None:
        body += struct.pack(">H", columns)
    body += struct.pack(">I", len(fields))
    for f in fields:
        body += struct.pack(">I", len(f)) + f
    return struct.pack(">I", len(body)) + body


write("admin_fuzz", "get", frame(1, 1, [b"service_version"]))
write("admin_fuzz", "set", frame(1, 2, [b"k", b"v"]))
write("admin_fuzz", "keyring", frame(1, 9, [b"install", b"a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="]))
write("admin_fuzz", "pipelined", frame(1, 5, []) + frame(1, 6, []))
write("admin_fuzz", "response", frame(1, 0, [b"mode", b"require", b"", b"key", b"00ff", b"primary"], 3))
write("admin_fuzz", "bad-version", frame(2, 1, [b"x"]))
