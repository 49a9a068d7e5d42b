#!/usr/bin/env python3
"""pvstall: opens connections to a peerd port that each announce a large
record or frame, send most of it and stall (issue 18: half-sent records
on the link port held the server's memory). For tests only.

  pvstall.py link HOST PORT --conns N [--size BYTES] [--sources A,B,...]
             [--volume NAME] [--bad-header] [--status FILE] [--hold SECONDS]

Each connection sends one link record (include/link.h): u32 LE header
length, u32 LE data length SIZE, a pv.Header (WRITE of SIZE bytes to
NAME, or bytes that are no pv.Header with --bad-header), then SIZE - 1
bytes of data as far as the server takes them, and stalls. Connections
go out from the --sources addresses in turn (default 127.0.0.1). Every
half second FILE gets one line "open=N closed=M sent=BYTES refused=R"
(refused: closed before the server read anything) until all are closed
or --hold s have passed.

  pvstall.py zmtp HOST PORT [--size BYTES] [--hold SECONDS]

One connection to a ZeroMQ ROUTER: the ZMTP 3.0 greeting (NULL
mechanism), READY as a DEALER, then a message frame whose 8-byte long
size announces SIZE bytes, 64 KiB of it, and a stall. Prints "CLOSED
after S s" when the server drops the connection, or "OPEN" after --hold
seconds.
"""
import argparse
import errno
import os
import select
import socket
import struct
import sys
import time


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_uint(field, v):
    return varint(field << 3) + varint(v)


def pb_str(field, s):
    b = s.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def write_header(volume, size, req_id):
    # pv.Header: version 1.1, op WRITE (2), req_id, volume, offset 0, length
    return (pb_uint(1, (1 << 16) | 1) + pb_uint(2, 2) + pb_uint(3, req_id) +
            pb_str(4, volume) + pb_uint(6, size))


def link_attack(a):
    srcs = a.sources.split(",") if a.sources else ["127.0.0.1"]
    conns = []
    for i in range(a.conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((srcs[i % len(srcs)], 0))
        s.connect((a.host, a.port))
        s.setblocking(False)
        if a.bad_header:
            hdr = b"\xff" * 40  # field 31 of wire type 7: no pv.Header
        else:
            hdr = write_header(a.volume, a.size, 1000 + i)
        head = struct.pack("<II", len(hdr), a.size) + hdr
        conns.append({"s": s, "head": head, "left": a.size - 1, "open": True,
                      "sent": 0})
    chunk = b"\xa5" * (1 << 20)
    end = time.time() + a.hold
    next_status = 0.0
    while True:
        now = time.time()
        live = [c for c in conns if c["open"]]
        for c in live:
            # the server closing (RST, or FIN seen as a readable EOF)
            try:
                r = c["s"].recv(65536)
                if r == b"":
                    c["open"] = False
                    continue
            except BlockingIOError:
                pass
            except OSError:
                c["open"] = False
                continue
            try:
                while c["head"]:
                    n = c["s"].send(c["head"])
                    c["head"] = c["head"][n:]
                    c["sent"] += n
                while c["left"] > 0:
                    n = c["s"].send(chunk[:min(len(chunk), c["left"])])
                    c["left"] -= n
                    c["sent"] += n
            except BlockingIOError:
                pass
            except OSError:
                c["open"] = False
        live = [c for c in conns if c["open"]]
        if now >= next_status or not live or now >= end:
            next_status = now + 0.5
            if a.status:
                sent = sum(c["sent"] for c in conns)
                refused = sum(1 for c in conns if not c["open"] and c["sent"] == 0)
                line = "open=%d closed=%d sent=%d refused=%d t=%.1f\n" % (
                    len(live), len(conns) - len(live), sent, refused, now)
                tmp = a.status + ".tmp"
                with open(tmp, "w") as f:
                    f.write(line)
                os.replace(tmp, a.status)
        if not live or now >= end:
            break
        socks = [c["s"] for c in live]
        wants = [c["s"] for c in live if c["head"] or c["left"] > 0]
        select.select(socks, wants, [], 0.2)
    for c in conns:
        c["s"].close()


def zmtp_attack(a):
    s = socket.create_connection((a.host, a.port), timeout=5)
    # greeting: signature, version 3.0, mechanism NULL, as-server 0, filler
    greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" +
                b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31)
    s.sendall(greeting)
    got = b""
    while len(got) < 64:
        b = s.recv(64 - len(got))
        if not b:
            print("CLOSED during the greeting")
            return
        got += b
    name = b"Socket-Type"
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", 6) + b"DEALER"
    s.sendall(b"\x04" + bytes([len(body)]) + body)  # short command frame
    # a message frame: flags LONG (0x02), 8-byte size
    s.sendall(b"\x02" + struct.pack(">Q", a.size))
    start = time.time()
    try:
        s.sendall(b"\x5a" * min(65536, a.size - 1))
    except OSError:
        pass
    s.settimeout(0.2)
    while time.time() < start + a.hold:
        try:
            b = s.recv(65536)
            if not b:
                print("CLOSED after %.1f s" % (time.time() - start))
                return
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                print("CLOSED after %.1f s" % (time.time() - start))
                return
            raise
    print("OPEN")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["link", "zmtp"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=8 << 20)
    p.add_argument("--sources", default="")
    p.add_argument("--volume", default="vol")
    p.add_argument("--bad-header", action="store_true")
    p.add_argument("--status", default="")
    p.add_argument("--hold", type=float, default=30)
    a = p.parse_args()
    if a.mode == "link":
        link_attack(a)
    else:
        zmtp_attack(a)


if __name__ == "__main__":
    sys.exit(main())
