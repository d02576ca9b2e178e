#!/usr/bin/env python3
# Writes the seed corpus of xdp_frame_fuzz (tests/fuzz/corpus/xdp_frame_fuzz/): frames as they
# reach the AF_XDP socket, and near misses the parser must refuse. usage: make_seeds.py OUTDIR
import hashlib, os, struct, sys

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s

def eth(t): return bytes.fromhex("02000000000b02000000000a") + struct.pack("!H", t)

def v4(payload, sport=40000, dport=7946, partial=False, frag=0, ihl=5, pad=0):
    src, dst = bytes([10, 66, 0, 1]), bytes([10, 66, 0, 2])
    ulen = 8 + len(payload)
    opts = b"\0" * ((ihl - 5) * 4)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + ulen, 0, 0x4000 | frag, 64, 17, 0, src, dst) + opts
    h = h[:10] + struct.pack("!H", ~csum(h) & 0xffff) + h[12:]
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    u = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = csum(pseudo) if partial else (~csum(pseudo + u) & 0xffff) or 0xffff
    u = u[:6] + struct.pack("!H", c) + u[8:]
    return eth(0x0800) + h + u + b"\0" * pad

def v6(payload, sport=40000, dport=7946, nexthdr=17):
    src = bytes.fromhex("fd660000000000000000000000000001")
    dst = bytes.fromhex("fd660000000000000000000000000002")
    ulen = 8 + len(payload)
    h = struct.pack("!IHBB", 0x60000000, ulen, nexthdr, 64) + src + dst
    pseudo = src + dst + struct.pack("!IxxxB", ulen, 17)
    u = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = (~csum(pseudo + u) & 0xffff) or 0xffff
    u = u[:6] + struct.pack("!H", c) + u[8:]
    return eth(0x86DD) + h + u

rumor = b"RUMR\x00\x07" + bytes(range(58))
seeds = [
    v4(b""), v4(b"x"), v4(rumor), v4(rumor * 20), v4(rumor, partial=True), v4(b"hi", pad=20),
    v4(rumor, ihl=6), v4(rumor, frag=0x2000), v4(rumor)[:30],
    v6(b""), v6(rumor), v6(rumor * 20), v6(rumor, nexthdr=0), v6(rumor)[:60],
    eth(0x0806) + bytes(28),  # ARP
]
bad = bytearray(v4(rumor)); bad[-1] ^= 1; seeds.append(bytes(bad))
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for s in seeds:
    with open(os.path.join(out, hashlib.sha1(s).hexdigest()), "wb") as f:
        f.write(s)
