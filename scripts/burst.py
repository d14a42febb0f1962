#!/usr/bin/env python3
"""Hits against offered load on a gateway's Redis path (issue #14, item 3).

Stores one entry through the gateway, then has CONNECTIONS clients each send
LOOKUPS lookups of it while keeping DEPTH of them in flight, and counts the
replies by kind: hit, miss, "miss, do not store", and error replies by code.
Written from docs/PROTOCOL.md with the standard library only (MessagePack is
encoded by hand for the few shapes needed).

  scripts/burst.py SOCKET DEPTH [CONNECTIONS] [LOOKUPS]

Prints one line: depth, connections, lookups, the counts, and the time taken.
"""
import hashlib
import socket
import struct
import sys
import threading
import time


def mp_uint(n):
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return b"\xcc" + bytes([n])
    if n < 0x10000:
        return b"\xcd" + struct.pack(">H", n)
    if n < 0x100000000:
        return b"\xce" + struct.pack(">I", n)
    return b"\xcf" + struct.pack(">Q", n)


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    return b"\xd9" + bytes([len(b)]) + b


def mp_bin(b):
    if len(b) < 0x100:
        return b"\xc4" + bytes([len(b)]) + b
    if len(b) < 0x10000:
        return b"\xc5" + struct.pack(">H", len(b)) + b
    return b"\xc6" + struct.pack(">I", len(b)) + b


def frame(*elements):
    payload = bytes([0x90 | len(elements)]) + b"".join(elements)
    return struct.pack(">I", len(payload)) + payload


FUNCTION = "Burst.hot(x:)"
VERSION = "v1"
KEY = hashlib.sha256(b"burst").digest()


def read_exactly(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the gateway closed the connection")
        data += chunk
    return bytes(data)


def read_reply(sock):
    """(type, id, status or error code) of the next reply frame."""
    (length,) = struct.unpack(">I", read_exactly(sock, 4))
    payload = read_exactly(sock, length)
    # [type, id, ...]: a fixarray whose first two elements are uints.
    position = 1

    def uint():
        nonlocal position
        b = payload[position]
        if b < 0x80:
            position += 1
            return b
        size = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[b]
        value = int.from_bytes(payload[position + 1 : position + 1 + size], "big")
        position += 1 + size
        return value

    kind = uint()
    ident = uint()
    detail = uint() if kind in (131, 255) else None
    return kind, ident, detail


def connect(path, name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(frame(mp_uint(1), mp_uint(1), mp_uint(1), mp_str(name), mp_uint(1)))
    assert read_reply(sock)[0] == 129, "no hello reply"
    return sock


def worker(path, depth, lookups, counts, lock, index):
    sock = connect(path, "burst-%d" % index)
    lookup = lambda ident: frame(mp_uint(3), mp_uint(ident), mp_str(FUNCTION), mp_str(VERSION), mp_bin(KEY))
    # A writer thread keeps `depth` lookups in flight (a window of permits
    # that each reply gives back), sending what it may in one write, while
    # this thread reads: a client that reads as it writes, however deep.
    window = threading.Semaphore(depth)

    def write():
        sent = 0
        while sent < lookups:
            window.acquire()
            batch = 1
            while sent + batch < lookups and batch < 1024 and window.acquire(blocking=False):
                batch += 1
            sock.sendall(b"".join(lookup(100 + sent + i) for i in range(batch)))
            sent += batch

    writer = threading.Thread(target=write)
    writer.start()
    local = {}
    for _ in range(lookups):
        kind, _, detail = read_reply(sock)
        window.release()
        if kind == 131:
            label = {0: "hit", 1: "miss", 2: "missDoNotStore"}.get(detail, "status%d" % detail)
        elif kind == 255:
            label = "error%d" % detail
        else:
            label = "type%d" % kind
        local[label] = local.get(label, 0) + 1
    writer.join()
    sock.close()
    with lock:
        for label, count in local.items():
            counts[label] = counts.get(label, 0) + count


def main():
    path = sys.argv[1]
    depth = int(sys.argv[2])
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    lookups = int(sys.argv[4]) if len(sys.argv) > 4 else max(20000, depth)

    setup = connect(path, "burst-setup")
    setup.sendall(frame(mp_uint(4), mp_uint(2), mp_str(FUNCTION), mp_str(VERSION), mp_bin(KEY),
                        mp_uint(600000), mp_uint(1000), mp_bin(b"x" * 100)))
    kind, _, _ = read_reply(setup)
    assert kind == 132, "no store reply"

    counts = {}
    lock = threading.Lock()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(path, depth, lookups, counts, lock, i)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = connections * lookups
    hits = counts.get("hit", 0)
    others = " ".join("%s=%d" % (k, v) for k, v in sorted(counts.items()) if k != "hit")
    print("depth=%d connections=%d lookups=%d hits=%d (%.1f%%) %s time=%.2fs" % (
        depth, connections, total, hits, 100.0 * hits / total, others, elapsed))


if __name__ == "__main__":
    main()
