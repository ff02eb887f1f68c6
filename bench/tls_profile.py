#!/usr/bin/env python3
"""Where a TLS session's server CPU goes: sdpsd under callgrind, a known
number of sessions of each kind from the load generator, and the
instructions sdpsd executed per session, plaintext against TLS.

    bench/tls_profile.py [--build-dir DIR] [--sessions N] [--certs ecdsa,rsa] [--keep DIR]

Instruction counts (callgrind's Ir: user-space instructions of sdpsd and
every library it calls; the kernel is not in them) do not depend on how
busy the machine is, so this runs on a shared machine where timings would
be noise. They are not times: under valgrind OpenSSL sees a CPU without
AVX-512 and picks other code than it would natively (bench/README.md).

What it does: makes a site as bench/vs_dovecot_loadgen.py does (config/
sdps.yaml's chain, 50 messages of ~4 KiB in each maildrop, a chain of
certificates per key kind made with openssl), runs sdpsd with one event
loop under `valgrind --tool=callgrind`, and for each workload: three
sessions to warm up, counters zeroed (`callgrind_control -z`), exactly N
sessions (`sdps-loadgen --sessions N`, one client), a dump
(`callgrind_control -d`). Prints instructions per session, per handshake
(a TLS greeting+QUIT session less a plaintext one) and, per session, the
inclusive cost of OpenSSL's entry points (handshake, record reads and
writes, and the cryptography inside them). `--keep DIR` keeps the dumps
for `callgrind_annotate`. Exit 0: it ran; 1: something failed.

Python 3 standard library only; needs valgrind.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
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

# name, what it is, loadgen arguments ("TLS" ports are filled in)
WORKLOADS = [
    ("plain full", "full session in plaintext", ["--workload", "full", "@plain"]),
    ("TLS full", "full session, implicit TLS, new handshake", ["--workload", "full", "@tls", "--tls", "implicit"]),
    ("TLS full resumed", "full session, implicit TLS, resumed",
     ["--workload", "full", "@tls", "--tls", "implicit", "--resume", "on"]),
    ("STLS full", "full session, STLS, new handshake", ["--workload", "full", "@plain", "--tls", "stls"]),
    ("plain hello", "greeting + QUIT in plaintext", ["--workload", "handshake", "@plain"]),
    ("TLS 1.3 new", "greeting + QUIT, TLS 1.3, new handshake", ["--workload", "handshake", "@tls", "--tls", "implicit"]),
    ("TLS 1.3 resumed", "greeting + QUIT, TLS 1.3, resumed",
     ["--workload", "handshake", "@tls", "--tls", "implicit", "--resume", "on"]),
    ("TLS 1.2 new", "greeting + QUIT, TLS 1.2, new handshake",
     ["--workload", "handshake", "@tls", "--tls", "implicit", "--tls-max", "1.2"]),
    ("TLS 1.2 resumed", "greeting + QUIT, TLS 1.2, resumed",
     ["--workload", "handshake", "@tls", "--tls", "implicit", "--tls-max", "1.2", "--resume", "on"]),
]

# OpenSSL entry points whose inclusive cost is shown (either spelling: an
# Asio SSL stream calls SSL_read/SSL_write, sdps's own stream the _ex ones)
ENTRY_POINTS = [
    ("handshake", ["SSL_do_handshake"]),
    ("  ECDHE key generation", ["EVP_PKEY_generate"]),
    ("  ECDHE key agreement", ["EVP_PKEY_derive"]),
    ("  key schedule (HKDF)", ["EVP_KDF_derive"]),
    ("  signature", ["EVP_DigestSign"]),
    ("  ticket encoding", ["i2d_SSL_SESSION"]),
    ("record writes", ["SSL_write", "SSL_write_ex"]),
    ("record reads", ["SSL_read", "SSL_read_ex"]),
    ("  AES-GCM", ["EVP_CipherUpdate"]),
    ("SSL_new + SSL_free", ["SSL_new", "SSL_free"]),
    ("error queue clearing", ["ERR_clear_error"]),
    ("malloc + free", ["malloc", "free"]),
]


def inclusive_costs(dump: Path) -> dict[str, int]:
    """Inclusive Ir of every named function in a callgrind dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
                         capture_output=True, text=True, timeout=600).stdout
    costs: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+?):(\S+)", line)
        if m:
            name = m.group(3).split("(")[0].split("@")[0]
            costs[name] = max(costs.get(name, 0), int(m.group(1).replace(",", "")))
    return costs


