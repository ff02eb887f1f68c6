#!/usr/bin/env python3
"""sdps against a tuned Dovecot 2.3, driven by the C++ load generator
(bench/loadgen/sdps_loadgen.cpp, built as `sdps-loadgen`), in one run.

    bench/vs_dovecot_loadgen.py [--build-dir DIR] [--quick] [...]

What it does (details in bench/README.md):

 1. finds (or builds, in build-bench/) a release sdpsd with sdps-loadgen,
    checks that Dovecot (dovecot-pop3d, `scripts/install-deps --bench`) is
    installed and that it runs as root;
 2. in a temporary folder, stores the same messages in sdps's spool and in
    a Dovecot maildir per user, and writes both configs: sdps with
    config/sdps.yaml's chain, Dovecot in its high-performance tuning
    (login and pop3 processes reused, auth_cache on);
 3. runs each workload against each server in turn, for several rounds:
      full     sessions/s and latency of whole sessions (USER, PASS, STAT,
               UIDL, LIST, RETR of 50 messages of ~4 KiB, QUIT), 1, 8 and
               64 clients;
      login    login + STAT sessions/s, 8 clients: sdps at password_cost
               `min` and at `interactive` (Argon2id, 64 MiB), Dovecot with
               {PLAIN} and with the same Argon2id hashes and its auth_cache;
      retr     RETR of one 20 MiB message in a loop, MB/s;
      bigdrop  login + STAT + UIDL of a 20,000- and a 100,000-message
               maildrop, median of runs;
      idle     N logged-in sessions (users spread over 100 hosts), held:
               memory and descriptors per session, read from /proc;
      TLS      with an ECDSA P-256 and then an RSA-2048 certificate (the
               same chain for both servers, made for the run with
               openssl): full sessions over implicit TLS at 1, 8 and 64
               clients, new and resumed handshakes/s, server CPU per
               session and per handshake against plaintext, and `openssl
               speed`'s per-core rates for reference;
 4. prints every figure with its ratio, the CPU other processes used
    meanwhile, and stops both servers and removes the temp folder whatever
    happens (also on SIGINT/SIGTERM).

It never asserts a timing. Exit 0: it ran; 1: something broke (a server
would not start, a size did not verify; the reason is printed); 2: bad
options; 130/143: interrupted, after cleaning up.

Python 3 standard library only; the hot path is the load generator.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_dovecot as vd  # noqa: E402  (the servers' set-up and /proc helpers)
from vs_dovecot import BenchError, log  # noqa: E402

SOURCE_DIR = vd.SOURCE_DIR
DOMAIN, SENDER = vd.DOMAIN, vd.SENDER
NCPU = os.cpu_count() or 1


# ------------------------------------------------------------ /proc

def descriptors(root: int) -> int:
    """Open file descriptors over the server's process tree."""
    total = 0
    for pid in vd.process_tree(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def snapshot(root: int) -> dict:
    m = vd.memory(root)
    m["fds"] = descriptors(root)
    return m


# ------------------------------------------------------------ the servers

class Sdps(vd.Sdps):
    """sdpsd with config/sdps.yaml's chain; password_cost chosen per start."""

    def __init__(self, build: Path, root: Path, max_sessions: int):
        super().__init__(build, root, max_sessions)
        self.max_sessions = max_sessions
        self.cost = "min"
        self.tls_pair: tuple[Path, Path] | None = None    # (chain, key): TLS rounds
        self.write_config("min")

    def use_tls(self, pair: tuple[Path, Path] | None) -> None:
        """From the next start: a `tls:` section with this chain and key and
        an implicit-TLS listener beside the plain one (STLS offered there);
        None: plaintext only."""
        self.tls_pair = pair
        self.extra_args = ["--listen-tls", "127.0.0.1:0"] if pair else []
        self.write_config(self.cost)

    def write_config(self, cost: str) -> None:
        self.cost = cost
        tls = (f"tls: {{certificate: {self.tls_pair[0]}, key: {self.tls_pair[1]}}}\n" if self.tls_pair else "")
        self.config.write_text(
            "# written by bench/vs_dovecot_loadgen.py: the embedded default (config/sdps.yaml)\n"
            "listen: [127.0.0.1:0]\n"
            f"customer_domain: {DOMAIN}\n"
            "idle_timeout: 2h\n"
            f"password_cost: {cost}\n"
            f"max_sessions: {self.max_sessions + 1000}\n"
            "hosts: ../var/hosts\n"
            + tls +
            "punts:\n"
            "  finchley: ../var/spool/finchley\n"
            "  docklands: ../var/spool/docklands\n\n" + vd.shipped_modules_section())

    def set_password(self, host: str, password: str, cost: str) -> str:
        """Sets the host's POP3 password at `cost`; returns the stored hash
        (libsodium's crypto_pwhash_str format)."""
        keep = self.cost
        self.write_config(cost)
        try:
            self.tool("host", "passwd", host, "--pop3", data=password.encode() + b"\n")
        finally:
            self.write_config(keep)
        # modules/auth/README.md: NAME DIALUP-PREFIXES DIALUP-HASH POP3-HASH
        for line in (self.root / "var" / "hosts").read_text().splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[0] == host and fields[3].startswith("$argon2id$"):
                return fields[3]
        raise BenchError(f"cannot find {host}'s hash in the host database")

    def start(self) -> None:
        super().start()
        set_autogroup_nice(self.pid)

    def restart(self, cost: str) -> None:
        self.stop()
        self.write_config(cost)
        self.start()

    def problems(self) -> list[str]:
        """Warnings and errors in sdpsd's logs, but the expected ones: the
        cheap cost, and the two costs the host database holds on purpose."""
        return [line for line in super().problems() if "hashes have 2 different costs" not in line]


DOVECOT_CONF = (
    "# written by bench/vs_dovecot_loadgen.py: Dovecot's POP3 server in its\n"
    "# high-performance tuning, as a throwaway instance in a temp folder.\n"
    + vd.DOVECOT_CONF_HEAD
    + """\
# room for every session process in the log, stats, anvil and auth services
default_client_limit = {client_limit}
service auth {{
  client_limit = {auth_clients}
}}
# high-performance: successful (and failed) logins are cached
auth_cache_size = 64M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour
# a cache hit still verifies the password against the cached hash: in
# auth-worker processes (on every core) rather than the one auth process
auth_cache_verify_password_with_worker = yes
""" + vd.DOVECOT_CONF_USERS + """
# high-performance login: login processes serve many connections
""" + vd.DOVECOT_CONF_LOGIN + """\
  service_count = 0
  process_min_avail = {ncpu}
  process_limit = {login_processes}
  client_limit = {client_limit}
}}
# pop3 processes reused (service_count = 0) and serving several sessions
# each (client_limit); allowed because every user has the same UID
service pop3 {{
  service_count = 0
  process_min_avail = {ncpu}
  client_limit = {pop3_clients}
  process_limit = {pop3_processes}
}}
{extra}""")


class Dovecot(vd.Dovecot):
    def __init__(self, root: Path, *, max_sessions: int, pop3_clients: int):
        super().__init__(root, tuning="performance", max_sessions=max_sessions)
        self.max_sessions, self.pop3_clients = max_sessions, pop3_clients
        self.passwd_lines: list[str] = []
        self.extra: list[str] = []
        self.tls_pair: tuple[Path, Path] | None = None    # (chain, key): TLS rounds
        self.tls_port = 0

    def use_tls(self, pair: tuple[Path, Path] | None) -> None:
        """From the next start: `ssl = yes` with this chain and key, and a
        pop3s listener (implicit TLS) beside the plain one (STLS offered
        there); None: `ssl = no`, as in the plaintext rounds."""
        self.tls_pair = pair

    def add_user(self, user: str, password: str, *, scheme_hash: str | None = None,
                 maildir: bool = True) -> Path:
        secret = scheme_hash if scheme_hash else "{PLAIN}" + password
        self.passwd_lines.append(f"{user}:{secret}::::{self.root}/mail/{user}::\n")
        path = self.root / "mail" / user
        if maildir:
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True)
        self.users.append(user)
        return path

    def store_many(self, user: str, data_lf: bytes, count: int) -> None:
        """`count` copies of a message (LF line ends, Return-Path included)."""
        cur = self.root / "mail" / user / "cur"
        virtual = len(data_lf) + data_lf.count(b"\n")
        for _ in range(count):
            self.msg_serial += 1
            name = f"{1790000000 + self.msg_serial}.M{self.msg_serial}P1.sdpsbench,S={len(data_lf)},W={virtual}:2,"
            (cur / name).write_bytes(data_lf)

    def start(self) -> None:
        (self.root / "passwd").write_text("".join(self.passwd_lines))
        self.port = vd.free_port()
        pop3_processes = self.max_sessions // max(1, self.pop3_clients) + 100
        login_processes = 64
        conf = DOVECOT_CONF.format(
            root=self.root, uid=self.uid, gid=self.gid, port=self.port, ncpu=NCPU,
            pop3_clients=self.pop3_clients, pop3_processes=pop3_processes, login_processes=login_processes,
            auth_clients=pop3_processes + login_processes + 100, client_limit=self.max_sessions + 1000,
            extra="".join(f"{line}\n" for line in self.extra))
        self.tls_port = 0
        if self.tls_pair:
            # Dovecot's TLS defaults otherwise (TLS 1.2 and 1.3, its cipher
            # list, session tickets as OpenSSL makes them)
            self.tls_port = vd.free_port()
            conf = replace_once(conf, "ssl = no\n", f"ssl = yes\nssl_cert = <{self.tls_pair[0]}\n"
                                f"ssl_key = <{self.tls_pair[1]}\n")
            conf = replace_once(conf, "  inet_listener pop3s {\n    port = 0\n  }\n",
                                f"  inet_listener pop3s {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n"
                                "    ssl = yes\n  }\n")
        self.conf.write_text(conf)
        os.chown(self.root / "mail", self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(self.root / "mail"):
            st = os.stat(dirpath)
            if st.st_uid == self.uid:
                continue
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)
        self.launch()
        set_autogroup_nice(self.pid)

    def restart(self, cost: str = "") -> None:
        self.stop()
        self.start()


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise BenchError(f"the Dovecot config template changed: {old!r} is not there once")
    return text.replace(old, new)


