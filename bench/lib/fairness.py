#!/usr/bin/env python3
"""Clients for bench/daemon.sh: a connection-hogging attacker, and probes that time a
normal client's requests.

usage:
  fairness.py attack HOST:PORT SRC_IP SLOW IDLE
      Holds SLOW slowloris connections (a request head started, one more header line
      every second, never finished) and IDLE keep-alive connections (one GET /healthz,
      then silence, another request every 3 s so the 5 s idle timeout never ends
      them), all from SRC_IP. A connection the server closes or refuses (503) is opened
      again after a random 0.5 to 1.5 s, so the attacker keeps pressing without turning
      into a connection flood. Runs until killed.

  fairness.py probe HOST:PORT SRC_IP PATH SECONDS EVERY_MS TIMEOUT_S [STOP_FILE]
      Sends `GET PATH` on a fresh connection from SRC_IP every EVERY_MS ms (each in its
      own thread, so a slow answer does not delay the next probe) for SECONDS seconds,
      or until STOP_FILE exists. A probe is answered when a 200 comes within TIMEOUT_S.
      Prints one line: `probes answered p50_ms p99_ms max_ms` (latencies of every
      probe, an unanswered one counting as TIMEOUT_S).

Std only. Run with a raised `ulimit -n` (bench/daemon.sh sets it).
"""
import os
import random
import selectors
import socket
import sys
import threading
import time


def connect(addr, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((src, 0))
    try:
        s.connect(addr)
    except BlockingIOError:
        pass
    return s


def attack(addr, src, slow, idle):
    host = f"{addr[0]}:{addr[1]}".encode()
    sel = selectors.DefaultSelector()
    # Each connection: {"kind", "sock", "next" (when to send next), "buf"}.
    conns = {}
    reopen = []  # (when, kind)
    now = time.monotonic()
    for i in range(slow):
        reopen.append((now + i * 0.002, "slow"))
    for i in range(idle):
        reopen.append((now + 1 + i * 0.002, "idle"))

    def open_one(kind):
        try:
            s = connect(addr, src)
        except OSError:
            reopen.append((time.monotonic() + random.uniform(0.5, 1.5), kind))
            return
        c = {"kind": kind, "sock": s, "next": time.monotonic(), "started": False}
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_READ, c)

    def close(c):
        try:
            sel.unregister(c["sock"])
        except (KeyError, ValueError):
            pass
        conns.pop(c["sock"].fileno(), None)
        c["sock"].close()
        reopen.append((time.monotonic() + random.uniform(0.5, 1.5), c["kind"]))

    def send(c, data):
        try:
            c["sock"].send(data)
            return True
        except (BlockingIOError, InterruptedError):
            return True  # buffer full or still connecting: try next time
        except OSError:
            close(c)
            return False

    while True:
        now = time.monotonic()
        due = [r for r in reopen if r[0] <= now]
        if due:
            reopen[:] = [r for r in reopen if r[0] > now]
            for _, kind in due:
                open_one(kind)
        for c in list(conns.values()):
            if c["next"] > now:
                continue
            if c["kind"] == "slow":
                data = b"X-Slow: 1\r\n" if c["started"] else (
                    b"GET /api/backups HTTP/1.1\r\nHost: " + host + b"\r\n")
                c["next"] = now + 1.0
            else:
                data = b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
                c["next"] = now + 3.0
            if send(c, data):
                c["started"] = True
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            try:
                data = c["sock"].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            # A slowloris connection answered (408, 503) or any connection closed:
            # open another one later.
            if not data or c["kind"] == "slow" or data.startswith(b"HTTP/1.1 503"):
                close(c)


def probe(addr, src, path, seconds, every_ms, timeout_s, stop_file):
    host = f"{addr[0]}:{addr[1]}"
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    results = []
    lock = threading.Lock()

    def one():
        t0 = time.monotonic()
        ok = False
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(timeout_s)
            s.bind((src, 0))
            s.connect(addr)
            s.sendall(req)
            buf = b""
            while True:
                left = timeout_s - (time.monotonic() - t0)
                if left <= 0:
                    break
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            ok = buf.startswith(b"HTTP/1.1 200 ")
            s.close()
        except OSError:
            ok = False
        took = time.monotonic() - t0
        with lock:
            results.append((ok, took if ok else max(took, timeout_s)))

    threads = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        if stop_file and os.path.exists(stop_file):
            break
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)
        n += 1
        time.sleep(max(0.0, start + n * every_ms / 1000 - time.monotonic()))
    for t in threads:
        t.join(timeout_s + 5)
    with lock:
        lat = sorted(r[1] * 1000 for r in results)
        answered = sum(1 for r in results if r[0])
    if not lat:
        print("0 0 0 0 0")
        return
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{len(lat)} {answered} {pct(0.50):.1f} {pct(0.99):.1f} {lat[-1]:.1f}")


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "attack":
        h, p = a[1].rsplit(":", 1)
        attack((h, int(p)), a[2], int(a[3]), int(a[4]))
    elif len(a) >= 7 and a[0] == "probe":
        h, p = a[1].rsplit(":", 1)
        probe((h, int(p)), a[2], a[3], float(a[4]), float(a[5]), float(a[6]),
              a[7] if len(a) > 7 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