def total(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise BenchError(f"{dump}: no totals")


class Profiled:
    """sdpsd under callgrind, one event loop."""

    def __init__(self, build: Path, sdps: vl.Sdps, out: Path):
        self.build, self.sdps, self.out = build, sdps, out
        self.process: subprocess.Popen | None = None
        self.plain = self.tls = 0

    def start(self, label: str) -> None:
        self.label = label
        self.log_path = self.out / f"{label}.log"
        plain, tls = vd.free_port(), vd.free_port()
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}/{label}.%p",
               str(self.build / "bin" / "sdpsd"), "-c", str(self.sdps.config),
               "--listen", f"127.0.0.1:{plain}", "--listen-tls", f"127.0.0.1:{tls}"]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.log_path, "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while "(implicit TLS)" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"sdpsd did not start under valgrind:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        self.plain, self.tls = plain, tls

    def control(self, *args: str) -> None:
        assert self.process
        r = subprocess.run(["callgrind_control", *args, str(self.process.pid)], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            raise BenchError(f"callgrind_control {' '.join(args)}: {r.stdout}{r.stderr}")

    def dumps(self) -> list[Path]:
        assert self.process
        return sorted(self.out.glob(f"{self.label}.{self.process.pid}.*"), key=lambda p: int(p.suffix[1:]))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="sdps release build (default: build-bench/, then build/)")
    ap.add_argument("--sessions", type=int, default=40, help="measured sessions per workload (40)")
    ap.add_argument("--certs", default="ecdsa,rsa", help="certificate kinds (ecdsa,rsa)")
    ap.add_argument("--keep", help="keep the callgrind dumps and logs in this folder")
    args = ap.parse_args()
    certs = [c for c in args.certs.split(",") if c]
    if not certs or any(c not in vl.CERT_KINDS for c in certs) or args.sessions < 1:
        ap.error(f"--certs takes {', '.join(vl.CERT_KINDS)}; --sessions a positive count")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            print(f"tls_profile: {tool} is not installed (Debian package valgrind)", file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="sdps-tls-profile-"))
    out = Path(args.keep).resolve() if args.keep else tmp / "dumps"
    out.mkdir(parents=True, exist_ok=True)
    profiled = None
    try:
        build = vd.find_build(args.build_dir)
        loadgen = build / "bin" / "sdps-loadgen"
        if not loadgen.is_file():
            raise BenchError(f"no {loadgen}: build the sdps-loadgen target")
        sdps = vl.Sdps(build, tmp / "sdps", 100)
        rng = random.Random(1939)
        for user, password in USERS:
            sdps.add_host(user, password)
        for i in range(50):
            size = max(1024, int(rng.gauss(4096, 512)))
            sdps.deliver([f"fred@{u}.{vd.DOMAIN}" for u, _ in USERS], vl.message(rng, i, size, f"fred@{vd.DOMAIN}"),
                         ("finchley", "docklands")[i % 2])
        users = tmp / "users"
        users.write_text("".join(f"{u} {p}\n" for u, p in USERS))
        log(f"sdps build {build} (source at {vd.source_revision()}); {args.sessions} sessions per workload")
        for kind in certs:
            chain, key, _ = vl.make_chain(tmp / "pki" / kind, kind)
            sdps.use_tls((chain, key))
            sdps.config.write_text(sdps.config.read_text().replace("hosts: ../var/hosts\n",
                                                                   "hosts: ../var/hosts\nthreads: 1\n"))
            profiled = Profiled(build, sdps, out)
            profiled.start(kind)
            per_session: dict[str, int] = {}
            entries: dict[str, dict[str, int]] = {}
            for name, _, wargs in WORKLOADS:
                port = ["--port", str(profiled.plain if "@plain" in wargs else profiled.tls)]
                cmd = [str(loadgen), "--users", str(users), "--clients", "1", "--timeout", "300", *port,
                       *(a for a in wargs if not a.startswith("@"))]
                for sessions, measured in ((3, False), (args.sessions, True)):
                    if measured:
                        profiled.control("-z")
                    r = subprocess.run([*cmd, "--sessions", str(sessions)], capture_output=True, text=True,
                                       timeout=3600)
                    if r.returncode != 0:
                        raise BenchError(f"{name}: sdps-loadgen exited {r.returncode}: {r.stdout[-2000:]}")
                before = len(profiled.dumps())
                profiled.control("-d", name.replace(" ", "_"))
                deadline = time.monotonic() + 120
                while len(profiled.dumps()) == before and time.monotonic() < deadline:
                    time.sleep(0.2)
                dump = profiled.dumps()[-1]
                per_session[name] = total(dump) // args.sessions
                entries[name] = {k: v // args.sessions for k, v in inclusive_costs(dump).items()}
                log(f"  {kind}, {name}: {per_session[name]:,} instructions per session")
            profiled.stop()
            profiled = None
            print()
            print(f"{vl.CERT_KINDS[kind][0]} certificate: sdpsd's instructions (callgrind Ir) per session, "
                  f"{args.sessions} sessions each")
            print()
            print("| workload | instructions per session | beyond its plaintext counterpart |")
            print("|---|---|---|")
            for name, what, wargs in WORKLOADS:
                base = "plain full" if "full" in wargs else "plain hello"
                extra = per_session[name] - per_session[base] if name != base else 0
                print(f"| {what} | {per_session[name]:,} | {f'{extra:+,}' if name != base else ''} |")
            print()
            shown = [n for n, _, _ in WORKLOADS if n in ("TLS full", "TLS 1.3 new", "TLS 1.3 resumed", "TLS 1.2 new",
                                                         "TLS 1.2 resumed")]
            print("| OpenSSL entry point (inclusive, per session) | " + " | ".join(shown) + " |")
            print("|---|" + "---|" * len(shown))
            for label, names in ENTRY_POINTS:
                cells = [f"{sum(entries[n].get(f, 0) for f in names):,}" for n in shown]
                print(f"| {label} | " + " | ".join(cells) + " |")
        if args.keep:
            print(f"\ndumps kept in {out} (callgrind_annotate --inclusive=yes FILE)")
        return 0
    except (BenchError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as e:
        print(f"tls_profile: {e}", file=sys.stderr)
        return 1
    finally:
        if profiled:
            profiled.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
