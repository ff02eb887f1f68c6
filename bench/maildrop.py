#!/usr/bin/env python3
"""Big maildrops on the embedded default: how long login + STAT + UIDL take
for a host with N queued messages. Prints figures; asserts nothing about
speed.

    bench/maildrop.py [--build-dir build-bench] [--sizes 20000,100000] [--runs 7]

Needs a build with sdpsd, sdps and the modules: a Release or RelWithDebInfo
build without sanitizers (a sanitizer build is refused: its figures would
mean nothing).

Setup, per size N: a temporary site with config/sdps.yaml's module chain
(two local punts, finchley and docklands, merged), `password_cost: min`,
one host `big` whose N messages are written straight into the spool in its
on-disk format (docs/spool.md), alternately into each punt, with sizes
varying from 300 to about 4,300 octets. Writing them by hand is not what an
MTA may do (it skips tmp/ and fsync), but it gives the same files as
`sdps deliver` and takes seconds instead of minutes.

Each run is one session over TCP on 127.0.0.1: connect and read the
greeting (not timed), then, timed from the USER line sent to the last line
received,

    USER big / PASS ... (+OK N messages)   "login"
    STAT                                    "stat"
    UIDL (N lines)                          "uidl"

then QUIT (not timed). One untimed session first warms the page cache and
the server; then --runs timed sessions; the table shows the median and the
fastest run of each column. After the timed runs, one more session checks
the replies (N messages, their total size, every UIDL in arrival order) so
that a figure never comes from a wrong answer.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import bench_pop3

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=str(ROOT / "build-bench"), help="the build tree (default: build-bench/)")
    p.add_argument("--sizes", default="20000,100000", help="maildrop sizes (messages), comma-separated")
    p.add_argument("--runs", type=int, default=7, help="timed sessions per size (the median is shown)")
    p.add_argument("--seed", type=int, default=8, help="seed of the message sizes")
    return p.parse_args()


ARGS = parse_args()
bench_pop3.use_build_tree(ARGS.build_dir)

from sdps_harness import SANITIZE, Site, binary  # noqa: E402

PASSWORD = "bench password"
HOST = "big"
SENDER = "alice@example.com"


def write_spool(site: Site, count: int, seed: int) -> tuple[list[str], int]:
    """Writes `count` messages for HOST into the punts, alternately; returns
    the UIDLs in arrival order and the total size LIST reports."""
    rng = random.Random(seed)
    folders = []
    for punt in site.punts:
        folder = site.punt_dir(punt) / HOST
        (folder / "tmp").mkdir(parents=True, mode=0o700, exist_ok=True)
        folders.append(folder)
    return_path = f"Return-Path: <{SENDER}>\r\n".encode()
    start_us = int(time.time() * 1_000_000) - count * 1000
    uidls, total = [], 0
    for i in range(count):
        arrival = start_us + i * 1000
        uidl = f"{arrival:017d}.{rng.getrandbits(64):016x}"
        body = b"x" * rng.randrange(200, 4200) + b"\r\n"
        stored = (f"From: {SENDER}\r\nTo: fred@{HOST}.demon.co.uk\r\nSubject: message {i}\r\n\r\n".encode() + body)
        secs, micros = divmod(arrival, 1_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"
        header = (f"SDPS-Spool: 1\r\nEnvelope-From: <{SENDER}>\r\nEnvelope-To: <fred@{HOST}.demon.co.uk>\r\n"
                  f"Arrival: {stamp}\r\n\r\n").encode()
        size = len(return_path) + len(stored)
        path = folders[i % len(folders)] / f"{uidl},s={size},u=fred"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, header + stored)
        finally:
            os.close(fd)
        uidls.append(uidl)
        total += size
    return uidls, total


class Client(bench_pop3.Client):
    """A minimal POP3 client reading replies straight off the socket."""

    TIMEOUT = 60.0

    def body(self) -> bytes:
        """The rest of a multi-line reply, up to (without) the final dot line."""
        if self.buf.startswith(b".\r\n"):
            del self.buf[:3]
            return b""
        searched = 0
        while True:
            end = self.buf.find(b"\r\n.\r\n", searched)
            if end >= 0:
                out = bytes(self.buf[:end + 2])
                del self.buf[:end + 5]
                return out
            searched = max(0, len(self.buf) - 4)
            self.fill()

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.line()
        finally:
            self.sock.close()


def session(port: int) -> tuple[float, float, float, bytes, bytes, bytes]:
    c = Client(port)
    try:
        t0 = time.perf_counter()
        c.ok(f"USER {HOST}")
        login = c.ok(f"PASS {PASSWORD}")
        t1 = time.perf_counter()
        stat = c.ok("STAT")
        t2 = time.perf_counter()
        c.ok("UIDL")
        listing = c.body()
        t3 = time.perf_counter()
    finally:
        c.close()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, login, stat, listing


def check(port: int, uidls: list[str], total: int) -> None:
    _, _, _, login, stat, listing = session(port)
    want_stat = f"+OK {len(uidls)} {total}".encode()
    if stat != want_stat:
        raise RuntimeError(f"STAT said {stat!r}, expected {want_stat!r}")
    want = "".join(f"{i + 1} {u}\r\n" for i, u in enumerate(uidls)).encode()
    if listing != want:
        raise RuntimeError("UIDL listing differs from the messages written (order or UIDLs)")


def cpu_ms(pid: int) -> float:
    """The process's CPU time so far (user + system), in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(count: int) -> dict:
    with Site(fail_delay="0s", top={"idle_timeout": "2h"}) as site:
        site.add_host(HOST, pop3=PASSWORD)
        t = time.perf_counter()
        uidls, total = write_spool(site, count, ARGS.seed)
        written = time.perf_counter() - t
        server = site.start()
        session(server.port)  # warm-up
        cpu_before = cpu_ms(server.pid)
        runs = [session(server.port)[:3] for _ in range(ARGS.runs)]
        cpu = (cpu_ms(server.pid) - cpu_before) / ARGS.runs
        check(server.port, uidls, total)
        server.stop()
    columns = list(zip(*runs))
    return {
        "count": count,
        "written_s": written,
        "median": [statistics.median(c) for c in columns] + [statistics.median(sum(r) for r in runs)],
        "best": [min(c) for c in columns] + [min(sum(r) for r in runs)],
        "cpu": cpu,
    }


