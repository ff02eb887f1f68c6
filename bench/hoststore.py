#!/usr/bin/env python3
"""The host store through sdpsd: a hosts file against PostgreSQL, at 200,000
and 1,000,000 hosts, in one run. Prints a table; asserts nothing about speed.

    bench/hoststore.py [--build-dir build-release] [--hosts 200000,1000000]
                       [--stores file,postgresql] [--seconds 10] [--clients 8]

Needs a build with sdpsd, sdps, the modules, sdps-hostgen and sdps-loadgen
(a Release build: not the sanitizer one), and Debian's postgresql package
(tests/blackbox/pg_harness.py starts a private server as an unprivileged
user, on a unix socket in a temporary folder, and removes it at the end).
Everything runs on this machine: publish figures only from a quiet one.

For each host count, sdps-hostgen writes a hosts file (synthetic Argon2id
strings; the first --real hosts real ones of pw-NAME at the `min` cost, for
logins). For each store, two sdpsd (A and B) serve the same hosts: the same
file, or the same database (init and `sdps host import` of the file, timed).
Measured:
  start        sdpsd A from exec to "listening on"
  RSS          A's VmRSS after start, and after the login runs
  login        PASS sent to its +OK (p50, p99), --clients clients looping
               USER, PASS, STAT, QUIT for --seconds, each session the next
               real host (sdps-loadgen --rotate on) and the auth cache off
               (auth_cache_ttl: 0s): every login a cold one
  change seen  `sdps -c A host passwd` of a host B has just logged in: from
               the tool's exit to B's first login with the new password
               (B polls; the tool's own time beside it)
  busy p99     the login p99 again while a changer runs `sdps -c A host
               passwd` for --changes other hosts one after the other; how
               many of them finished within the window is shown beside it
               (each one rewrites a whole hosts file, and every sdpsd
               re-reads it)
  cache drop   a third sdpsd C with the auth cache on (auth_cache_ttl:
               300s) holds a host's success; `sdps -c A host passwd` of
               that host, --notify-changes times: from the tool's exit to
               C's log line saying it dropped the host's cache entries
               (the trigger, NOTIFY and LISTEN for the database; the
               re-read's announcement for the file), p50 and max
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_pop3

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=str(ROOT / "build-release"), help="the build tree (default: build-release/)")
    p.add_argument("--hosts", default="200000,1000000", help="host counts, comma-separated")
    p.add_argument("--stores", default="file,postgresql", help="file, postgresql or both")
    p.add_argument("--real", type=int, default=20000, help="hosts with real hashes (the logins)")
    p.add_argument("--clients", type=int, default=8, help="concurrent login clients")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each login measurement")
    p.add_argument("--changes", type=int, default=100, help="passwords changed during the busy measurement")
    p.add_argument("--notify-changes", type=int, default=20, help="changes timed for the cache drop")
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args()


ARGS = parse_args()
bench_pop3.use_build_tree(ARGS.build_dir)

import sdps_harness  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402
from sdps_harness import SANITIZE, Site, binary  # noqa: E402

# A million hosts take seconds to load on a busy machine: the harness's
# start-up wait must not be what ends a run.
sdps_harness.TIMEOUT = 600.0


def login_ok(port: int, user: str, password: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rwb")
        f.readline()
        for line in (f"USER {user}", f"PASS {password}"):
            f.write(line.encode() + b"\r\n")
            f.flush()
            reply = f.readline()
            if not reply.startswith(b"+OK"):
                return False
        f.write(b"QUIT\r\n")
        f.flush()
        f.readline()
        return True


def loadgen(port: int, users: Path, seconds: float) -> dict:
    out = subprocess.run([str(binary("sdps-loadgen")), "--port", str(port), "--workload", "login", "--users",
                          str(users), "--rotate", "on", "--clients", str(ARGS.clients), "--seconds", str(seconds),
                          "--warmup", "1"], capture_output=True, text=True, timeout=seconds + 600)
    result = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
    if result is None:
        raise RuntimeError(f"sdps-loadgen: {out.stdout}\n{out.stderr}")
    figures = json.loads(result[len("RESULT "):])
    if figures["verify_errors"] or figures["other_errors"]:
        print(f"# sdps-loadgen reported errors: {out.stdout.strip()}", file=sys.stderr)
    return figures


def passwd(site: Site, host: str, password: str) -> float:
    """`sdps -c SITE host passwd HOST --pop3`; returns the seconds it took."""
    start = time.monotonic()
    site.sdps("host", "passwd", host, "--pop3", input=password + "\n", timeout=600)
    return time.monotonic() - start


def make_site(hosts: str) -> Site:
    # log_level stays info: the harness waits for the "listening on" line.
    return Site(fail_delay="0s", top={"hosts": f'"{hosts}"'},
                module_settings={"auth": {"auth_cache_ttl": "0s", "store_pool_size": "4"}})


def measure(store: str, hosts_file: Path, names: list[str], spare: list[str], users: Path, pg) -> dict:
    row: dict = {"store": store}
    if store == "postgresql":
        db = pg.create_database()
        where = pg.uri(db)
        with make_site(where) as loader:
            loader.sdps("host", "init")
            start = time.monotonic()
            loader.sdps("host", "import", str(hosts_file), timeout=3600)
            row["import_s"] = time.monotonic() - start
    else:
        where = str(hosts_file)
    with make_site(where) as a, make_site(where) as b:
        start = time.monotonic()
        server_a = a.start()
        row["start_s"] = time.monotonic() - start
        row["rss_start_mib"] = server_a.rss_kib() / 1024
        server_b = b.start()

        cold = loadgen(server_a.port, users, ARGS.seconds)
        row["login_p50_ms"], row["login_p99_ms"] = cold["pass_p50_ms"], cold["pass_p99_ms"]
        row["logins"] = cold["sessions"]
        row["rss_after_mib"] = server_a.rss_kib() / 1024

        # A change through A's config, seen by B.
        host = names[0]
        assert login_ok(server_b.port, host, f"pw-{host}"), "B cannot log in before the change"
        row["passwd_s"] = passwd(a, host, "changed by A")
        changed = time.monotonic()
        while not login_ok(server_b.port, host, "changed by A"):
            if time.monotonic() - changed > 600:
                raise RuntimeError("B never saw the change")
        row["seen_s"] = time.monotonic() - changed
        passwd(a, host, f"pw-{host}")  # as it was, for the next store's run

        # Logins while passwords change (hosts outside the login set).
        done = []
        stop = threading.Event()

        def changer():
            for name in spare[:ARGS.changes]:
                if stop.is_set():
                    return
                passwd(a, name, "changed under load")
                done.append(time.monotonic())

        worker = threading.Thread(target=changer, daemon=True)
        window_start = time.monotonic() + 1  # sdps-loadgen's warm-up
        worker.start()
        busy = loadgen(server_a.port, users, ARGS.seconds)
        window_end = time.monotonic()
        stop.set()
        worker.join()
        row["busy_p99_ms"] = busy["pass_p99_ms"]
        row["changes_in_window"] = sum(1 for t in done if window_start <= t <= window_end)
        row["changes_done"] = len(done)

        drops = cache_drop_latencies(a, where, names[1])
        row["drop_p50_s"], row["drop_max_s"] = percentile(drops, 50), max(drops)
    return row


DROPPED = "changed in the host store: its entries dropped"


def cache_drop_latencies(changer: Site, where: str, host: str) -> list[float]:
    """Seconds from each `host passwd`'s exit to the cache drop in C's log."""
    with Site(fail_delay="0s", top={"hosts": f'"{where}"', "log_level": "debug"},
              module_settings={"auth": {"auth_cache_ttl": "300s"}}) as c:
        server_c = c.start()
        out = []
        for i in range(ARGS.notify_changes):
            password = f"pw-{host}" if i % 2 else f"changed {i}"
            previous = f"changed {i - 1}" if i % 2 else f"pw-{host}"
            assert login_ok(server_c.port, host, previous) and login_ok(server_c.port, host, previous), \
                "C cannot log in before the change"
            before = server_c.log().count(f"auth cache: {host} {DROPPED}")
            passwd(changer, host, password)
            done = time.monotonic()
            while server_c.log().count(f"auth cache: {host} {DROPPED}") == before:
                if time.monotonic() - done > 60:
                    raise RuntimeError("C never dropped the host's cache entries")
                time.sleep(0.001)
            out.append(time.monotonic() - done)
            assert not login_ok(server_c.port, host, previous), "C let the old password in after the drop"
        if ARGS.notify_changes % 2:
            passwd(changer, host, f"pw-{host}")
        return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> int:
    if SANITIZE:
        print("hoststore.py: SDPS_SANITIZE is set; use a Release build", file=sys.stderr)
        return 2
    for name in ("sdpsd", "sdps", "sdps-hostgen", "sdps-loadgen"):
        if not binary(name).exists():
            print(f"hoststore.py: {binary(name)} not built", file=sys.stderr)
            return 2
    stores = [s.strip() for s in ARGS.stores.split(",") if s.strip()]
    counts = [int(n) for n in ARGS.hosts.split(",") if n.strip()]
    rows = []
    pg = PostgresServer() if "postgresql" in stores else None
    try:
        with tempfile.TemporaryDirectory(prefix="sdps-hoststore-") as tmp:
            for count in counts:
                hosts_file = Path(tmp) / f"hosts-{count}"
                old_umask = os.umask(0o077)  # the store refuses a file others can read
                try:
                    with open(hosts_file, "wb") as out:
                        subprocess.run([str(binary("sdps-hostgen")), str(count), "--real", str(min(ARGS.real, count))],
                                       stdout=out, check=True, timeout=3600)
                finally:
                    os.umask(old_umask)
                names = []  # the first --real (logins), then --changes more (the changer's)
                with open(hosts_file) as lines:
                    for line in lines:
                        if line.strip() and not line.startswith("#"):
                            names.append(line.split()[0])
                            if len(names) == ARGS.real + ARGS.changes:
                                break
                real, spare = names[:min(ARGS.real, count)], names[min(ARGS.real, count):]
                users = Path(tmp) / f"users-{count}"
                users.write_text("".join(f"{n} pw-{n}\n" for n in real[1:]))  # real[0]: the change test's
                size = hosts_file.stat().st_size
                for store in stores:
                    print(f"# {count} hosts ({size / 2**20:.1f} MiB), {store} ...", file=sys.stderr, flush=True)
                    row = measure(store, hosts_file, real, spare, users, pg)
                    row["hosts"] = count
                    rows.append(row)
                    print(f"# {json.dumps(row)}", file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.close()

    print(f"\n{ARGS.clients} clients, {ARGS.seconds:g} s per login run, auth cache off, min-cost hashes\n")
    print("| hosts | store | start | RSS start, after logins | login p50, p99 | change seen by B (tool) "
          "| login p99 during changes (changes in window) | cache drop p50, max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        imported = f" (import {r['import_s']:.1f} s)" if "import_s" in r else ""
        print(f"| {r['hosts']:,} | {r['store']}{imported} | {r['start_s']:.2f} s | {r['rss_start_mib']:.0f}, "
              f"{r['rss_after_mib']:.0f} MiB | {r['login_p50_ms']}, {r['login_p99_ms']} ms | {r['seen_s']:.3f} s "
              f"({r['passwd_s']:.2f} s) | {r['busy_p99_ms']} ms ({r['changes_in_window']} of {ARGS.changes}) "
              f"| {r['drop_p50_s'] * 1000:.1f}, {r['drop_max_s'] * 1000:.1f} ms |")
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
