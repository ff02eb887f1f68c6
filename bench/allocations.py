#!/usr/bin/env python3
"""How many heap allocations a session costs sdpsd: the embedded server
(config/sdps.yaml's chain, one event loop) with bench/allocs/malloc_count.so
preloaded, a known number of sessions of each workload from the load
generator, and the allocations (calls and octets) counted between them.

    bench/allocations.py [--build-dir DIR] [--sessions N] [--messages M]

The counts do not depend on how busy the machine is: a shared machine will
do. What it does: makes a site as bench/vs_dovecot_loadgen.py does (M
messages of ~4 KiB in each maildrop, 4 users), starts sdpsd with
LD_PRELOAD=malloc_count.so (`threads: 1`), and for each workload runs three
sessions to warm up, reads the counter (SIGUSR2), runs exactly N sessions
(`sdps-loadgen --sessions N`, one client), reads it again, and prints the
difference per session, per command and per message retrieved. Needs a
build without sanitizers (the preloaded counter replaces malloc). Exit 0:
it ran; 1: something failed.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_dovecot as vd  # noqa: E402
import vs_dovecot_loadgen as vl  # noqa: E402
from vs_dovecot import BenchError, log  # noqa: E402

USERS = [(f"f{i:03d}", f"pw-f{i:03d}") for i in range(1, 5)]

# name, what it is, loadgen arguments, commands per session besides RETRs
WORKLOADS = [
    ("full", "full session (USER, PASS, STAT, UIDL, LIST, a RETR per message, QUIT)", ["--workload", "full"], 6),
    ("login", "login session (USER, PASS, STAT, QUIT)", ["--workload", "login"], 4),
    ("hello", "greeting and QUIT", ["--workload", "handshake"], 1),
]


class Counted:
    """sdpsd with the allocation counter preloaded."""

    def __init__(self, build: Path, config: Path, counter: Path, out: Path):
        self.port = vd.free_port()
        self.file = out / "counts"
        self.log_path = out / "sdpsd.log"
        env = dict(os.environ, LD_PRELOAD=str(counter), SDPS_MALLOC_COUNT_FILE=str(self.file))
        self.process = subprocess.Popen([str(build / "bin" / "sdpsd"), "-c", str(config), "--listen",
                                         f"127.0.0.1:{self.port}"], env=env, stdin=subprocess.DEVNULL,
                                        stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while "listening on" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"sdpsd did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def counts(self) -> tuple[int, int]:
        """(calls, octets) so far."""
        self.file.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not self.file.exists() or not self.file.read_text().endswith("\n"):
            if time.monotonic() > deadline:
                raise BenchError("the allocation counter did not answer SIGUSR2 (is malloc_count.so preloaded?)")
            time.sleep(0.01)
        calls, octets = self.file.read_text().split()
        return int(calls), int(octets)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="sdps release build (default: build-bench/, then build/)")
    ap.add_argument("--sessions", type=int, default=200, help="measured sessions per workload (200)")
    ap.add_argument("--messages", type=int, default=50, help="messages in each maildrop (50)")
    args = ap.parse_args()
    if args.sessions < 1 or args.messages < 1:
        ap.error("--sessions and --messages take positive counts")
    tmp = Path(tempfile.mkdtemp(prefix="sdps-allocations-"))
    server = None
    try:
        build = vd.find_build(args.build_dir)
        loadgen = build / "bin" / "sdps-loadgen"
        counter = build / "bench" / "malloc_count.so"
        for needed in (loadgen, counter):
            if not needed.is_file():
                raise BenchError(f"no {needed}: build a configuration without sanitizers (sdps-loadgen, malloc_count)")
        sdps = vl.Sdps(build, tmp / "sdps", 100)
        rng = random.Random(1939)
        for user, password in USERS:
            sdps.add_host(user, password)
        for i in range(args.messages):
            size = max(1024, int(rng.gauss(4096, 512)))
            sdps.deliver([f"fred@{u}.{vd.DOMAIN}" for u, _ in USERS], vl.message(rng, i, size, f"fred@{vd.DOMAIN}"),
                         ("finchley", "docklands")[i % 2])
        sdps.config.write_text(sdps.config.read_text().replace("hosts: ../var/hosts\n",
                                                               "hosts: ../var/hosts\nthreads: 1\n"))
        users = tmp / "users"
        users.write_text("".join(f"{u} {p}\n" for u, p in USERS))
        server = Counted(build, sdps.config, counter, tmp)
        log(f"sdps build {build} (source at {vd.source_revision()}); {args.sessions} sessions per workload, "
            f"{args.messages} messages per maildrop")
        print()
        print("| workload | allocations per session | octets allocated per session | per command |")
        print("|---|---|---|---|")
        for name, what, wargs, commands in WORKLOADS:
            cmd = [str(loadgen), "--users", str(users), "--clients", "1", "--timeout", "300", "--port",
                   str(server.port), *wargs]
            deltas = []
            for sessions, measured in ((3, False), (args.sessions, True)):
                before = server.counts()
                r = subprocess.run([*cmd, "--sessions", str(sessions)], capture_output=True, text=True, timeout=3600)
                if r.returncode != 0:
                    raise BenchError(f"{name}: sdps-loadgen exited {r.returncode}: {r.stdout[-2000:]}")
                after = server.counts()
                if measured:
                    deltas = [after[0] - before[0], after[1] - before[1]]
            per_session = deltas[0] / args.sessions
            total_commands = commands + (args.messages if name == "full" else 0)
            print(f"| {what} | {per_session:,.0f} | {deltas[1] / args.sessions:,.0f} | "
                  f"{per_session / total_commands:,.1f} |")
        print()
        return 0
    except (BenchError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as e:
        print(f"allocations: {e}", file=sys.stderr)
        return 1
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
