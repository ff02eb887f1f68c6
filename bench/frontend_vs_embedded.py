#!/usr/bin/env python3
"""Front end over two back ends versus the embedded default, on the same
mail, in one run: sessions per second and RETR throughput, side by side and
as ratios. Prints figures; asserts nothing about speed.

    bench/frontend_vs_embedded.py [--build-dir build] [--seconds 3] [--rounds 3] [--no-loadgen]
                                  [--baseline OTHER-BUILD-DIR]

Needs a build with sdpsd, sdps and the modules (scripts/demo makes one in
build/; use a RelWithDebInfo or Release build, not the sanitizer one).
Everything runs on this machine: the front end, both back ends, the
embedded server and the clients share its CPUs, so the front end's figures
include the cost of its back ends, which in production run on the punts.

What is measured (each figure the median of --rounds runs of --seconds,
the two servers measured alternately so drift hits both alike):
  sessions/s   N clients, each looping a whole session on its own host:
               connect, greeting, USER, PASS, STAT, UIDL, QUIT
               (each host has --messages small messages over both punts);
  RETR MiB/s   one client retrieving --big messages of --big-size octets
               (over both punts) in one session, repeatedly;
  CPU/session  each server process's CPU time (user + system, from
               /proc) per session in the sessions/s runs: what a machine
               running only front ends, or only the embedded default,
               spends per session. Their ratio is the capacity of a
               front-end machine relative to an embedded one, with the
               back ends on their punts as deployed.
  baseline     with --baseline, a third server in every round: a front end
               run by another build tree's sdpsd (with that tree's modules)
               on the same configuration and back ends, so that a change
               to the front end is measured against the code before it in
               the same minutes (runs minutes apart on one machine differ
               by more than most changes);
  loadgen      the same comparison with the C++ load generator
               (bench/README.md, sdps-loadgen, when the build has it): its
               `login` workload (USER, PASS, STAT, QUIT) and `full` one
               (every message retrieved), at the same client counts, with
               the servers' CPU per session; a client that costs little
               CPU of its own leaves more of the machine to the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import bench_pop3

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=str(ROOT / "build"), help="the build tree (default: build/)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    p.add_argument("--rounds", type=int, default=3, help="measurements per figure (the median is shown)")
    p.add_argument("--clients", default="1,4", help="concurrent session clients, comma-separated")
    p.add_argument("--messages", type=int, default=20, help="small messages per host")
    p.add_argument("--big", type=int, default=8, help="messages in the RETR throughput maildrop")
    p.add_argument("--big-size", type=int, default=1 << 20, help="octets per big message")
    p.add_argument("--no-loadgen", action="store_true", help="skip the sdps-loadgen runs")
    p.add_argument("--baseline", help="another build tree: its sdpsd runs a second front end on the same "
                                      "configuration and back ends, measured in the same rounds")
    return p.parse_args()


ARGS = parse_args()
bench_pop3.use_build_tree(ARGS.build_dir)

from frontend_harness import FrontEndSite  # noqa: E402
from sdps_harness import SANITIZE, Site, binary, message  # noqa: E402

PASSWORD = "bench password"


# ---------------------------------------------------------------- clients

class Client(bench_pop3.Client):
    """A minimal POP3 client: replies read straight off the socket."""

    RECV = 65536

    def multi(self, command: str) -> int:
        """A multi-line command; returns the octets of its body as sent."""
        self.ok(command)
        total = 0
        while len(self.buf) < 3:
            self.fill()
        if self.buf.startswith(b".\r\n"):      # an empty body
            del self.buf[:3]
            return 0
        while True:
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                total += end + 2
                del self.buf[:end + 5]
                return total
            # Keep the last 4 octets: the terminator may straddle reads.
            keep = min(len(self.buf), 4)
            total += len(self.buf) - keep
            del self.buf[:len(self.buf) - keep]
            self.fill(1 << 20)

    def close(self) -> None:
        self.sock.close()


IN_USE = {"count": 0}   # logins refused [IN-USE] right after the previous session's QUIT


def one_session(port: int, user: str) -> None:
    """One whole session; a login refused [IN-USE] (the previous session
    of this host had quit but not yet let go of its lock) is counted and
    retried, as a client would."""
    while True:
        c = Client(port)
        c.ok(f"USER {user}")
        c.sock.sendall(f"PASS {PASSWORD}\r\n".encode())
        reply = c.line()
        if reply.startswith(b"-ERR [IN-USE]"):
            IN_USE["count"] += 1
            c.close()
            time.sleep(0.001)
            continue
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"PASS: {reply!r}")
        break
    c.ok("STAT")
    c.multi("UIDL")
    c.ok("QUIT")
    c.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sessions_per_second(port: int, clients: int, seconds: float, pids: dict | None = None,
                        cpu: dict | None = None) -> float:
    """Sessions per second; adds each of `pids`' CPU seconds to `cpu` (and
    the session count under "sessions")."""
    before = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    counts = [0] * clients
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def loop(i: int) -> None:
        try:
            while time.monotonic() < deadline:
                one_session(port, f"h{i}")
                counts[i] += 1
        except BaseException as e:  # reported after the run
            errors.append(e)

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a session on port {port} failed: {errors[0]!r}")
    rate = sum(counts) / (time.monotonic() - started)
    if cpu is not None:
        cpu["in use"] = cpu.get("in use", 0) + IN_USE["count"]
        IN_USE["count"] = 0
        for name, pid in (pids or {}).items():
            cpu[name] = cpu.get(name, 0.0) + cpu_seconds(pid) - before[name]
        cpu["sessions"] = cpu.get("sessions", 0) + sum(counts)
    return rate


def retr_mib_per_second(port: int, count: int, seconds: float) -> float:
    octets = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        c = Client(port)
        c.ok("USER bulk")
        c.ok(f"PASS {PASSWORD}")
        for n in range(1, count + 1):
            octets += c.multi(f"RETR {n}")
        c.ok("QUIT")
        c.close()
    return octets / (time.monotonic() - started) / (1 << 20)


def loadgen(port: int, workload: str, clients: int, seconds: float, users: Path, pids: dict) -> tuple[float, dict]:
    """One sdps-loadgen run: sessions per second, and each of `pids`' CPU
    seconds per session."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cmd = [str(binary("sdps-loadgen")), "--port", str(port), "--workload", workload, "--users", str(users),
           "--clients", str(clients), "--seconds", str(seconds), "--sources", "65000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"sdps-loadgen exited {proc.returncode}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    # As vs_dovecot_loadgen.py counts it: the whole run's CPU (its warm-up
    # included) over the sessions of the measured window, for both alike.
    done = max(result["sessions"], 1)
    return result["rate"], {name: (cpu_seconds(pid) - before[name]) / done for name, pid in pids.items()}