# ------------------------------------------------------------ the load generator

class Bound:
    """sdps-bound (bench/bound/sdps_bound.cpp) on sdps's spool: the least a
    server must do per session on it, measured as the two servers are (full
    sessions only). Its figures are the limit sdpsd can approach on this
    machine, as an in-memory responder is the limit for any server."""

    def __init__(self, binary: Path, sdps_root: Path):
        self.binary = binary
        self.punts = [sdps_root / "var" / "spool" / p for p in ("finchley", "docklands")]
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        self.port = vd.free_port()
        cmd = [str(self.binary), "--port", str(self.port)]
        for punt in self.punts:
            cmd += ["--punt", str(punt)]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + vd.TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as c:
                    if c.recv(64).startswith(b"+OK"):
                        set_autogroup_nice(self.process.pid)
                        return
            except OSError:
                time.sleep(0.02)
        raise BenchError(f"sdps-bound did not start on port {self.port}")

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def problems(self) -> list[str]:
        return []


class Loadgen:
    def __init__(self, binary: Path, tmp: Path, one_address: bool):
        self.binary, self.tmp = binary, tmp
        self.runs: list[dict] = []
        # each client (each idle session) its own loopback address, as
        # customers have: per-address limits then act as in production
        self.sources = [] if one_address else ["--sources", "65000"]

    def users_file(self, name: str, users: list[tuple[str, str]]) -> Path:
        path = self.tmp / f"users.{name}"
        if not path.exists():
            path.write_text("".join(f"{u} {p}\n" for u, p in users))
        return path

    def run(self, server, label: str, workload: str, users: Path, *args: str,
            tolerate_failures: bool = False, port: int | None = None) -> dict:
        """Runs one workload against `server` (at `port`, by default its
        plain one); returns the RESULT object with the server's CPU time and
        the machine's other load added."""
        cmd = [str(self.binary), "--port", str(port or server.port), "--workload", workload, "--users", str(users),
               *self.sources, *args]
        other = vd.OtherLoad({"s": server})
        cpu0 = vd.cpu_seconds(server.pid)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        time.sleep(0.05)
        result = self._result(proc.stdout, cmd, proc.returncode, proc.stderr)
        result["server_cpu_s"] = vd.cpu_seconds(server.pid) - cpu0
        result["other_cpus"] = other.cpus()
        result["label"] = label
        result["exit"] = proc.returncode
        self.runs.append(result)
        human = [line[2:] for line in proc.stdout.splitlines() if line.startswith("# ")]
        log(f"  {label}: " + "; ".join(human) + f" [server CPU {result['server_cpu_s']:.2f} s, "
            f"other load {result['other_cpus']:.2f} CPUs]")
        if proc.returncode == 1 or (proc.returncode != 0 and not tolerate_failures):
            raise BenchError(f"{label}: sdps-loadgen exited {proc.returncode}: {result.get('errors')}")
        return result

    @staticmethod
    def _result(stdout: str, cmd: list[str], rc: int, stderr: str) -> dict:
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise BenchError(f"sdps-loadgen gave no RESULT (exit {rc}): {' '.join(cmd)}\n{stdout[-2000:]}{stderr[-2000:]}")

    def idle(self, server, label: str, users: Path, steps: list[int], clients: int) -> dict:
        """Holds sessions in steps; measures the server's tree at 0 and at
        each step (memory, descriptors)."""
        time.sleep(0.5)
        marks = [(0, 0, snapshot(server.pid))]
        cmd = [str(self.binary), "--port", str(server.port), "--workload", "idle", "--users", str(users),
               "--steps", ",".join(map(str, steps)), "--clients", str(clients), "--timeout", "30", "--give-up", "100", *self.sources]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            for _ in steps:
                line = ""
                while not line.startswith("HELD "):
                    line = proc.stdout.readline()
                    if not line:
                        raise BenchError(f"{label}: sdps-loadgen stopped before holding its sessions")
                held = json.loads(line[5:])
                time.sleep(1.0)                      # let the server settle
                marks.append((held["target"], held["held"], snapshot(server.pid)))
                log(f"  {label}: {held['held']} of {held['target']} sessions held ({held['failed']} failed, "
                    f"{held['dropped']} dropped{'; gave up opening more' if held['gave_up'] else ''}): RSS {marks[-1][2]['rss']} KiB, "
                    f"PSS {marks[-1][2]['pss']} KiB, {marks[-1][2]['fds']} fds, {marks[-1][2]['procs']} processes")
                proc.stdin.write("\n")
                proc.stdin.flush()
            proc.stdin.close()
            out = proc.stdout.read()
            proc.wait(300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        result = self._result(out, cmd, proc.returncode, "")
        if proc.returncode == 1:
            raise BenchError(f"{label}: idle sessions: verification failed: {result.get('errors')}")
        result["marks"] = [{"target": t, "held": h, **m} for t, h, m in marks]
        base, half, full = marks[0], marks[-2] if len(marks) > 2 else marks[0], marks[-1]
        if full[1] - half[1] < max(1, full[1] // 10):
            # the last step added (almost) nothing, e.g. the server ran out
            # of descriptors before half: the whole range is all there is
            half = base
            result["per_session_range"] = f"sessions 1..{full[1]} (none held beyond {full[1]})"
        else:
            result["per_session_range"] = f"sessions {half[1] + 1}..{full[1]}"
        span = full[1] - half[1]
        result["rss_per_session"] = 1024 * (full[2]["rss"] - half[2]["rss"]) / span if span > 0 else 0
        result["pss_per_session"] = 1024 * (full[2]["pss"] - half[2]["pss"]) / span if span > 0 else 0
        result["fds_per_session"] = (full[2]["fds"] - half[2]["fds"]) / span if span > 0 else 0
        result["rss_per_session_all"] = 1024 * (full[2]["rss"] - base[2]["rss"]) / full[1] if full[1] else 0
        result["fds_per_session_all"] = (full[2]["fds"] - base[2]["fds"]) / full[1] if full[1] else 0
        result["label"] = label
        self.runs.append(result)
        return result


# ------------------------------------------------------------ messages and maildrops

def message(rng: random.Random, index: int, size: int, to: str) -> bytes:
    return vd.make_message(rng, index, size, to)


def clone_spool_messages(punt_dir: Path, host: str, count: int, start_us: int) -> None:
    """Adds `count` copies of the host's one delivered message in this punt
    folder, under new UIDLs, in the format of docs/spool.md (UIDL: 17 digits
    of microseconds, '.', 16 hex digits; then ',s=SIZE,u=USER'), the way
    `sdps deliver` names them. Faster than one `sdps deliver` per message."""
    folder = punt_dir / host
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise BenchError(f"{folder}: expected one delivered message, found {len(files)}")
    template = files[0]
    data = template.read_bytes()
    suffix = template.name[template.name.index(","):]
    for i in range(count):
        name = f"{start_us + i:017d}.{secrets.token_hex(8)}{suffix}"
        path = folder / name
        with open(path, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(data)


# ------------------------------------------------------------ TLS

CERT_KINDS = {
    # name: (what the table calls it, `openssl req -newkey` argument and options)
    "ecdsa": ("ECDSA P-256", ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
    "rsa": ("RSA-2048", ["rsa:2048"]),
}


def make_chain(folder: Path, kind: str) -> tuple[Path, Path, Path]:
    """A root CA, an intermediate CA and a server certificate for
    localhost and 127.0.0.1, every key of `kind`, made with openssl for this
    run. Returns (chain: the server certificate then the intermediate, as a
    production site serves them; its key; the root, for clients that
    verify)."""
    folder.mkdir(parents=True)
    newkey = CERT_KINDS[kind][1]

    def openssl(*args: str) -> None:
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=folder)
        if r.returncode != 0:
            raise BenchError(f"openssl {args[0]} failed: {r.stderr.strip()}")

    def extensions(name: str, text: str) -> str:
        (folder / name).write_text(text)
        return name

    openssl("req", "-x509", "-newkey", *newkey, "-nodes", "-days", "2", "-subj", "/CN=sdps bench root",
            "-keyout", "root.key", "-out", "root.pem")
    openssl("req", "-newkey", *newkey, "-nodes", "-subj", "/CN=sdps bench intermediate",
            "-keyout", "intermediate.key", "-out", "intermediate.csr")
    openssl("x509", "-req", "-in", "intermediate.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
            "-days", "2", "-out", "intermediate.pem", "-extfile",
            extensions("intermediate.cnf", "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                                           "keyUsage=critical,keyCertSign,cRLSign\n"))
    openssl("req", "-newkey", *newkey, "-nodes", "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "intermediate.pem", "-CAkey", "intermediate.key",
            "-CAcreateserial", "-days", "2", "-out", "leaf.pem", "-extfile",
            extensions("leaf.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                   "extendedKeyUsage=serverAuth\n"))
    chain = folder / "chain.pem"
    chain.write_text((folder / "leaf.pem").read_text() + (folder / "intermediate.pem").read_text())
    return chain, folder / "key.pem", folder / "root.pem"


def openssl_speed(seconds: float) -> dict[str, float]:
    """`openssl speed` on one core: ECDSA P-256 signs/s, X25519 key
    agreements/s and RSA-2048 signs/s (empty if it cannot be run)."""
    r = subprocess.run(["openssl", "speed", "-seconds", str(max(1, int(seconds))), "-mr", "ecdsap256", "ecdhx25519",
                        "rsa2048"], capture_output=True, text=True, timeout=300)
    out = {}
    for line in r.stdout.splitlines():
        fields = line.split(":")
        try:
            if fields[0] == "+F2" and fields[2] == "2048":
                out["rsa2048_sign"] = float(fields[3])
            elif fields[0] == "+F4" and fields[2] == "256":
                out["p256_sign"] = float(fields[3])
            elif fields[0] == "+F5" and fields[2] == "253":
                out["x25519"] = float(fields[3])
        except (IndexError, ValueError):
            continue
    return out


def raise_nofile_hard_limit(wanted: int) -> str:
    """Raises this process's open-file hard limit (inherited by both
    servers and the load generator) to `wanted` where root may; the soft
    limit stays, so a server that does not raise its own stops where it
    would in production. Returns the limits, for the report."""
    soft, hard = vd.resource.getrlimit(vd.resource.RLIMIT_NOFILE)
    note = ""
    if hard != vd.resource.RLIM_INFINITY and hard < wanted:
        try:
            vd.resource.setrlimit(vd.resource.RLIMIT_NOFILE, (soft, wanted))
            note = f" (hard limit raised from {hard})"
            hard = wanted
        except (ValueError, OSError):
            note = f" (could not raise the hard limit to {wanted})"
    return f"soft {soft}, hard {hard}{note}"


AUTOGROUP_NICE: int | None = None


def set_autogroup_nice(pid: int | str) -> None:
    """Gives the autogroup (the session) of `pid` the nice value of
    --autogroup-nice. With autogroup scheduling (kernel.sched_autogroup_enabled),
    CPU time is shared between sessions first: other people's `nice` builds
    in their own sessions still take an equal share each, and only a
    session's own nice value changes that."""
    if AUTOGROUP_NICE is None:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{AUTOGROUP_NICE}\n")
    except OSError as e:
        raise BenchError(f"cannot set the autogroup nice value of {pid}: {e} (needs root; "
                         "kernel.sched_autogroup_enabled=1)") from None


def default_tmp_dir() -> str | None:
    """/dev/shm when it has room: 250,000 small files are set up and
    removed in seconds there, and no disk shared with other work adds its
    noise to the timings (fsync is free there, for both servers)."""
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= 4 << 30 and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    except OSError:
        pass
    return None


def file_system(path: Path) -> str:
    """The type of the file system holding `path`, from /proc/mounts."""
    best, kind = "", "unknown file system"
    real = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and (real == fields[1] or real.startswith(fields[1].rstrip("/") + "/")):
                if len(fields[1]) >= len(best):
                    best, kind = fields[1], f"{fields[2]} at {fields[1]}, {fields[3]}"
    return kind


# ------------------------------------------------------------ report

def fmt(value: float, unit: str) -> str:
    return vd.fmt(value, unit)


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="sdps release build (default: build-bench/, then build/ if it is a "
                    "release build; else builds build-bench/)")
    ap.add_argument("--clients", default="1,8,64", help="client counts for full sessions (1,8,64)")
    ap.add_argument("--login-clients", type=int, default=8, help="clients for login + STAT (8)")
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds of each run (4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, servers alternating; medians shown (3)")
    ap.add_argument("--messages", type=int, default=50, help="messages per full-session maildrop (50)")
    ap.add_argument("--message-size", type=int, default=4096, help="their mean size, octets (4096)")
    ap.add_argument("--big-size", type=int, default=20 << 20, help="the RETR message, octets (20 MiB)")
    ap.add_argument("--bigdrops", default="20000,100000", help="big maildrop sizes (20000,100000)")
    ap.add_argument("--bigdrop-runs", type=int, default=5, help="measured logins per big maildrop and round (5)")
    ap.add_argument("--idle-sessions", type=int, default=10000, help="idle sessions held (10000)")
    ap.add_argument("--idle-hosts", type=int, default=100, help="hosts the idle sessions' users spread over (100)")
    ap.add_argument("--dovecot-pop3-clients", type=int, default=100,
                    help="Dovecot: sessions per pop3 process (service pop3 client_limit, 100)")
    ap.add_argument("--one-address", action="store_true",
                    help="every client connects from 127.0.0.1 (default: each its own 127.1.x.y address); "
                    "sdps's per-address limits then throttle the runs")
    ap.add_argument("--dovecot-setting", action="append", default=[], metavar="LINE",
                    help="a line added to Dovecot's config (repeatable), e.g. 'maildir_very_dirty_syncs = yes'")
    ap.add_argument("--no-auth", action="store_true", help="skip the Argon2id (password_cost: interactive) runs")
    ap.add_argument("--no-tls", action="store_true", help="skip the TLS rounds")
    ap.add_argument("--certs", default="ecdsa,rsa", help="certificate kinds for the TLS rounds (ecdsa,rsa)")
    ap.add_argument("--handshake-clients", type=int, default=8,
                    help="clients for the handshake runs (greeting + QUIT over TLS) (8)")
    ap.add_argument("--seed", type=int, default=1939)
    ap.add_argument("--tmp-dir", help="where the spools, maildirs and logs go (default: /dev/shm, a tmpfs, "
                    "when it has 4 GiB free; else the system's temp folder)")
    ap.add_argument("--nofile", type=int, default=65536,
                    help="raise the open-file hard limit to this (as root; the soft limit is left as it is: "
                    "the servers raise it, or not, themselves) (65536)")
    ap.add_argument("--autogroup-nice", type=int, choices=range(-20, 20), metavar="N",
                    help="give the servers' and the load generator's sessions this nice value (e.g. -10): on a "
                    "machine shared with `nice` builds, which autogroup scheduling otherwise treats as equals")
    ap.add_argument("--json", help="also write every run's raw result to this file")
    ap.add_argument("--quick", action="store_true", help="a smoke run of under a minute; figures meaningless")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (configs, logs)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.messages = 1.0, 1, 10
        args.clients, args.big_size, args.bigdrops = "1,8", 2 << 20, "2000"
        args.bigdrop_runs, args.idle_sessions, args.idle_hosts = 3, 200, 10
        args.handshake_clients = min(args.handshake_clients, 8)
    try:
        clients = [int(x) for x in args.clients.split(",") if x]
        bigdrops = [int(x) for x in args.bigdrops.split(",") if x]
    except ValueError:
        ap.error("--clients and --bigdrops take numbers separated by commas")
    certs = [] if args.no_tls else [c for c in args.certs.split(",") if c]
    if any(c not in CERT_KINDS for c in certs):
        ap.error(f"--certs takes {', '.join(CERT_KINDS)}")
    if args.handshake_clients < 1:
        ap.error("counts must be positive")
    if (not clients or min(clients) < 1 or min(bigdrops or [1]) < 1 or args.messages < 1 or args.rounds < 1
            or args.idle_sessions < 2 or args.idle_hosts < 1 or args.login_clients < 1):
        ap.error("counts must be positive")
    nofile = raise_nofile_hard_limit(args.nofile)
    global AUTOGROUP_NICE
    AUTOGROUP_NICE = args.autogroup_nice
    if args.idle_sessions + 64 > vd.resource.getrlimit(vd.resource.RLIMIT_NOFILE)[1]:
        ap.error(f"--idle-sessions {args.idle_sessions} needs more descriptors than the hard limit "
                 f"({vd.resource.getrlimit(vd.resource.RLIMIT_NOFILE)[1]}) allows the load generator")
    nfull = max(max(clients), args.login_clients, args.handshake_clients if certs else 1)

    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="sdps-loadgen-bench-", dir=args.tmp_dir or default_tmp_dir()))
    tmp_fs = file_system(tmp)
    log(f"working in {tmp} ({tmp_fs})")
    os.chmod(tmp, 0o755)                 # Dovecot's unprivileged processes walk into it
    sdps = dovecot = bound = None
    try:
        build = vd.find_build(args.build_dir)
        loadgen_bin = build / "bin" / "sdps-loadgen"
        bound_bin = build / "bin" / "sdps-bound"
        for tool in (loadgen_bin, bound_bin):
            if not tool.is_file():
                log(f"building {tool.name} in {build}")
                if subprocess.run(["cmake", "--build", str(build), "--target", tool.name]).returncode != 0:
                    raise BenchError(f"building {tool.name} failed")
        log(f"sdps build: {build}")
        set_autogroup_nice("self")           # the load generator runs in this session
        dovecot = Dovecot(tmp / "dovecot", max_sessions=args.idle_sessions, pop3_clients=args.dovecot_pop3_clients)
        dovecot.extra = list(args.dovecot_setting)
        sdps = Sdps(build, tmp / "sdps", args.idle_sessions)
        version = subprocess.run([dovecot.binary, "--version"], capture_output=True, text=True).stdout.strip()
        gen = Loadgen(loadgen_bin, tmp, args.one_address)

        # -- the same mail in both stores
        rng = random.Random(args.seed)
        t_setup = time.monotonic()
        full_users = [(f"f{i:03d}", f"pw-f{i:03d}") for i in range(1, nfull + 1)]
        auth_users = [(f"a{i:03d}", f"pw-a{i:03d}") for i in range(1, args.login_clients + 1)]
        log(f"storing {args.messages} messages of ~{args.message_size} octets for each of "
            f"{len(full_users) + len(auth_users)} hosts, one of {args.big_size} octets, "
            f"maildrops of {bigdrops} messages, {args.idle_sessions} idle users over {args.idle_hosts} hosts")
        for user, password in full_users:
            sdps.add_host(user, password)
            dovecot.add_user(user, password)
        hashes = {}
        if not args.no_auth:
            for user, password in auth_users:
                sdps.tool("host", "add", user)
                hashes[user] = sdps.set_password(user, password, "interactive")
                # the very hash sdps stores, so both check the same Argon2id cost
                dovecot.add_user(user, password, scheme_hash="{ARGON2ID}" + hashes[user])
        recipients = [f"fred@{u}.{DOMAIN}" for u, _ in full_users + (auth_users if not args.no_auth else [])]
        for i in range(args.messages):
            size = max(1024, int(rng.gauss(args.message_size, args.message_size / 8)))
            msg = message(rng, i, size, f"fred@{DOMAIN}")
            sdps.deliver(recipients, msg, ("finchley", "docklands")[i % 2])
            for user, _ in full_users + (auth_users if not args.no_auth else []):
                dovecot.store(user, msg)
        sdps.add_host("big", "pw-big")
        dovecot.add_user("big", "pw-big")
        big = message(rng, 900, args.big_size, f"fred@big.{DOMAIN}")
        sdps.deliver([f"fred@big.{DOMAIN}"], big, "finchley")
        dovecot.store("big", big)
        us = int(time.time() * 1e6) - 10 ** 11         # UIDLs older than any delivery now
        for n in bigdrops:
            host = f"d{n}"
            sdps.add_host(host, f"pw-{host}")
            dovecot.add_user(host, f"pw-{host}")
            small = message(rng, 1000 + n, 1500, f"fred@{host}.{DOMAIN}")
            for punt in ("finchley", "docklands"):
                sdps.deliver([f"fred@{host}.{DOMAIN}"], small, punt)
            clone_spool_messages(sdps.root / "var" / "spool" / "finchley", host, n // 2 - 1, us)
            clone_spool_messages(sdps.root / "var" / "spool" / "docklands", host, n - n // 2 - 1, us + n)
            us += 2 * n
            dovecot.store_many(host, b"Return-Path: <" + SENDER.encode() + b">\n" + small, n)
        idle_hosts = [(f"h{i:03d}", f"pw-h{i:03d}") for i in range(1, args.idle_hosts + 1)]
        for host, password in idle_hosts:
            sdps.add_host(host, password)
        idle_users = []
        for i in range(args.idle_sessions):
            host, password = idle_hosts[i % len(idle_hosts)]
            user = f"u{i:05d}@{host}"
            idle_users.append((user, password))
            dovecot.add_user(user, password, maildir=True)
        log(f"stored in {time.monotonic() - t_setup:.0f} s")

        files = {
            "full": gen.users_file("full", full_users),
            "auth": gen.users_file("auth", auth_users),
            "big": gen.users_file("big", [("big", "pw-big")]),
            "idle": gen.users_file("idle", idle_users),
        }
        for n in bigdrops:
            files[f"d{n}"] = gen.users_file(f"d{n}", [(f"d{n}", f"pw-d{n}")])

        # -- both up; every maildrop opened and checked once (Dovecot builds
        #    its indexes; the page cache is warm for both)
        sdps.start()
        dovecot.start()
        servers = {"sdps": sdps, "dovecot": dovecot}
        # The limit: full sessions only, on sdps's own spool (host logins
        # need no password check there)
        bound = Bound(bound_bin, sdps.root)
        bound.start()
        full_servers = {**servers, "limit": bound}
        log(f"sdpsd pid {sdps.pid} on 127.0.0.1:{sdps.port}; Dovecot {version} pid {dovecot.pid} "
            f"on 127.0.0.1:{dovecot.port}")
        expected_big = len(vd.returned(big))
        for name, srv in servers.items():
            c = vd.Pop3(srv.port)
            c.login("big", "pw-big")
            if c.list() != {1: expected_big}:
                raise BenchError(f"{name}: the big message's LIST size is not {expected_big}")
            c.quit()
            gen.run(srv, f"{name} check", "full", files["full"], "--clients", str(min(8, nfull)),
                    "--seconds", "0.5", "--warmup", "0", "--expect-messages", str(args.messages))
            if name == "sdps":
                gen.run(bound, "limit check", "full", files["full"], "--clients", str(min(8, nfull)),
                        "--seconds", "0.5", "--warmup", "0", "--expect-messages", str(args.messages))
            for n in bigdrops:
                gen.run(srv, f"{name} check d{n}", "bigdrop", files[f"d{n}"], "--runs", "1",
                        "--expect-messages", str(n), "--timeout", "300")
        # same bytes: the full-session maildrop of f001, message by message
        got = {}
        for name, srv in servers.items():
            got[name] = vd.retrieve_all(srv.port, "f001", "pw-f001")
        if sorted(got["sdps"]) != sorted(got["dovecot"]) or len(got["sdps"]) != args.messages:
            raise BenchError("the two servers do not return the same messages for f001")
        log("both servers hold the same messages")

        gen.runs.clear()
        other_all = vd.OtherLoad(full_servers)
        s = f"{args.seconds:g}"
        results: dict[tuple, list[dict]] = {}

        def add(key: tuple, r: dict) -> None:
            results.setdefault(key, []).append(r)

        for rnd in range(1, args.rounds + 1):
            log(f"round {rnd} of {args.rounds}")
            for n in clients:
                for name, srv in full_servers.items():
                    add((name, "full", n), gen.run(srv, f"{name} full, {n} clients", "full", files["full"],
                                                   "--clients", str(n), "--seconds", s,
                                                   "--expect-messages", str(args.messages)))
            for name, srv in servers.items():
                add((name, "login", "min"), gen.run(srv, f"{name} login+STAT, cheap password", "login",
                                                    files["full"], "--clients", str(args.login_clients),
                                                    "--seconds", s))
            if not args.no_auth:
                # sdps at password_cost: interactive; Dovecot with the same
                # Argon2id hashes and its auth_cache. Warm-up: every user has
                # logged in once before the measured window.
                sdps.restart("interactive")
                for name, srv in servers.items():
                    add((name, "login", "argon2id"), gen.run(
                        srv, f"{name} login+STAT, Argon2id interactive", "login", files["auth"],
                        "--clients", str(args.login_clients), "--seconds", s, "--warmup", "3", "--timeout", "120"))
                sdps.restart("min")
            for name, srv in servers.items():
                add((name, "retr"), gen.run(srv, f"{name} RETR {args.big_size >> 20} MiB", "retr", files["big"],
                                            "--seconds", s, "--warmup", "0.5"))
            for n in bigdrops:
                for name, srv in servers.items():
                    add((name, "bigdrop", n), gen.run(srv, f"{name} maildrop of {n}", "bigdrop", files[f"d{n}"],
                                                      "--runs", str(args.bigdrop_runs), "--expect-messages", str(n),
                                                      "--timeout", "300"))
        other_cpus = other_all.cpus()
        other_runs = [r["other_cpus"] for r in gen.runs]
        bound.stop()

        # -- TLS: both servers with the same chain, one key kind at a time;
        #    full sessions over implicit TLS, then sessions of only the
        #    greeting and QUIT: in plaintext, over a new TLS handshake each,
        #    over a resumed one each (the client offers its last ticket)
        tls: dict[tuple, list[dict]] = {}
        speed: dict[str, float] = {}
        tls_first = len(gen.runs)
        other_tls_cpus = 0.0
        if certs:
            speed = openssl_speed(1 if args.quick else 3)
            other_tls = vd.OtherLoad(servers)
            for kind in certs:
                chain, key, root_ca = make_chain(tmp / "pki" / kind, kind)
                for srv in servers.values():
                    srv.use_tls((chain, key))
                sdps.restart("min")
                dovecot.restart()
                log(f"TLS with the {CERT_KINDS[kind][0]} chain: sdps on 127.0.0.1:{sdps.tls_port}, Dovecot on "
                    f"127.0.0.1:{dovecot.tls_port}")
                for name, srv in servers.items():
                    # every size verified, the chain checked against its root; implicit and STLS
                    for mode, port in (("implicit", srv.tls_port), ("stls", srv.port)):
                        gen.run(srv, f"{name} TLS check ({mode})", "full", files["full"], "--clients",
                                str(min(8, nfull)), "--seconds", "0.5", "--warmup", "0", "--expect-messages",
                                str(args.messages), "--tls", mode, "--ca", str(root_ca), port=port)
                for rnd in range(1, args.rounds + 1):
                    log(f"TLS ({CERT_KINDS[kind][0]}) round {rnd} of {args.rounds}")
                    for n in clients:
                        for name, srv in servers.items():
                            tls.setdefault((kind, name, "full", n), []).append(gen.run(
                                srv, f"{name} full over TLS, {n} clients", "full", files["full"], "--clients", str(n),
                                "--seconds", s, "--expect-messages", str(args.messages), "--tls", "implicit",
                                port=srv.tls_port))
                    for what, extra in (("plain", []), ("new", ["--tls", "implicit", "--resume", "off"]),
                                        ("resumed", ["--tls", "implicit", "--resume", "on"])):
                        for name, srv in servers.items():
                            tls.setdefault((kind, name, what), []).append(gen.run(
                                srv, f"{name} greeting+QUIT, {what}", "handshake", files["full"],
                                "--clients", str(args.handshake_clients), "--seconds", s, *extra,
                                port=srv.tls_port if extra else srv.port))
            for srv in servers.values():
                srv.use_tls(None)
            other_tls_cpus = other_tls.cpus()
        tls_runs = gen.runs[tls_first:]

        # -- idle sessions, on freshly started servers
        idle = {}
        for name, srv in servers.items():
            srv.restart("min")
            idle[name] = gen.idle(srv, f"{name} idle", files["idle"],
                                  [args.idle_sessions // 2, args.idle_sessions], clients=32)
        load_end = os.getloadavg()

        # -- report
        rows = []
        for n in clients:
            rows.append((f"full sessions/s, {n} client{'s' if n > 1 else ''}",
                         med(results[("sdps", "full", n)], "rate"), med(results[("dovecot", "full", n)], "rate"),
                         "/s", "higher"))
        for n in clients:
            for p in ("p50", "p99"):
                rows.append((f"full session latency {p}, {n} client{'s' if n > 1 else ''}",
                             med(results[("sdps", "full", n)], f"{p}_ms"),
                             med(results[("dovecot", "full", n)], f"{p}_ms"), "ms", "lower"))
        for n in clients:
            cpu = {k: med([{"x": 1e6 * r["server_cpu_s"] / max(1, r["sessions"])} for r in results[(k, "full", n)]], "x")
                   for k in servers}
            rows.append((f"server CPU per full session, {n} client{'s' if n > 1 else ''}",
                         cpu["sdps"], cpu["dovecot"], "us", "lower"))
        rows.append((f"login+STAT sessions/s, {args.login_clients} clients, cheap password (sdps Argon2id min, "
                     "Dovecot {PLAIN})", med(results[("sdps", "login", "min")], "rate"),
                     med(results[("dovecot", "login", "min")], "rate"), "/s", "higher"))
        if not args.no_auth:
            rows.append((f"login+STAT sessions/s, {args.login_clients} clients, Argon2id 64 MiB t=2 "
                         "(sdps interactive; Dovecot + auth_cache)", med(results[("sdps", "login", "argon2id")], "rate"),
                         med(results[("dovecot", "login", "argon2id")], "rate"), "/s", "higher"))
        rows.append((f"RETR of one {args.big_size / 2**20:g} MiB message", med(results[("sdps", "retr")], "mb_per_s"),
                     med(results[("dovecot", "retr")], "mb_per_s"), "MB/s", "higher"))
        for n in bigdrops:
            rows.append((f"{n:,}-message maildrop: login + STAT + UIDL",
                         med(results[("sdps", "bigdrop", n)], "total_ms"),
                         med(results[("dovecot", "bigdrop", n)], "total_ms"), "ms", "lower"))
            rows.append((f"  of which login (USER, PASS)", med(results[("sdps", "bigdrop", n)], "login_ms"),
                         med(results[("dovecot", "bigdrop", n)], "login_ms"), "ms", "lower"))
        rows.append((f"idle sessions held (of {args.idle_sessions})", idle["sdps"]["held"], idle["dovecot"]["held"],
                     "", "higher"))
        rows.append(("RSS per idle session (VmRSS sum)", idle["sdps"]["rss_per_session"],
                     idle["dovecot"]["rss_per_session"], "B", "lower"))
        rows.append(("PSS per idle session", idle["sdps"]["pss_per_session"],
                     idle["dovecot"]["pss_per_session"], "B", "lower"))
        rows.append(("descriptors per idle session", idle["sdps"]["fds_per_session"],
                     idle["dovecot"]["fds_per_session"], "", "lower"))

        def cpu_us(runs: list[dict]) -> float:
            """Server CPU per session (µs), the median over the rounds."""
            return med([{"x": 1e6 * r["server_cpu_s"] / max(1, r["sessions"])} for r in runs], "x")

        def handshake_us(kind: str, name: str, what: str) -> float:
            """Server CPU per handshake: a TLS greeting+QUIT session's less a plaintext one's."""
            return cpu_us(tls[(kind, name, what)]) - cpu_us(tls[(kind, name, "plain")])

        hc = args.handshake_clients
        for kind in certs:
            label = CERT_KINDS[kind][0]
            for n in clients:
                rows.append((f"TLS {label}: full sessions/s, {n} client{'s' if n > 1 else ''}",
                             med(tls[(kind, "sdps", "full", n)], "rate"), med(tls[(kind, "dovecot", "full", n)], "rate"),
                             "/s", "higher"))
            for n in clients:
                rows.append((f"TLS {label}: server CPU per full session, {n} client{'s' if n > 1 else ''}",
                             cpu_us(tls[(kind, "sdps", "full", n)]), cpu_us(tls[(kind, "dovecot", "full", n)]),
                             "us", "lower"))
            for what in ("new", "resumed"):
                rows.append((f"TLS {label}: {what} handshakes/s, {hc} clients (greeting + QUIT sessions)",
                             med(tls[(kind, "sdps", what)], "rate"), med(tls[(kind, "dovecot", what)], "rate"),
                             "/s", "higher"))
            for what in ("new", "resumed"):
                rows.append((f"TLS {label}: server CPU per {what} handshake (beyond a plaintext greeting + QUIT)",
                             handshake_us(kind, "sdps", what), handshake_us(kind, "dovecot", what), "us", "lower"))

        print()
        print(f"sdps {sdps.build} (source at {vd.source_revision()}, sdpsd built "
              f"{datetime.datetime.fromtimestamp((sdps.build / 'bin' / 'sdpsd').stat().st_mtime):%Y-%m-%d %H:%M}) "
              f"vs Dovecot {version}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
        print(f"machine: {NCPU} CPUs, {vd._mem_total_gib():.1f} GiB RAM, {platform.platform()}; load average "
              f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end (this run included); other processes "
              f"kept {other_cpus:.2f} CPUs busy on average during the measured rounds "
              f"(per run: min {min(other_runs):.2f}, max {max(other_runs):.2f})")
        print(f"spools and maildirs on {tmp_fs}; open-file limit given to the servers: {nofile}; "
              + (f"servers' and generator's sessions at autogroup nice {AUTOGROUP_NICE}"
                 if AUTOGROUP_NICE is not None else "no scheduling priority set (--autogroup-nice)"))
        print(f"full sessions: {args.messages} messages of ~{args.message_size} octets per maildrop, one maildrop "
              f"per client; {args.rounds} round(s) of {args.seconds:g} s per run, servers alternating, medians shown")
        print(f"Dovecot: service_count = 0 and process_min_avail = {NCPU} for pop3-login and pop3, pop3 client_limit "
              f"= {args.dovecot_pop3_clients}, auth_cache on (hits verified in auth workers)"
              + "".join(f", {line}" for line in args.dovecot_setting) + "; sdps: config/sdps.yaml's chain, password_cost min "
              "except in the Argon2id row")
        print()
        print(vd.table(rows))
        print()
        for n in clients:
            print(f"full sessions/s per round, {n} client(s): " + "; ".join(
                f"{k} " + ", ".join(f"{r['rate']:.0f}" for r in results[(k, 'full', n)]) for k in full_servers))
        print("the limit on this spool (sdps-bound: per session only the lock and one directory pass per punt, "
              "per command one recv and one send, per RETR one open, read and close):")
        for n in clients:
            limit = med(results[("limit", "full", n)], "rate")
            ours, theirs = med(results[("sdps", "full", n)], "rate"), med(results[("dovecot", "full", n)], "rate")
            limit_cpu = med([{"x": 1e3 * r["server_cpu_s"] / max(1, r["sessions"])}
                             for r in results[("limit", "full", n)]], "x")
            print(f"  {n} client(s): limit {limit:.0f} full sessions/s ({limit_cpu:.2f} ms server CPU per session); "
                  f"sdps {100 * ours / limit:.0f}% of it, Dovecot {100 * theirs / limit:.0f}%; "
                  f"the limit is {limit / theirs:.2f}x Dovecot")
        print("RETR MB/s per round: " + "; ".join(
            f"{k} " + ", ".join(f"{r['mb_per_s']:.0f}" for r in results[(k, 'retr')]) for k in servers))
        gen_busy = [100 * r["client_cpu_s"] / args.seconds for r in gen.runs if "client_cpu_s" in r
                    and r.get("workload") in ("full", "login", "retr")]
        if gen_busy:
            print(f"load generator CPU (one thread), share of wall time: median {statistics.median(gen_busy):.0f}%, "
                  f"max {max(gen_busy):.0f}%")
        if not args.no_auth:
            for k in servers:
                a, m = med(results[(k, "login", "argon2id")], "rate"), med(results[(k, "login", "min")], "rate")
                print(f"{k}: logins with Argon2id interactive are {100 * a / m:.0f}% of the cheap-password rate")
        print("per idle session: growth over " + "; ".join(f"{k} {idle[k]['per_session_range']}" for k in servers) +
              " (the second half, unless a server held none there)")
        for name in servers:
            print(f"{name} idle: " + ", ".join(
                f"{m['held']} held: RSS {m['rss']} KiB, PSS {m['pss']} KiB, {m['fds']} fds, {m['procs']} processes"
                for m in idle[name]["marks"]) +
                f"; whole range: {fmt(idle[name]['rss_per_session_all'], 'B')} RSS and "
                f"{idle[name]['fds_per_session_all']:.2f} fds per session")
        if certs:
            print("TLS: implicit TLS (POP3S), the same chain (server certificate + intermediate) for both servers, "
                  f"made for this run; {tls_runs[0].get('protocol', '?') if tls_runs else '?'} negotiated; other "
                  f"processes kept {other_tls_cpus:.2f} CPUs busy on average during the TLS rounds")
            for kind in certs:
                label = CERT_KINDS[kind][0]
                ratios = []
                for name in servers:
                    per_n = [cpu_us(tls[(kind, name, "full", n)]) / max(1e-9, cpu_us(results[(name, "full", n)]))
                             for n in clients]
                    ratios.append(f"{name} " + " / ".join(f"{x:.2f}" for x in per_n))
                print(f"  {label}: server CPU per full session over TLS / in plaintext, at "
                      f"{' / '.join(map(str, clients))} clients: " + "; ".join(ratios))
                shares = []
                for name in servers:
                    runs = tls[(kind, name, "resumed")]
                    done = sum(r.get("handshakes", 0) for r in runs)
                    resumed = sum(r.get("resumed", 0) for r in runs)
                    new, again = handshake_us(kind, name, "new"), handshake_us(kind, name, "resumed")
                    shares.append(f"{name} {100 * resumed / max(1, done):.0f}% of the offered sessions resumed, a "
                                  f"resumed handshake costs {100 * again / new if new > 0 else float('nan'):.0f}% "
                                  "of a new one")
                print(f"  {label}: " + "; ".join(shares))
                print(f"  {label}: full sessions/s over TLS per round: " + "; ".join(
                    f"{name} " + ", ".join(f"{r['rate']:.0f}" for r in tls[(kind, name, "full", n)])
                    + f" ({n} client{'s' if n > 1 else ''})" for n in clients for name in servers))
            if speed.get("p256_sign") and speed.get("x25519"):
                per_core = 1 / (1 / speed["p256_sign"] + 1 / speed["x25519"])
                line = (f"  openssl speed, one core: ECDSA P-256 sign {speed['p256_sign']:,.0f}/s, X25519 "
                        f"{speed['x25519']:,.0f}/s, RSA-2048 sign {speed.get('rsa2048_sign', 0):,.0f}/s; one sign + "
                        f"one X25519: {per_core:,.0f}/s per core ({NCPU * per_core:,.0f}/s on {NCPU} CPUs)")
                print(line)
                if "ecdsa" in certs:
                    got = med(tls[("ecdsa", "sdps", "new")], "rate")
                    cost = handshake_us("ecdsa", "sdps", "new")
                    own = 1e6 / cost if cost > 0 else 0
                    print(f"  sdps, new ECDSA handshakes: {got:,.0f}/s measured ({100 * got / per_core:.0f}% of one "
                          f"core's sign + X25519, with the generator on the same CPUs); at its server CPU per "
                          f"handshake ({cost:,.0f} us) one core would make {own:,.0f}/s = "
                          f"{100 * own / per_core:.0f}% of one core's sign + X25519")
            else:
                print("  openssl speed gave no figures")
            tls_gen = [100 * r["client_cpu_s"] / args.seconds for r in tls_runs if "client_cpu_s" in r]
            if tls_gen:
                print(f"  load generator CPU in the TLS runs: median {statistics.median(tls_gen):.0f}%, "
                      f"max {max(tls_gen):.0f}% of one core")
        if other_cpus > 0.1 * NCPU:
            print(f"WARNING: the machine was busy (other processes kept {other_cpus:.2f} of {NCPU} CPUs busy): "
                  "the timings are noisy; re-run when it is quiet")
        vd.print_problems(servers)
        print(f"ran in {time.monotonic() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "runs": gen.runs, "idle": idle,
                                                   "other_cpus": other_cpus, "openssl_speed": speed},
                                                  indent=1, default=str))
        return 0
    except (BenchError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as e:
        return vd.failed(e, dovecot)
    finally:
        vd.clean_up((bound, sdps, dovecot), tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
