#!/usr/bin/env python3
"""Measures what Redis's two client-tracking modes cost with many gateways,
for the near-cache's choice of mode (README, design notes).

H simulated gateways each have a data connection with tracking on, redirected
to a listener connection of their own subscribed to __redis__:invalidate (as
the gateway does on RESP2). Each gateway reads a random share of K keys. Then
one writer overwrites every key, pipelined, and the script reports the
invalidation messages the listeners received and the writer's time, for the
default mode (Redis tracks what each gateway read) and for BCAST with the
entries' prefix (every gateway hears of every write).

    scripts/tracking-modes.py REDIS_SOCKET [gateways] [keys] [read-share]
"""
import socket, sys, time, random

def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX); self.s.connect(path); self.buf = b""
    def send(self, *cmds):
        self.s.sendall(b"".join(enc(*c) for c in cmds))
    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(1 << 16)
        line, self.buf = self.buf.split(b"\r\n", 1); return line
    def reply(self):
        line = self._line(); t = line[:1]
        if t in (b"+", b"-"): return line[1:].decode()
        if t == b":": return int(line[1:])
        if t == b"$":
            n = int(line[1:])
            if n < 0: return None
            while len(self.buf) < n + 2: self.buf += self.s.recv(1 << 16)
            data, self.buf = self.buf[:n], self.buf[n + 2:]; return data
        if t == b"*":
            n = int(line[1:]); return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(line)
    def call(self, *args):
        self.send(args); return self.reply()

def run(path, mode, gateways, keys, share):
    admin = Conn(path); admin.call("FLUSHALL")
    names = [b"cg:ns:e:F:v1:%08d" % i for i in range(keys)]
    value = b"x" * 1024
    admin.send(*[("SET", k, value) for k in names]); [admin.reply() for _ in names]
    listeners, datas = [], []
    for g in range(gateways):
        listener = Conn(path); lid = listener.call("CLIENT", "ID")
        listener.send(("SUBSCRIBE", "__redis__:invalidate")); listener.reply()
        data = Conn(path)
        options = ["CLIENT", "TRACKING", "on", "REDIRECT", lid, "NOLOOP"]
        if mode == "bcast": options += ["BCAST", "PREFIX", "cg:ns:e:"]
        assert data.call(*options) == "OK"
        read = random.sample(names, int(keys * share))
        data.send(*[("GET", k) for k in read]); [data.reply() for _ in read]
        listeners.append(listener)
        datas.append(data)  # a connection that closes is forgotten by Redis
    tracked = admin.call("INFO", "stats").decode().split("tracking_total_keys:")[1].split("\r\n")[0]
    writer = Conn(path)
    started = time.perf_counter()
    writer.send(*[("SET", k, value) for k in names]); [writer.reply() for _ in names]
    elapsed = time.perf_counter() - started
    # Count what each listener received: a PING marks the end (answered in order).
    messages = keys_named = 0
    for listener in listeners:
        listener.send(("PING",))
        while True:
            r = listener.reply()
            if r[0] == b"pong": break
            messages += 1
            keys_named += len(r[2]) if r[2] else 0
    print(f"{mode:8} gateways {gateways}, keys {keys}, each gateway read {share:.0%}: "
          f"tracked keys {tracked}, messages {messages}, keys named {keys_named} "
          f"({keys_named / keys:.2f} per write), writer {keys / elapsed:,.0f} SET/s")
    for c in listeners + datas: c.s.close()

if __name__ == "__main__":
    path = sys.argv[1]
    gateways = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    keys = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    share = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    random.seed(1)
    for mode in ("default", "bcast"):
        run(path, mode, gateways, keys, share)