# ---------------------------------------------------------------- the run

def populate(site: Site, hosts: int) -> None:
    punts = ("finchley", "docklands")
    for i in range(hosts):
        site.add_host(f"h{i}", pop3=PASSWORD)
        for m in range(ARGS.messages):
            body = f"message {m} for host h{i}\n" + "x" * 70 + "\n" * 2 + ("a line of text\n" * 100)
            site.deliver(f"fred@h{i}.demon.co.uk", data=message(subject=f"m{m}", body=body, to=f"fred@h{i}"),
                         punt=punts[m % 2])
    site.add_host("bulk", pop3=PASSWORD)
    line = "." + "y" * 70 + "\n"       # every line dot-stuffed on the way out
    body = line * (ARGS.big_size // len(line))
    for m in range(ARGS.big):
        site.deliver("fred@bulk.demon.co.uk", data=message(subject=f"big {m}", body=body, to="fred@bulk"),
                     punt=punts[m % 2])


def main() -> int:
    missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
    if missing:
        print(f"{', '.join(missing)} not found in {binary('').parent}: build first (scripts/demo), "
              f"or pass --build-dir", file=sys.stderr)
        return 2
    if SANITIZE:
        print("warning: SDPS_SANITIZE is set; figures from a sanitizer build mean little", file=sys.stderr)
    clients = [int(c) for c in ARGS.clients.split(",") if c]
    with Site() as site:
        fe = FrontEndSite(site, read_timeout="30s", connect_timeout="5s")
        try:
            print(f"populating: {max(clients)} host(s) x {ARGS.messages} messages, "
                  f"{ARGS.big} x {ARGS.big_size} octets ...", flush=True)
            populate(site, max(clients))
            embedded = fe.start_embedded()
            front = fe.start()
            targets = {"embedded": embedded.port, "front end": front.port}
            print(f"embedded on port {embedded.port}, front end on port {front.port}", flush=True)
            backends = {f"back end {p}": b.pid for p, b in fe.backends.items()}
            processes = {"embedded": {"embedded": embedded.pid},
                         "front end": {"front end": front.pid, **backends}}
            if ARGS.baseline:
                # That tree's sdpsd, with the modules beside it, on the same
                # configuration and back ends.
                sdpsd = Path(ARGS.baseline).resolve() / "bin" / "sdpsd"
                if not sdpsd.exists():
                    raise RuntimeError(f"--baseline: {sdpsd} not found")
                baseline = fe.start(program=sdpsd)
                targets["baseline"] = baseline.port
                processes["baseline"] = {"front end": baseline.pid, **backends}
                print(f"baseline front end ({ARGS.baseline}) on port {baseline.port}", flush=True)
            cpu = {name: {} for name in targets}
            loadgen_rows = []
            for port in targets.values():        # warm up: caches, first logins
                one_session(port, "h0")
            rows = []
            for n in clients:
                runs = {name: [] for name in targets}
                for _ in range(ARGS.rounds):
                    for name, port in targets.items():
                        runs[name].append(sessions_per_second(port, n, ARGS.seconds, processes[name], cpu[name]))
                rows.append((f"sessions/s, {n} client{'s' if n > 1 else ''}",
                             {name: statistics.median(r) for name, r in runs.items()}))
            runs = {name: [] for name in targets}
            for _ in range(ARGS.rounds):
                for name, port in targets.items():
                    runs[name].append(retr_mib_per_second(port, ARGS.big, ARGS.seconds))
            rows.append(("RETR MiB/s, 1 client", {name: statistics.median(r) for name, r in runs.items()}))
            if not ARGS.no_loadgen and binary("sdps-loadgen").exists():
                users = site.root / "loadgen-users"
                users.write_text("".join(f"h{i} {PASSWORD}\n" for i in range(max(clients))))
                for workload in ("login", "full"):
                    for n in clients:
                        rates = {name: [] for name in targets}
                        costs = {name: [] for name in targets}
                        for _ in range(ARGS.rounds):
                            for name, port in targets.items():
                                rate, cost = loadgen(port, workload, n, ARGS.seconds, users, processes[name])
                                rates[name].append(rate)
                                costs[name].append(cost)
                        loadgen_rows.append((f"{workload}, {n} client{'s' if n > 1 else ''}",
                                             {name: statistics.median(rates[name]) for name in targets},
                                             {name: {proc: statistics.median(c[proc] for c in costs[name])
                                                     for proc in costs[name][0]} for name in targets}))
        finally:
            for server in list(fe.paused):
                fe.cont(server)

    print()
    print(f"sdps: front end over 2 back ends vs the embedded default, same mail, one machine "
          f"({os.cpu_count()} CPUs); medians of {ARGS.rounds} x {ARGS.seconds:g}s")
    base = "baseline" in cpu
    print(f"{'':28}{'embedded':>12}{'front end':>12}{'ratio':>9}" + (f"{'baseline':>12}{'ratio':>9}" if base else ""))
    for label, r in rows:
        a, b = r["embedded"], r["front end"]
        print(f"{label:28}{a:12.1f}{b:12.1f}{b / a if a else float('nan'):9.2f}" +
              (f"{r['baseline']:12.1f}{r['baseline'] / a if a else float('nan'):9.2f}" if base else ""))
    print("(ratio = front end / embedded; on one machine the front end shares the CPUs with its back ends)")
    print()
    print("CPU time per session, in the sessions/s runs (microseconds):")
    per = {name: {proc: 1e6 * secs / cpu[name]["sessions"] for proc, secs in cpu[name].items()
                  if proc not in ("sessions", "in use")} for name in cpu}
    for name in per:
        print("  " + ("baseline: " if name == "baseline" else "") +
              ", ".join(f"{proc} {us:.0f}" for proc, us in per[name].items()))
    emb, front_cpu = per["embedded"]["embedded"], per["front end"]["front end"]
    total = sum(per["front end"].values())
    print(f"front-end machine capacity vs an embedded one (embedded CPU / front-end CPU per session): "
          f"{emb / front_cpu:.2f}")
    print(f"all three processes together vs the embedded one: {emb / total:.2f}")
    if base:
        print(f"baseline front end ({ARGS.baseline}): {per['baseline']['front end']:.0f} us per session, "
              f"capacity {emb / per['baseline']['front end']:.2f}")
    if loadgen_rows:
        print()
        print("sdps-loadgen (one C++ thread for every client), sessions/s and server CPU per session (microseconds):")
        print(f"{'':22}{'embedded':>10}{'front end':>11}{'ratio':>7}   {'CPU: embedded':>14}{'front end':>11}"
              f"{'ratio':>7}{'+ back ends':>13}")
        for label, rate, cost in loadgen_rows:
            emb_cpu = 1e6 * cost["embedded"]["embedded"]
            fe_cpu = 1e6 * cost["front end"]["front end"]
            all_cpu = 1e6 * sum(cost["front end"].values())
            print(f"{label:22}{rate['embedded']:10.1f}{rate['front end']:11.1f}"
                  f"{rate['front end'] / rate['embedded']:7.2f}   {emb_cpu:14.0f}{fe_cpu:11.0f}"
                  f"{fe_cpu / emb_cpu:7.2f}{all_cpu:13.0f}")
            if base:
                b_cpu = 1e6 * cost["baseline"]["front end"]
                print(f"{'  baseline':22}{'':10}{rate['baseline']:11.1f}{rate['baseline'] / rate['embedded']:7.2f}"
                      f"   {'':14}{b_cpu:11.0f}{b_cpu / emb_cpu:7.2f}{1e6 * sum(cost['baseline'].values()):13.0f}")
        print("(CPU ratio = front end / embedded: its inverse is a front-end machine's capacity; "
              "'+ back ends' adds both back ends' CPU)")
    for name in cpu:
        if cpu[name].get("in use"):
            print(f"note: {name}: {cpu[name]['in use']} login(s) refused [IN-USE] right after the host's previous "
                  f"QUIT, retried (not counted as sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
