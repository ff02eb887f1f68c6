#!/usr/bin/env python3
"""sdps's embedded default side by side with Dovecot's POP3 server, on the
same messages, in one run.

    bench/vs_dovecot.py [--build-dir DIR] [--quick] [...]

What it does (details in bench/README.md):

 1. finds (or builds, in build-bench/) a release sdpsd, checks that Dovecot
    (dovecot-pop3d, `scripts/install-deps --bench`) is installed;
 2. in a temporary folder: generates the messages once (deterministic, from
    --seed) and stores the same bytes in sdps's spool (through `sdps
    deliver`, split over the two punts) and in a Dovecot maildir per user;
 3. starts both servers on 127.0.0.1 (sdpsd on an ephemeral port, Dovecot
    with its own config file, base_dir and state in the temp folder);
 4. checks that RETR returns identical bytes from both;
 5. runs each workload against each server in turn (alternating, several
    rounds, so a change in machine load hits both alike):
      - sessions/s: connect, USER, PASS, STAT, QUIT, with 1 and 8 clients;
      - RETR throughput: one session retrieving a maildrop of mixed sizes;
      - memory: RSS of the server's processes with K idle logged-in
        sessions, and the peak RSS during the RETR runs;
 6. prints a table (metric, sdps, dovecot, sdps/dovecot, which way is
    better), stops both servers and removes the temp folder, whatever
    happened.

It never asserts a timing: it exits 0 when it ran, 1 when something broke
(a server would not start, a reply was wrong), 2 for a usage problem.

Python 3 standard library only. Needs root or a user that may start
Dovecot (it runs Dovecot's mail processes as `nobody`).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent
DOMAIN = "demon.co.uk"
SENDER = "alice@example.com"
TIMEOUT = 30.0


class BenchError(Exception):
    pass


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ /proc helpers

def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # comm may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def memory(root: int) -> dict[str, int]:
    """VmRSS and PSS summed over the process tree (KiB), and its size."""
    pids = process_tree(root)
    return {"rss": sum(_status_kib(p, "VmRSS:") for p in pids),
            "pss": sum(_pss_kib(p) for p in pids),
            "procs": len(pids)}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) used by the tree so far: every live process's
    own time, plus the root's reaped children (cutime/cstime), so processes
    that came and went (Dovecot's per-session processes) are counted."""
    ticks = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except (OSError, ValueError):
            continue
        ticks += int(f[11]) + int(f[12])          # utime, stime
        if pid == root:
            ticks += int(f[13]) + int(f[14])      # cutime, cstime
    return ticks / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all CPUs, not idle or
    waiting for I/O), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_seconds() -> float:
    """CPU time of this process and its reaped children (the client workers,
    and servers that were stopped, with their own reaped children)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class OtherLoad:
    """How much CPU everything else on the machine used over an interval:
    the machine's busy time minus this benchmark's (client and servers)."""

    def __init__(self, servers: dict):
        self.servers = servers
        self.t0, self.busy0, self.own0 = time.monotonic(), machine_busy_seconds(), own_seconds()
        self.srv0 = sum(cpu_seconds(s.pid) for s in servers.values())

    def cpus(self) -> float:
        """Average number of CPUs kept busy by other processes so far."""
        busy = machine_busy_seconds() - self.busy0
        ours = own_seconds() - self.own0 + sum(cpu_seconds(s.pid) for s in self.servers.values()) - self.srv0
        return max(0.0, busy - ours) / (time.monotonic() - self.t0)


class PeakSampler:
    """Samples the tree's summed VmRSS every `interval` seconds in a thread."""

    def __init__(self, root: int, interval: float = 0.01):
        self.root, self.interval = root, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = process_tree(self.root)
            self.peak = max(self.peak, sum(_status_kib(p, "VmRSS:") for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------ POP3 client

class Pop3:
    """A small, fast POP3 client: status lines, multi-line bodies found by
    their terminator, pipelined RETR."""

    def __init__(self, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.greeting = self.status()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise BenchError(f"connection closed by the server (pending {bytes(self.buf[:120])!r})")
        self.buf += chunk

    def status(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            self._fill()

    def ok(self, command: str) -> bytes:
        self.sock.sendall(command.encode() + b"\r\n")
        line = self.status()
        if not line.startswith(b"+OK"):
            shown = "PASS ..." if command.startswith("PASS") else command
            raise BenchError(f"{shown!r} -> {line!r}")
        return line

    def body(self) -> bytes:
        """The rest of a multi-line reply as sent (dot-stuffed), ending in
        CRLF, without the terminating '.' line."""
        # The status line's CRLF is already consumed: an empty body is ".\r\n".
        if self.buf[:3] == b".\r\n":
            del self.buf[:3]
            return b""
        start = 0
        while True:
            end = self.buf.find(b"\r\n.\r\n", start)
            if end >= 0:
                data = bytes(self.buf[:end + 2])
                del self.buf[:end + 5]
                return data
            start = max(0, len(self.buf) - 4)
            self._fill()
            if start == 0 and self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return b""

    def skip_bodies(self, count: int) -> int:
        """Reads `count` pipelined multi-line replies; returns the octets
        received. Raises on a -ERR."""
        total = 0
        for _ in range(count):
            line = self.status()
            if not line.startswith(b"+OK"):
                raise BenchError(f"RETR -> {line!r}")
            total += len(self.body())
        return total

    def login(self, user: str, password: str) -> None:
        self.ok(f"USER {user}")
        self.ok(f"PASS {password}")

    def stat(self) -> tuple[int, int]:
        m = re.fullmatch(rb"\+OK (\d+) (\d+).*", self.ok("STAT"))
        if not m:
            raise BenchError("STAT reply is not '+OK count octets'")
        return int(m.group(1)), int(m.group(2))

    def list(self) -> dict[int, int]:
        self.ok("LIST")
        out = {}
        for line in self.body().split(b"\r\n")[:-1]:
            n, size = line.split()[:2]
            out[int(n)] = int(size)
        return out

    def capa(self) -> set[str]:
        self.ok("CAPA")
        return {line.split()[0].decode().upper() for line in self.body().split(b"\r\n")[:-1] if line}

    def quit(self) -> None:
        """QUIT, then wait for the server to close (so its locks are gone)."""
        self.ok("QUIT")
        self.sock.settimeout(TIMEOUT)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def unstuff(body: bytes) -> bytes:
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


# ------------------------------------------------------------ messages

def make_message(rng: random.Random, index: int, size: int, to: str) -> bytes:
    """An RFC 5322 message of about `size` octets (LF line ends): a text
    part and a base64 'attachment', with a few lines that need dot-stuffing."""
    head = (f"From: Alice <{SENDER}>\n"
            f"To: {to}\n"
            f"Subject: benchmark message {index} ({size} octets)\n"
            f"Date: Thu, 26 Nov 2026 20:42:{index % 60:02d} +0000\n"
            f"Message-ID: <bench.{index}.{size}@example.com>\n"
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b0undary"\n\n'
            "--b0undary\nContent-Type: text/plain\n\n"
            "Hello,\n.\n.this line starts with a dot\n..and this one with two\n\n"
            "--b0undary\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n").encode()
    tail = b"\n--b0undary--\n"
    room = max(0, size - len(head) - len(tail))
    # base64.encodebytes: 76-character lines + LF, i.e. 57 raw octets -> 77.
    raw = rng.randbytes(room * 57 // 77)
    body = base64.encodebytes(raw)
    msg = head + body + tail
    if len(msg) < size:
        msg = msg[:-len(tail)] + b"x" * (size - len(msg) - 1) + b"\n" + tail
    return msg


def returned(msg: bytes) -> bytes:
    """What RETR sends for a stored message (before dot-stuffing)."""
    return b"Return-Path: <" + SENDER.encode() + b">\r\n" + msg.replace(b"\n", b"\r\n")


# ------------------------------------------------------------ sdps

def find_build(build_dir: str | None) -> Path:
    candidates = [Path(build_dir)] if build_dir else [SOURCE_DIR / "build-bench", SOURCE_DIR / "build"]
    for d in candidates:
        d = d.resolve()
        if not (d / "bin" / "sdpsd").is_file():
            continue
        cache = (d / "CMakeCache.txt").read_text() if (d / "CMakeCache.txt").is_file() else ""
        build_type = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", cache, re.M)
        sanitize = re.search(r"^SDPS_SANITIZE:BOOL=(.*)$", cache, re.M)
        if sanitize and sanitize.group(1).upper() in ("ON", "1", "TRUE"):
            if build_dir:
                raise BenchError(f"{d} is a sanitizer build: benchmark a release build")
            continue
        if build_type and build_type.group(1) not in ("", "Release", "RelWithDebInfo"):
            if build_dir:
                raise BenchError(f"{d} is a {build_type.group(1)} build: use Release or RelWithDebInfo")
            continue
        return d
    if build_dir:
        raise BenchError(f"no bin/sdpsd in {build_dir}")
    d = SOURCE_DIR / "build-bench"
    log(f"no release build found: building one in {d}")
    for cmd in (["cmake", "-S", str(SOURCE_DIR), "-B", str(d), "-DSDPS_TESTS=OFF",
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                ["cmake", "--build", str(d), f"-j{os.cpu_count() or 2}"]):
        if subprocess.run(cmd).returncode != 0:
            raise BenchError("building sdps failed: " + " ".join(cmd))
    return d


def shipped_modules_section() -> str:
    """The `modules:` section of config/sdps.yaml, verbatim."""
    text = (SOURCE_DIR / "config" / "sdps.yaml").read_text()
    at = re.search(r"^modules:", text, re.M)
    if not at:
        raise BenchError("config/sdps.yaml has no modules: section")
    return text[at.start():]


class Sdps:
    def __init__(self, build: Path, root: Path, max_sessions: int):
        self.build, self.root = build, root
        (root / "etc").mkdir(parents=True)
        (root / "var" / "spool").mkdir(parents=True)
        self.config = root / "etc" / "sdps.yaml"
        self.config.write_text(
            "# written by bench/vs_dovecot.py: the embedded default (config/sdps.yaml)\n"
            "# with a cheap password hash and a long idle timer\n"
            "listen: [127.0.0.1:0]\n"
            f"customer_domain: {DOMAIN}\n"
            "idle_timeout: 2h\n"
            "password_cost: min\n"
            f"max_sessions: {max(1000, max_sessions + 100)}\n"
            "hosts: ../var/hosts\n"
            "punts:\n"
            "  finchley: ../var/spool/finchley\n"
            "  docklands: ../var/spool/docklands\n\n" + shipped_modules_section())
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.tls_port = 0                 # with `--listen-tls` in extra_args (vs_dovecot_loadgen.py)
        self.extra_args: list[str] = []

    def tool(self, *args: str, data: bytes = b"") -> None:
        r = subprocess.run([str(self.build / "bin" / "sdps"), "-c", str(self.config), *args],
                           input=data, capture_output=True, timeout=120)
        if r.returncode != 0:
            raise BenchError(f"sdps {' '.join(args[:3])} exited {r.returncode}: {r.stderr.decode(errors='replace')}")

    def add_host(self, host: str, password: str) -> None:
        self.tool("host", "add", host)
        self.tool("host", "passwd", host, "--pop3", data=password.encode() + b"\n")

    def deliver(self, recipients: list[str], msg: bytes, punt: str) -> None:
        self.tool("deliver", "--punt", punt, "-f", SENDER, *recipients, data=msg)

    def start(self) -> None:
        self.starts = getattr(self, "starts", 0) + 1
        self.log_path = self.root / f"sdpsd.{self.starts}.log"      # one per start: read for its port
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(self.build / "bin" / "sdpsd"), "-c", str(self.config), "--listen", "127.0.0.1:0", *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        tls = "--listen-tls" in self.extra_args
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)(?!\d| \(implicit TLS\))", text)
            t = re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", text)
            if m and (t or not tls):
                self.port = int(m.group(1))
                self.tls_port = int(t.group(1)) if t else 0
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(f"sdpsd did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def problems(self) -> list[str]:
        """Warnings and errors in sdpsd's logs, but the expected one."""
        out = []
        for path in sorted(self.root.glob("sdpsd.*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if re.search(r" (warning|error) ", line) and "password_cost is 'min'" not in line:
                    out.append(line)
        return out

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.log_file.close()
        self.process = None


# ------------------------------------------------------------ Dovecot

# The parts of a Dovecot config both benchmarks write (vs_dovecot_loadgen.py
# too): one str.format over the assembled template fills every field.
DOVECOT_CONF_HEAD = """\
instance_name = sdps-bench-dovecot
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
pop3_uidl_format = %08Xu%08Xv
"""

DOVECOT_CONF_USERS = """
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
"""

DOVECOT_CONF_LOGIN = """\
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
"""

DOVECOT_CONF = (
    "# written by bench/vs_dovecot.py: Dovecot's POP3 server with its shipped\n"
    "# defaults, except where a throwaway unprivileged instance needs otherwise.\n"
    + DOVECOT_CONF_HEAD
    + "# every session process talks to the stats and log services: room for all\n"
    "default_client_limit = {client_limit}\n"
    + DOVECOT_CONF_USERS + "\n" + DOVECOT_CONF_LOGIN
    + "{login_extra}}}\n"
    "service pop3 {{\n"
    "  process_limit = {process_limit}\n"
    "{pop3_extra}}}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self, root: Path, *, tuning: str, max_sessions: int):
        self.root = root
        self.binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.access(self.binary, os.X_OK):
            raise BenchError("dovecot is not installed: run scripts/install-deps --bench "
                             "(Debian package dovecot-pop3d)")
        if not Path("/usr/lib/dovecot/pop3").exists():
            raise BenchError("Dovecot's POP3 server is not installed: apt-get install dovecot-pop3d")
        if os.geteuid() != 0:
            raise BenchError("Dovecot needs root to start here (it switches its processes to "
                             "dovecot, dovenull and nobody): run as root")
        root.mkdir(parents=True)
        (root / "mail").mkdir()
        self.port = 0
        import pwd
        import grp
        self.uid = pwd.getpwnam("nobody").pw_uid
        self.gid = grp.getgrnam("nogroup").gr_gid if _has_group("nogroup") else self.uid
        for user in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise BenchError(f"user {user} is missing (the dovecot-core package creates it)") from None
        self.login_extra = self.pop3_extra = ""
        if tuning == "performance":
            # Dovecot's documented "high-performance" login mode, and POP3
            # processes reused for many sessions (allowed here because every
            # user has the same UID).
            self.login_extra = "  service_count = 0\n  process_min_avail = 2\n"
            self.pop3_extra = "  service_count = 100\n  process_min_avail = 2\n"
        self.process_limit = max(1024, max_sessions + 64)
        self.conf = root / "dovecot.conf"
        self.users: list[str] = []
        self.process: subprocess.Popen | None = None
        self.msg_serial = 0

    def add_user(self, user: str, password: str) -> Path:
        with open(self.root / "passwd", "a") as f:
            f.write(f"{user}:{{PLAIN}}{password}::::{self.root}/mail/{user}::\n")
        maildir = self.root / "mail" / user
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        self.users.append(user)
        return maildir

    def store(self, user: str, msg: bytes) -> None:
        """The message as Dovecot's LDA would leave it: LF line ends, a
        Return-Path field, S= (file size) and W= (RFC 822 size) in the name."""
        self.msg_serial += 1
        data = b"Return-Path: <" + SENDER.encode() + b">\n" + msg
        virtual = len(data) + data.count(b"\n")
        name = f"{1790000000 + self.msg_serial}.M{self.msg_serial}P1.sdpsbench,S={len(data)},W={virtual}:2,"
        (self.root / "mail" / user / "cur" / name).write_bytes(data)

    def start(self) -> None:
        """Starts Dovecot on a free port (a new one at each start)."""
        self.port = free_port()
        self.conf.write_text(DOVECOT_CONF.format(root=self.root, uid=self.uid, gid=self.gid, port=self.port,
                                                 login_extra=self.login_extra, pop3_extra=self.pop3_extra,
                                                 process_limit=self.process_limit,
                                                 client_limit=max(1000, 2 * self.process_limit + 200)))
        for dirpath, dirnames, filenames in os.walk(self.root / "mail"):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)
        self.launch()

    def launch(self) -> None:
        """Runs Dovecot with the config written; returns once it greets on
        self.port."""
        self.log_path = self.root / "dovecot.stderr"
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                        stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(512).startswith(b"+OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError("Dovecot did not start:\n" + self.logs())

    def problems(self) -> list[str]:
        """Warnings and errors in Dovecot's log, but the one at each stop."""
        path = self.root / "dovecot.log"
        if not path.exists():
            return []
        return [line for line in path.read_text(errors="replace").splitlines()
                if re.search(r": (Warning|Error|Fatal|Panic):", line) and "Killed with signal 15" not in line]

    def logs(self) -> str:
        out = []
        for p in (self.root / "dovecot.stderr", self.root / "dovecot.log"):
            if p.exists():
                out.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def stop(self) -> None:
        if not self.process:
            return
        master = self.process.pid
        if self.process.poll() is None:
            tree = process_tree(master)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            # Any of this instance's processes left behind: still in the
            # session the master was started in, and still Dovecot's.
            for pid in tree[1:]:
                try:
                    if os.getsid(pid) == master and b"dovecot" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass
        self.process = None
        self.log_file.close()


def _has_group(name: str) -> bool:
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


# ------------------------------------------------------------ workloads

def _session_worker(port: int, user: str, password: str, seconds: float, start_at: float,
                    out: "multiprocessing.queues.Queue") -> None:
    count, errors, latencies = 0, 0, []
    first_error = ""
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            c = Pop3(port)
            try:
                c.login(user, password)
                c.stat()
                c.quit()
            finally:
                c.close()
            count += 1
            latencies.append(time.perf_counter() - t0)
        except (BenchError, OSError) as e:
            errors += 1
            first_error = first_error or str(e)
            time.sleep(0.01)
    out.put((count, errors, latencies, first_error))


def sessions_run(name: str, port: int, pid: int, users: list[tuple[str, str]], clients: int,
                 seconds: float) -> dict:
    """`clients` processes, each logging in to its own maildrop in a loop
    for `seconds`: connect, USER, PASS, STAT, QUIT (waiting for the close)."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_session_worker, args=(port, *users[i], seconds, start_at, q), daemon=True)
             for i in range(clients)]
    cpu0 = cpu_seconds(pid)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.3)                                  # let Dovecot reap its session processes
    cpu1 = cpu_seconds(pid)
    client_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    count = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    if errors:
        first = next(r[3] for r in results if r[3])
        log(f"  {name}: {errors} failed sessions (first: {first})")
        if count == 0:
            raise BenchError(f"{name}: every session failed: {first}")
    lat = sorted(x for r in results for x in r[2])
    return {"rate": count / seconds, "count": count, "errors": errors,
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "cpu_us": 1e6 * (cpu1 - cpu0) / max(1, count),
            "client_cpu_us": 1e6 * client_cpu / max(1, count)}


def retr_run(port: int, user: str, password: str, count: int, pipelined: bool) -> tuple[int, float, float]:
    """One session: RETR 1..count (all commands sent at once when
    `pipelined`), then QUIT without DELE. Returns (octets, seconds) for the
    RETRs, octets being what the server sent (dot-stuffed bodies), and the
    CPU time this client thread spent meanwhile."""
    c = Pop3(port)
    try:
        c.login(user, password)
        t0, c0 = time.perf_counter(), time.thread_time()
        if pipelined:
            c.sock.sendall(b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1)))
            octets = c.skip_bodies(count)
        else:
            octets = 0
            for i in range(1, count + 1):
                c.sock.sendall(b"RETR %d\r\n" % i)
                octets += c.skip_bodies(1)
        elapsed, client_cpu = time.perf_counter() - t0, time.thread_time() - c0
        c.quit()
    finally:
        c.close()
    return octets, elapsed, client_cpu


def retrieve_all(port: int, user: str, password: str) -> list[bytes]:
    c = Pop3(port)
    try:
        c.login(user, password)
        n, _ = c.stat()
        sizes = c.list()
        out = []
        for i in range(1, n + 1):
            c.ok(f"RETR {i}")
            data = unstuff(c.body())
            if len(data) != sizes[i]:
                raise BenchError(f"message {i}: RETR sent {len(data)} octets, LIST said {sizes[i]}")
            out.append(data)
        c.quit()
    finally:
        c.close()
    return out


def idle_sessions(name: str, port: int, pid: int, users: list[tuple[str, str]]) -> dict:
    """Memory of the server's processes before, with len(users) idle
    logged-in sessions, and after they quit; also at each quarter of the
    way, for the marginal cost per session over the second half (a fresh
    process first reuses heap pages that start-up freed but kept resident,
    so the first sessions look cheaper than they are)."""
    time.sleep(0.5)
    before = memory(pid)
    k = len(users)
    marks = {k // 4, k // 2, 3 * k // 4}
    steps: list[tuple[int, dict]] = [(0, before)]
    conns = []
    try:
        for i, (user, password) in enumerate(users, 1):
            c = Pop3(port)
            conns.append(c)
            c.login(user, password)
            if i in marks and i < k:
                time.sleep(0.3)
                steps.append((i, memory(pid)))
        time.sleep(1.0)
        during = memory(pid)
        steps.append((k, during))
    finally:
        for c in conns:
            try:
                c.quit()
            except (BenchError, OSError):
                c.close()
    time.sleep(1.0)
    after = memory(pid)
    half, at_half = next(((n, m) for n, m in steps if n >= k // 2), steps[0])
    second = max(1, k - half)
    return {"before": before, "during": during, "after": after, "steps": steps, "half": half,
            "rss_per_session": 1024 * (during["rss"] - before["rss"]) / k,
            "pss_per_session": 1024 * (during["pss"] - before["pss"]) / k,
            "rss_marginal": 1024 * (during["rss"] - at_half["rss"]) / second,
            "pss_marginal": 1024 * (during["pss"] - at_half["pss"]) / second}


def restart(servers: dict) -> None:
    """Restarts every server, then logs in once to each, so both have been
    through the login path before anything is measured."""
    for srv in servers.values():
        srv.stop()
        srv.start()
    for name, srv in servers.items():
        c = Pop3(srv.port)
        c.login("m001", "pw-m001")
        c.quit()
        log(f"{name} restarted: pid {srv.pid} on 127.0.0.1:{srv.port}")
    time.sleep(0.5)


# ------------------------------------------------------------ report

def fmt(value: float, unit: str) -> str:
    if unit == "B":
        for scale, suffix in ((1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {suffix}"
        return f"{value:.0f} B"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    if abs(value) >= 10:
        return f"{value:.1f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def table(rows: list[tuple[str, float, float, str, str]]) -> str:
    """rows: metric, sdps, dovecot, unit, 'higher'|'lower' (which is better)."""
    header = ("metric", "sdps", "dovecot", "sdps/dovecot", "reading")
    lines = []
    for metric, a, b, unit, better in rows:
        ratio = a / b if b else float("inf")
        if a <= 0 or b <= 0:
            reading = f"{better} is better (a figure is at or below the measurement's resolution)"
        elif better == "higher":
            reading = (f"higher is better: sdps {ratio:.2f}x dovecot" if ratio >= 1
                       else f"higher is better: sdps {1 / ratio:.2f}x slower")
        else:
            reading = (f"lower is better: sdps {1 / ratio:.1f}x less" if 0 < ratio <= 1
                       else f"lower is better: sdps {ratio:.2f}x more")
        lines.append((metric, fmt(a, unit), fmt(b, unit), f"{ratio:.3f}", reading))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(5)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in lines:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


# ------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="sdps build with bin/sdpsd and bin/sdps (default: build-bench/, "
                    "then build/ if it is a release build; else builds build-bench/)")
    ap.add_argument("--messages", type=int, default=200, help="messages in the RETR maildrop (200)")
    ap.add_argument("--min-size", type=int, default=2048, help="smallest message, octets (2048)")
    ap.add_argument("--max-size", type=int, default=1 << 20, help="largest message, octets (1048576)")
    ap.add_argument("--idle-sessions", type=int, default=1000,
                    help="idle sessions for the memory test (1000; the cost per session is measured "
                    "over the second half)")
    ap.add_argument("--small-messages", type=int, default=10,
                    help="messages in each of the idle/session maildrops (10)")
    ap.add_argument("--clients", default="1,8", help="concurrent clients for sessions/s (1,8)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each sessions/s run (4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each workload per server, alternating (3)")
    ap.add_argument("--no-pipelining", action="store_true", help="send RETRs one at a time")
    ap.add_argument("--dovecot-tuning", choices=("shipped", "performance"), default="shipped",
                    help="'shipped': Dovecot's defaults (a login process and a pop3 process per "
                    "connection); 'performance': login processes serve many connections "
                    "(service_count = 0) and pop3 processes up to 100 sessions each (service_count = 100)")
    ap.add_argument("--seed", type=int, default=1939)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (small counts)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, configs)")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.idle_sessions, args.seconds, args.rounds = 20, 20, 1.0, 1
        args.max_size = min(args.max_size, 256 << 10)
    try:
        clients = [int(x) for x in args.clients.split(",") if x]
    except ValueError:
        ap.error("--clients takes numbers separated by commas, e.g. 1,8")
    if not clients or min(clients) < 1 or args.messages < 2 or args.idle_sessions < 1:
        ap.error("counts must be positive")
    n_small_hosts = max(args.idle_sessions, max(clients))

    started = time.monotonic()
    # SIGTERM (e.g. from timeout(1)) cleans up like an error does.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="sdps-vs-dovecot-"))
    os.chmod(tmp, 0o755)                 # Dovecot's unprivileged processes walk into it
    sdps = dovecot = None
    try:
        build = find_build(args.build_dir)
        log(f"sdps build: {build}")
        dovecot = Dovecot(tmp / "dovecot", tuning=args.dovecot_tuning, max_sessions=n_small_hosts)
        sdps = Sdps(build, tmp / "sdps", n_small_hosts)
        version = subprocess.run([dovecot.binary, "--version"], capture_output=True, text=True).stdout.strip()

        # -- the same messages into both stores
        rng = random.Random(args.seed)
        lo, hi = math.log(args.min_size), math.log(args.max_size)
        sizes = [args.min_size, args.max_size] + [int(math.exp(rng.uniform(lo, hi)))
                                                  for _ in range(args.messages - 2)]
        rng.shuffle(sizes)
        log(f"storing {args.messages} messages ({sum(sizes) / 2**20:.1f} MiB) for host 'bench', "
            f"and {args.small_messages} small ones for each of {n_small_hosts} hosts, in both servers")
        sdps.add_host("bench", "pw-bench")
        dovecot.add_user("bench", "pw-bench")
        big = []
        for i, size in enumerate(sizes):
            msg = make_message(rng, i, size, f"fred@bench.{DOMAIN}")
            big.append(msg)
            sdps.deliver([f"fred@bench.{DOMAIN}"], msg, ("finchley", "docklands")[i % 2])
            dovecot.store("bench", msg)
        small_users = [(f"m{i:03d}", f"pw-m{i:03d}") for i in range(1, n_small_hosts + 1)]
        for user, password in small_users:
            sdps.add_host(user, password)
            dovecot.add_user(user, password)
        for i in range(args.small_messages):
            msg = make_message(rng, 10000 + i, rng.randint(2048, 16384), f"fred@{DOMAIN}")
            sdps.deliver([f"fred@{u}" for u, _ in small_users], msg, ("finchley", "docklands")[i % 2])
            for user, _ in small_users:
                dovecot.store(user, msg)

        # -- both servers up
        sdps.start()
        dovecot.start()
        servers = {"sdps": sdps, "dovecot": dovecot}
        log(f"sdpsd pid {sdps.pid} on 127.0.0.1:{sdps.port}; dovecot {version} pid {dovecot.pid} "
            f"on 127.0.0.1:{dovecot.port} (tuning: {args.dovecot_tuning})")

        # -- same bytes from both (this also builds Dovecot's indexes and
        #    warms the page cache for both)
        expected = sorted(hashlib.sha256(returned(m)).digest() for m in big)
        pipelining = not args.no_pipelining
        for name, srv in servers.items():
            got = retrieve_all(srv.port, "bench", "pw-bench")
            if sorted(hashlib.sha256(m).digest() for m in got) != expected:
                raise BenchError(f"{name}: RETR did not return the stored messages")
            for user, password in small_users:     # Dovecot indexes every maildrop once
                c = Pop3(srv.port)
                c.login(user, password)
                if c.stat()[0] != args.small_messages:
                    raise BenchError(f"{name}: {user} has the wrong number of messages")
                c.quit()
            c = Pop3(srv.port)
            capa = c.capa()
            c.close()
            if "PIPELINING" not in capa:
                log(f"{name} does not announce PIPELINING: RETRs go one at a time")
                pipelining = False
        log("both servers return the same bytes for every message")
        # Memory is measured on fresh processes: sdpsd's heap would still
        # hold (resident) what the check above freed, hiding what new
        # sessions cost. Dovecot keeps its indexes on disk.
        restart(servers)
        other = OtherLoad(servers)
        total_octets = sum(len(returned(m)) for m in big)

        # -- memory with idle sessions (first: the servers are closest to fresh)
        idle = {name: idle_sessions(name, srv.port, srv.pid, small_users[:args.idle_sessions])
                for name, srv in servers.items()}
        for name, r in idle.items():
            log(f"{name}: {args.idle_sessions} idle sessions: RSS {r['before']['rss']} -> {r['during']['rss']} KiB "
                f"({r['before']['procs']} -> {r['during']['procs']} processes), PSS {r['before']['pss']} -> "
                f"{r['during']['pss']} KiB; after QUIT {r['after']['rss']} KiB")
            log(f"{name}: RSS / PSS KiB by open sessions: " +
                ", ".join(f"{n}: {m['rss']}/{m['pss']}" for n, m in r["steps"]))

        # -- sessions/s, alternating servers (fresh processes: with
        #    --dovecot-tuning performance the idle sessions' pop3 processes
        #    would otherwise linger)
        restart(servers)
        sess: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(args.rounds):
            for n in clients:
                for name, srv in servers.items():
                    r = sessions_run(name, srv.port, srv.pid, small_users, n, args.seconds)
                    sess.setdefault((name, n), []).append(r)
                    log(f"round {rnd + 1}: {name}, {n} client(s): {r['rate']:.0f} sessions/s, "
                        f"p50 {r['p50_ms']:.2f} ms, server CPU {r['cpu_us']:.0f} us/session")

        # -- RETR throughput, alternating servers, with peak RSS (fresh
        #    processes again: with --dovecot-tuning performance, the pop3
        #    processes of the idle sessions would still be there)
        restart(servers)
        retr: dict[str, list[float]] = {"sdps": [], "dovecot": []}
        retr_cpu: dict[str, float] = {"sdps": 0.0, "dovecot": 0.0}
        retr_octets: dict[str, int] = {"sdps": 0, "dovecot": 0}
        retr_client: dict[str, list[float]] = {"sdps": [], "dovecot": []}
        peak: dict[str, int] = {}
        base_rss: dict[str, int] = {}
        for name, srv in servers.items():
            base_rss[name] = memory(srv.pid)["rss"]
        retr_rounds = max(args.rounds, 3)
        for rnd in range(retr_rounds):
            for name, srv in servers.items():
                cpu0 = cpu_seconds(srv.pid)
                with PeakSampler(srv.pid) as ps:
                    octets, secs, client_cpu = retr_run(srv.port, "bench", "pw-bench", args.messages, pipelining)
                time.sleep(0.3)                      # let Dovecot reap the session's process
                cpu = cpu_seconds(srv.pid) - cpu0
                peak[name] = max(peak.get(name, 0), ps.peak)
                retr[name].append(octets / secs / 1e6)
                retr_cpu[name] += cpu
                retr_octets[name] += octets
                retr_client[name].append(client_cpu / secs)
                log(f"round {rnd + 1}: {name} RETR {octets / 1e6:.1f} MB in {secs:.3f} s = "
                    f"{octets / secs / 1e6:.0f} MB/s, server CPU {1e3 * cpu / (octets / 1e6):.2f} ms/MB "
                    f"(whole session), client busy {100 * client_cpu / secs:.0f}%, peak RSS {ps.peak} KiB")

        load_end = os.getloadavg()
        other_cpus = other.cpus()

        # -- report
        def med(name: str, n: int, key: str) -> float:
            return statistics.median(r[key] for r in sess[(name, n)])

        rows = []
        for n in clients:
            rows.append((f"sessions/s, {n} client{'s' if n > 1 else ''} (USER PASS STAT QUIT)",
                         med("sdps", n, "rate"), med("dovecot", n, "rate"), "/s", "higher"))
        for n in clients:
            rows.append((f"server CPU per session, {n} client{'s' if n > 1 else ''}",
                         med("sdps", n, "cpu_us"), med("dovecot", n, "cpu_us"), "us", "lower"))
        rows.append((f"session latency p50, {clients[0]} client{'s' if clients[0] > 1 else ''}",
                     med("sdps", clients[0], "p50_ms"), med("dovecot", clients[0], "p50_ms"), "ms", "lower"))
        rows.append((f"RETR throughput, {args.messages} msgs, one session (median)",
                     statistics.median(retr["sdps"]), statistics.median(retr["dovecot"]), "MB/s", "higher"))
        rows.append(("server CPU per MB retrieved (whole sessions, all rounds)",
                     1e3 * retr_cpu["sdps"] / (retr_octets["sdps"] / 1e6),
                     1e3 * retr_cpu["dovecot"] / (retr_octets["dovecot"] / 1e6), "ms", "lower"))
        rows.append(("RSS idle, all server processes", 1024 * idle["sdps"]["before"]["rss"],
                     1024 * idle["dovecot"]["before"]["rss"], "B", "lower"))
        rows.append((f"RSS with {args.idle_sessions} idle logged-in sessions", 1024 * idle["sdps"]["during"]["rss"],
                     1024 * idle["dovecot"]["during"]["rss"], "B", "lower"))
        span = f"sessions {idle['sdps']['half'] + 1}..{args.idle_sessions}"
        rows.append((f"RSS per idle session, {span} (VmRSS sum)", idle["sdps"]["rss_marginal"],
                     idle["dovecot"]["rss_marginal"], "B", "lower"))
        rows.append((f"PSS per idle session, {span} (shared pages split)", idle["sdps"]["pss_marginal"],
                     idle["dovecot"]["pss_marginal"], "B", "lower"))
        rows.append(("peak RSS during RETR runs", 1024 * peak["sdps"], 1024 * peak["dovecot"], "B", "lower"))
        rows.append(("RSS added by RETR (peak - before)", 1024 * (peak["sdps"] - base_rss["sdps"]),
                     1024 * (peak["dovecot"] - base_rss["dovecot"]), "B", "lower"))

        print()
        print(f"sdps {sdps.build} (source at {source_revision()}, sdpsd built "
              f"{datetime.datetime.fromtimestamp((sdps.build / 'bin' / 'sdpsd').stat().st_mtime):%Y-%m-%d %H:%M}) "
              f"vs Dovecot {version}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
        print(f"machine: {os.cpu_count()} CPUs, {_mem_total_gib():.1f} GiB RAM, {platform.platform()}; "
              f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end (this run included); "
              f"other processes (and interrupts) kept {other_cpus:.2f} CPUs busy on average during the measurements")
        print(f"maildrop for RETR: {args.messages} messages, {args.min_size}..{args.max_size} octets "
              f"(log-uniform, seed {args.seed}), {total_octets / 1e6:.1f} MB as RETR sends it; "
              f"RETRs {'pipelined' if pipelining else 'one at a time'}")
        print(f"sessions: {args.rounds} round(s) of {args.seconds:g} s per server and client count, "
              f"alternating servers, median shown; each client its own maildrop of {args.small_messages} messages")
        print("passwords: sdps Argon2id with password_cost: min (1 pass, 8 KiB); Dovecot {PLAIN} in a passwd-file")
        print(f"Dovecot: tuning '{args.dovecot_tuning}', mail in maildir (run as nobody), indexes built "
              "before measuring; sdps: the embedded default chain (two local punts, messages split over both)")
        print()
        print(table(rows))
        print()
        print("RETR MB/s per round: " + "; ".join(f"{k} " + ", ".join(f"{x:.0f}" for x in v) for k, v in retr.items()))
        for n in clients:
            print(f"sessions/s per round, {n} client(s): " + "; ".join(
                f"{k} " + ", ".join(f"{r['rate']:.0f}" for r in sess[(k, n)]) for k in servers))
        print("client CPU, share of wall time during RETR: " + "; ".join(
            f"{k} {100 * statistics.median(v):.0f}%" for k, v in retr_client.items()) +
              " (near 100%: the Python client, not the server, set the pace)")
        for n in clients:
            print(f"client CPU per session, {n} client(s): " + "; ".join(
                f"{k} {statistics.median(r['client_cpu_us'] for r in sess[(k, n)]):.0f} us" for k in servers))
        for name in servers:
            print(f"{name} RSS/PSS KiB by open idle sessions: " +
                  ", ".join(f"{n}: {m['rss']}/{m['pss']}" for n, m in idle[name]["steps"]))
        print(f"processes: sdps {idle['sdps']['during']['procs']}, dovecot {idle['dovecot']['before']['procs']} idle "
              f"-> {idle['dovecot']['during']['procs']} with {args.idle_sessions} sessions")
        if other_cpus > 0.1 * (os.cpu_count() or 1):
            print(f"WARNING: the machine was busy (other processes kept {other_cpus:.2f} of {os.cpu_count()} "
                  "CPUs busy): the timings are noisy; re-run when it is quiet")
        print_problems(servers)
        print(f"ran in {time.monotonic() - started:.0f} s")
        return 0
    except (BenchError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as e:
        return failed(e, dovecot)
    finally:
        clean_up((sdps, dovecot), tmp, args.keep)


def print_problems(servers: dict) -> None:
    """One line a server: its log's warnings and errors, or that there were none."""
    for name, srv in servers.items():
        found = srv.problems()
        print(f"{name} log: " + (f"{len(found)} warning/error line(s), first: {found[0]}" if found
                                 else "no warnings or errors"))


def failed(e: BaseException, dovecot) -> int:
    """Logs why a run stopped (and Dovecot's logs, when it was running);
    returns main's exit code: 130 for an interrupt, 1 otherwise."""
    if isinstance(e, KeyboardInterrupt):
        log("interrupted")
        return 130
    log(f"FAILED: {type(e).__name__ + ': ' if not isinstance(e, BenchError) else ''}{e}")
    if dovecot is not None and dovecot.process is not None:
        log(dovecot.logs())
    return 1


def clean_up(servers, tmp: Path, keep: bool) -> None:
    """Stops the servers that were made, whatever happened, and removes the
    temp folder unless asked to keep it."""
    for srv in servers:
        if srv is not None:
            try:
                srv.stop()
            except Exception as e:          # keep cleaning up
                log(f"stopping {type(srv).__name__}: {e}")
    if keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def source_revision() -> str:
    """The source tree's commit, '+changes' when it has uncommitted ones."""
    try:
        rev = subprocess.run(["git", "-C", str(SOURCE_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(SOURCE_DIR), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


if __name__ == "__main__":
    sys.exit(main())