def main() -> int:
    if SANITIZE:
        print("maildrop.py: SDPS_SANITIZE is set: sanitizer builds give meaningless figures", file=sys.stderr)
        return 2
    if not binary("sdpsd").exists():
        print(f"maildrop.py: no sdpsd in {ARGS.build_dir}: build it first (RelWithDebInfo or Release)",
              file=sys.stderr)
        return 2
    cache = Path(ARGS.build_dir) / "CMakeCache.txt"
    if cache.exists():
        text = cache.read_text()
        if "SDPS_SANITIZE:BOOL=ON" in text or "CMAKE_BUILD_TYPE:STRING=Debug" in text:
            print(f"maildrop.py: {ARGS.build_dir} is a Debug or sanitizer build: use a release build",
                  file=sys.stderr)
            return 2
    sizes = [int(s) for s in ARGS.sizes.split(",") if s]
    print(f"login + STAT + UIDL on the embedded default (two local punts merged), {ARGS.runs} runs each, ms")
    print(f"{'messages':>9} | {'login':>7} | {'STAT':>6} | {'UIDL':>7} | {'total':>7} | {'best total':>10} | "
          f"{'server CPU':>10}")
    for n in sizes:
        r = measure(n)
        login, stat, uidl, total = r["median"]
        print(f"{n:>9} | {login:7.1f} | {stat:6.2f} | {uidl:7.1f} | {total:7.1f} | {r['best'][3]:10.1f} | "
              f"{r['cpu']:10.1f}", flush=True)
    print("(wall-clock medians over the runs; UIDL includes receiving the listing in Python; server CPU is\n"
          " sdpsd's user + system time per session, login to QUIT, in 10 ms ticks averaged over the runs;\n"
          f" load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
