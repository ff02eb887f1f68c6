"""Black-box test harness: a real sdpsd, a real `sdps` admin tool, and a
line-level POP3 client for transcript-style tests.

    with Site() as site:                       # temp config, spool, host database
        site.add_host("sample", pop3="pw")     # through `sdps host ...`
        site.deliver("fred@sample.demon.co.uk", message(subject="hi"))
        server = site.start()                  # sdpsd on 127.0.0.1:<ephemeral>
        c = server.connect()
        c.ok("USER sample"); c.ok("PASS pw")
        assert c.retr(1) == returned(message(subject="hi"))

Environment (ctest sets it): SDPS_BUILD_DIR (binaries in bin/),
SDPS_SOURCE_DIR (the shipped config/), SDPS_SANITIZE ("1" in the ASan build:
then a server or tool whose stderr shows a sanitizer report fails the test),
SDPS_TSAN ("1" in the ThreadSanitizer build: the same, for its reports),
SDPS_TEST_THREADS (optional: `threads:` for every test site).

Python 3 standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("SDPS_SOURCE_DIR", HERE.parent.parent)).resolve()
BUILD_DIR = Path(os.environ.get("SDPS_BUILD_DIR", SOURCE_DIR / "build")).resolve()
SANITIZE = os.environ.get("SDPS_SANITIZE", "") in ("1", "ON", "on", "true", "TRUE")
# The ThreadSanitizer build (SDPS_TSAN, docs/toolchain.md): as slow, and
# its reports fail a test too.
TSAN = os.environ.get("SDPS_TSAN", "") in ("1", "ON", "on", "true", "TRUE")
SANITIZE = SANITIZE or TSAN

# SDPS_TEST_THREADS=N writes `threads: N` into every test site's config
# (a test's own `threads` wins): the suite on more event loops than cores.
TEST_THREADS = {"threads": os.environ["SDPS_TEST_THREADS"]} if os.environ.get("SDPS_TEST_THREADS") else {}

# Everything is slower under ASan; every wait in the tests scales with this.
SLOW = 3.0 if SANITIZE else 1.0
TIMEOUT = 10.0 * SLOW

DOMAIN = "demon.co.uk"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer", "FATAL: ThreadSanitizer")

# sysexits.h
EX_OK, EX_NOUSER, EX_TEMPFAIL, EX_CONFIG = 0, 67, 75, 78


def binary(name: str) -> Path:
    return BUILD_DIR / "bin" / name


def sanitizer_report(text: str) -> str | None:
    """The first sanitizer report line in a process's stderr, if any."""
    for line in text.splitlines():
        if any(marker in line for marker in SANITIZER_MARKERS):
            return line
    return None


# ---------------------------------------------------------------- messages

def crlf(data: bytes) -> bytes:
    """Every line end as CRLF (what RETR must send)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def message(subject: str = "test", body: str | bytes = "hello\n", *, sender: str = "alice@example.com",
            to: str = "fred@sample.demon.co.uk", headers: Sequence[str] = (), eol: bytes = b"\r\n") -> bytes:
    """A small RFC 5322 message, with `eol` line ends."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             f"Message-ID: <{subject.replace(' ', '.')}.{time.time_ns()}@example.com>", *headers]
    head = eol.join(line.encode() for line in lines) + eol + eol
    if isinstance(body, str):
        body = body.encode()
    return head + re.sub(rb"\r?\n", eol, body)


def returned(stored: bytes, sender: str = "alice@example.com") -> bytes:
    """What RETR sends (before dot-stuffing) for a message delivered with
    `-f sender`: a Return-Path line, then the message with CRLF line ends."""
    data = crlf(stored)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return b"Return-Path: <" + sender.encode() + b">\r\n" + data


def _sysctl(name: str) -> list[int]:
    return [int(field) for field in Path("/proc/sys/net", name).read_text().split()]


SERVER_BUFFERS = 2 * 1024 * 1024    # sdpsd's own buffers while it sends one reply, generously


def in_flight_bound(rcvbuf: int) -> int:
    """The most octets of one reply that can have left sdpsd towards a
    client that stopped reading, when the client set SO_RCVBUF to `rcvbuf`
    (the kernel doubles it and then never grows it): the client's receive
    buffer, sdpsd's socket send buffer at its largest (tcp_wmem's maximum
    when the kernel sizes it, twice wmem_max if the program set it) and
    sdpsd's own buffers. A reply longer than this is certainly not all sent
    while the client reads nothing, however fast the build; a shorter one
    may be, and then a test that stops the client "in the middle" of it
    tests nothing."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        received = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        probe.close()
    sent = max(_sysctl("ipv4/tcp_wmem")[2], 2 * _sysctl("core/wmem_max")[0])
    return received + sent + SERVER_BUFFERS


def lines_longer_than(octets: int) -> str:
    """Message body lines of about 1,000 octets, more than `octets` in all;
    each begins with a dot, so each is byte-stuffed on the way."""
    pad = "x" * 950
    return "".join(f".line {i:08d} of a long message {pad}\n" for i in range(octets // 950 + 1))


# ---------------------------------------------------------------- the client


class ProtocolError(AssertionError):
    pass


class Pop3:
    """A line-level POP3 client: send a line, read a status, read a
    multi-line body. Every read is bounded by `timeout` seconds."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, source: str | None = None,
                 timeout: float = TIMEOUT, rcvbuf: int | None = None, greeting: bool = True):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.timeout = timeout
        self.buffer = b""
        self.greeting = self.reply() if greeting else None

    # -- raw I/O

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, line: str | bytes) -> None:
        """One command line, CRLF added."""
        if isinstance(line, str):
            line = line.encode("latin-1")
        self.sock.sendall(line + b"\r\n")

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise ProtocolError(f"no reply within {self.timeout:.0f}s (buffered: {self.buffer[:200]!r})") from None
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def line_bytes(self) -> bytes:
        """One server line without its CRLF. Every server line must end in CRLF."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end + 1], self.buffer[end + 1:]
                if not line.endswith(b"\r\n"):
                    raise ProtocolError(f"server line not ended by CRLF: {line[:200]!r}")
                return line[:-2]
            if not self._fill():
                raise ProtocolError(f"connection closed by the server (pending: {self.buffer[:200]!r})")

    def line(self) -> str:
        return self.line_bytes().decode("latin-1")

    def reply(self) -> str:
        """A status line; it must start with +OK or -ERR."""
        text = self.line()
        if not (text == "+OK" or text.startswith("+OK ") or text == "-ERR" or text.startswith("-ERR ")):
            raise ProtocolError(f"not a POP3 status line: {text!r}")
        return text

    def body_lines(self) -> list[bytes]:
        """The rest of a multi-line reply, dot-stuffing undone, without the
        terminating '.' line."""
        out = []
        while True:
            raw = self.line_bytes()
            if raw == b".":
                return out
            out.append(raw[1:] if raw.startswith(b".") else raw)

    def raw_body_lines(self) -> list[bytes]:
        """The rest of a multi-line reply as sent (still dot-stuffed)."""
        out = []
        while True:
            raw = self.line_bytes()
            if raw == b".":
                return out
            out.append(raw)

    # -- commands

    def cmd(self, line: str | bytes) -> str:
        """Sends a command, returns its status line."""
        self.send(line)
        return self.reply()

    def ok(self, line: str | bytes) -> str:
        """Sends a command that must succeed; returns the status line."""
        got = self.cmd(line)
        if not got.startswith("+OK"):
            raise ProtocolError(f"{_show(line)} -> {got!r}, expected +OK")
        return got

    def err(self, line: str | bytes) -> str:
        """Sends a command that must fail; returns the status line."""
        got = self.cmd(line)
        if not got.startswith("-ERR"):
            # Do not leave a multi-line body in the buffer for later asserts.
            raise ProtocolError(f"{_show(line)} -> {got!r}, expected -ERR")
        return got

    def multi(self, line: str | bytes) -> list[bytes]:
        """A multi-line command that must succeed: its body lines, unstuffed."""
        self.ok(line)
        return self.body_lines()

    def text(self, line: str | bytes) -> list[str]:
        return [b.decode("latin-1") for b in self.multi(line)]

    def retr(self, n: int, command: str = "RETR") -> bytes:
        """The message as sent before dot-stuffing: CRLF lines, final CRLF."""
        return b"".join(b + b"\r\n" for b in self.multi(f"{command} {n}"))

    def top(self, n: int, k: int) -> bytes:
        return b"".join(b + b"\r\n" for b in self.multi(f"TOP {n} {k}"))

    def login(self, user: str, password: str) -> str:
        self.ok(f"USER {user}")
        return self.ok(f"PASS {password}")

    def stat(self) -> tuple[int, int]:
        m = re.fullmatch(r"\+OK (\d+) (\d+)", self.ok("STAT"))
        if not m:
            raise ProtocolError("STAT reply is not '+OK count octets'")
        return int(m.group(1)), int(m.group(2))

    def list(self) -> dict[int, int]:
        out = {}
        for line in self.text("LIST"):
            n, size = line.split(" ")
            out[int(n)] = int(size)
        return out

    def uidl(self) -> dict[int, str]:
        out = {}
        for line in self.text("UIDL"):
            n, uid = line.split(" ")
            out[int(n)] = uid
        return out

    def env(self, n: int) -> list[str]:
        return self.text(f"*ENV {n}")

    def quit(self) -> str:
        got = self.ok("QUIT")
        self.expect_closed()
        return got

    def expect_closed(self, within: float | None = None) -> None:
        """The server closes the connection (after any lines already sent)."""
        deadline = time.monotonic() + (within if within is not None else self.timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError("the server did not close the connection")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise ProtocolError("the server did not close the connection") from None
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.buffer += chunk
        self.sock.settimeout(self.timeout)

    def chat(self, script: str) -> list[str]:
        """Plays a transcript. `C: line` is sent; `S: text` expects the next
        status line to start with text; `S~ regex` expects it to match the
        regex (re.match). Returns the status lines read."""
        got = []
        for raw in textwrap.dedent(script).strip().splitlines():
            raw = raw.strip()
            if not raw:
                continue
            if raw == "C:":
                raw = "C: "              # an empty command line
            kind, rest = raw[:3], raw[3:]
            if kind == "C: ":
                self.send(rest)
            elif kind in ("S: ", "S~ "):
                status = self.reply()
                got.append(status)
                if kind == "S: " and not status.startswith(rest):
                    raise ProtocolError(f"expected {rest!r}..., got {status!r} (transcript so far: {got})")
                if kind == "S~ " and not re.match(rest, status):
                    raise ProtocolError(f"expected /{rest}/, got {status!r} (transcript so far: {got})")
            else:
                raise ValueError(f"bad transcript line {raw!r}")
        return got

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Drops the connection with a TCP reset (no QUIT)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def __enter__(self) -> "Pop3":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _show(line: str | bytes) -> str:
    text = line.decode("latin-1") if isinstance(line, bytes) else line
    return repr(text if len(text) < 80 else text[:77] + "...")


# ---------------------------------------------------------------- the server

def _thread_stacks(pid: int) -> str:
    """Every thread's stack of a process that will not stop (gdb, when the
    machine has it), for the failure message."""
    if not shutil.which("gdb"):
        return "(no gdb: no stacks)"
    try:
        out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 30"],
                             capture_output=True, text=True, timeout=120)
        return "stacks:\n" + (out.stdout[-12000:] if "#0" in out.stdout else out.stderr[-2000:])
    except (OSError, subprocess.SubprocessError) as e:
        return f"(gdb failed: {e})"


class Server:
    """One running sdpsd. Stopped by Site.close() whatever happens."""

    def __init__(self, site: "Site", listen: Sequence[str], extra_args: Sequence[str], env: dict | None,
                 *, listen_tls: Sequence[str] = (), preexec=None, program: Path | None = None):
        """`program`: another sdpsd than the build tree's (a benchmark's
        baseline), with the modules found beside it."""
        self.site = site
        self.log_path = site.root / f"sdpsd.{len(site.servers)}.log"
        self.log_file = open(self.log_path, "wb")
        args = [str(program or binary("sdpsd")), "-c", str(site.config)]
        for address in listen:
            args += ["--listen", address]
        for address in listen_tls:
            args += ["--listen-tls", address]
        args += list(extra_args)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                        preexec_fn=preexec)
        self.pid = self.process.pid
        self.returncode: int | None = None
        self.endpoints: list[tuple[str, int]] = []
        site.servers.append(self)
        self._wait_listening(len(listen) + len(listen_tls))

    def _wait_listening(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = re.findall(r"listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)", self.log())
            if len(found) >= count:
                self.endpoints = [(host.strip("[]"), int(port)) for host, port in found[:count]]
                return
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                raise AssertionError(f"sdpsd exited with {self.process.returncode} at start-up:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"sdpsd did not report 'listening on' within {TIMEOUT:.0f}s:\n{self.log()}")

    @property
    def port(self) -> int:
        return self.endpoints[0][1]

    @property
    def host(self) -> str:
        return self.endpoints[0][0]

    def connect(self, **kwargs) -> Pop3:
        host = kwargs.pop("host", self.host)
        port = kwargs.pop("port", self.port)
        return Pop3(port, host, **kwargs)

    def session(self, user: str, password: str, **kwargs) -> Pop3:
        """A connection logged in as `user`."""
        c = self.connect(**kwargs)
        c.login(user, password)
        return c

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, signo: int) -> None:
        if self.alive():
            os.kill(self.pid, signo)

    def pause(self) -> None:
        """SIGSTOP, returning once every thread of sdpsd has stopped (kill()
        returns before a thread running on another core has)."""
        self.send_signal(signal.SIGSTOP)

        def all_stopped():
            for stat in Path(f"/proc/{self.pid}/task").glob("*/stat"):
                try:
                    state = stat.read_text().rsplit(")", 1)[1].split()[0]
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if state not in ("T", "t"):
                    return False
            return True
        wait_until(all_stopped, interval=0.001, what="sdpsd to stop")

    def connection_state(self, client_port: int) -> str | None:
        """The kernel's state of sdpsd's end of a connection from
        127.0.0.1:client_port (as /proc/net/tcp gives it: "01" established,
        "08" close-wait, i.e. the client's FIN is in), or None once there is
        none (closed, e.g. by the client's reset)."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == self.port and int(remote[1], 16) == client_port:
                return fields[3]
        return None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, signo: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Stops the server (SIGTERM by default) and returns its exit status.
        Fails if it does not stop in time or reported a sanitizer error."""
        if self.returncode is None:
            if self.alive():
                os.kill(self.pid, signo)
            try:
                self.returncode = self.process.wait(timeout or TIMEOUT)
            except subprocess.TimeoutExpired:
                stacks = _thread_stacks(self.pid)
                self.process.kill()
                self.process.wait()
                self.returncode = self.process.returncode
                self.log_file.close()
                raise AssertionError(f"sdpsd ({self.log_path.name}) did not stop within {timeout or TIMEOUT:.0f}s "
                                     f"of signal {signo}; its log ends:\n{self.log()[-3000:]}\n{stacks}")
            self.log_file.close()
            self.check_sanitizer()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL, as if the process died."""
        if self.returncode is None:
            self.process.kill()
            self.process.wait()
            self.returncode = self.process.returncode
            self.log_file.close()

    def check_sanitizer(self) -> None:
        if SANITIZE:
            report = sanitizer_report(self.log())
            if report:
                raise AssertionError(f"sanitizer report in sdpsd's stderr: {report}\n{self.log()[-4000:]}")


# ---------------------------------------------------------------- the site

def shipped_chain() -> list[dict[str, str]]:
    """The module chain of the shipped config/sdps.yaml: one dict of scalar
    settings per entry, in order (the file's layout is simple YAML)."""
    entries: list[dict[str, str]] = []
    in_modules = False
    for raw in (SOURCE_DIR / "config" / "sdps.yaml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith(" ") and not line.startswith("-"):
            in_modules = line.startswith("modules:")
            continue
        if not in_modules:
            continue
        m = re.match(r"\s*(-\s+)?([A-Za-z_]+):\s*(.*)$", line)
        if not m:
            raise ValueError(f"cannot read config/sdps.yaml line {raw!r}")
        if m.group(1):
            entries.append({})
        entries[-1][m.group(2)] = m.group(3).strip()
    if not entries:
        raise ValueError("config/sdps.yaml has no modules")
    return entries


def slow_chain(timeout: str, delay: str) -> list[dict[str, str]]:
    """The shipped chain with tests/fixtures' fixture_slow module (each call
    takes `delay`, under a `timeout` limit) just before `commands`."""
    chain = shipped_chain()
    at = next(i for i, e in enumerate(chain) if e["module"] == "commands")
    chain.insert(at, {"module": "fixture_slow", "timeout": timeout, "delay": delay})
    return chain


class Site:
    """A temporary installation: config file, spools, host database.

    Layout (mirrors the shipped one, so relative paths are exercised):
        ROOT/etc/sdps.yaml   hosts: ../var/hosts   punts: ../var/spool/<punt>
    """

    def __init__(self, *, idle_timeout: str = "30m", fail_delay: str | None = "200ms",
                 punts: Sequence[str] = ("finchley", "docklands"), module_settings: dict | None = None,
                 top: dict | None = None, chain: list[dict[str, str]] | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="sdps-bb-")
        self.root = Path(self._tmp.name)
        (self.root / "etc").mkdir()
        (self.root / "var" / "spool").mkdir(parents=True)
        self.config = self.root / "etc" / "sdps.yaml"
        self.punts = list(punts)
        self.servers: list[Server] = []
        self.immutable: list[Path] = []
        self.write_config(idle_timeout=idle_timeout, fail_delay=fail_delay, punts=punts,
                          module_settings=module_settings, top=top, chain=chain)

    def write_config(self, *, idle_timeout: str = "30m", fail_delay: str | None = "200ms",
                     punts: Sequence[str] | dict = ("finchley", "docklands"), module_settings: dict | None = None,
                     top: dict | None = None, chain: list[dict[str, str]] | None = None) -> None:
        """Writes etc/sdps.yaml. `punts` maps punt name -> path (relative to
        etc/) or lists names (spool under ../var/spool/NAME).
        `module_settings` adds settings to chain entries by instance name."""
        if not isinstance(punts, dict):
            punts = {name: f"../var/spool/{name}" for name in punts}
        chain = [dict(e) for e in (chain if chain is not None else shipped_chain())]
        extra = {name: dict(values) for name, values in (module_settings or {}).items()}
        if fail_delay is not None:
            extra.setdefault("auth", {}).setdefault("fail_delay", fail_delay)
        settings = {"listen": "[127.0.0.1:0]", "customer_domain": DOMAIN, "idle_timeout": idle_timeout,
                    "password_cost": "min", "hosts": "../var/hosts", **TEST_THREADS, **(top or {})}
        lines = ["# written by tests/blackbox/sdps_harness.py"]
        lines += [f"{key}: {value}" for key, value in settings.items()]
        lines.append("punts:")
        lines += [f"  {name}: {path}" for name, path in punts.items()]
        lines.append("modules:")
        for entry in chain:
            instance = entry.get("name", entry["module"])
            settings = {**entry, **extra.get(instance, {})}
            first = True
            for key, value in settings.items():
                lines.append(f"  {'- ' if first else '  '}{key}: {value}")
                first = False
        self.config.write_text("\n".join(lines) + "\n")

    # -- admin tool

    def sdps(self, *args: str, input: bytes | str = b"", expect: int | None = 0,
             timeout: float | None = None) -> subprocess.CompletedProcess:
        """Runs `sdps -c CONFIG args...`; checks the exit status unless
        `expect` is None."""
        if isinstance(input, str):
            input = input.encode()
        result = subprocess.run([str(binary("sdps")), "-c", str(self.config), *args], input=input,
                                capture_output=True, timeout=timeout or 6 * TIMEOUT)
        stderr = result.stderr.decode("utf-8", "replace")
        if SANITIZE:
            report = sanitizer_report(stderr)
            assert report is None, f"sanitizer report from sdps {' '.join(args)}: {report}\n{stderr}"
        if expect is not None:
            assert result.returncode == expect, (
                f"sdps {' '.join(args[:4])} exited {result.returncode}, expected {expect}\n"
                f"stdout: {result.stdout[:2000]!r}\nstderr: {stderr[:2000]}")
        return result

    def add_host(self, host: str, *, pop3: str | None = None, dialup: str | None = None,
                 dialup_ips: Iterable[str] = ()) -> None:
        args = ["host", "add", host]
        for ip in dialup_ips:
            args += ["--dialup-ip", ip]
        self.sdps(*args)
        if pop3 is not None:
            self.set_password(host, "--pop3", pop3)
        if dialup is not None:
            self.set_password(host, "--dialup", dialup)

    def set_password(self, host: str, which: str, password: str) -> None:
        self.sdps("host", "passwd", host, which, input=password + "\n")

    def deliver(self, *recipients: str, data: bytes, sender: str = "alice@example.com",
                punt: str | None = None, expect: int | None = 0) -> subprocess.CompletedProcess:
        args = ["deliver"]
        if punt:
            args += ["--punt", punt]
        args += ["-f", sender, *recipients]
        return self.sdps(*args, input=data, expect=expect)

    def spool_list(self, host: str) -> str:
        return self.sdps("spool", "list", host).stdout.decode("utf-8", "replace")

    # -- the spool on disk (only what DESIGN.md fixes: a message's file
    #    name begins with its UIDL, under the punt's folder)

    def punt_dir(self, punt: str) -> Path:
        return self.root / "var" / "spool" / punt

    def message_files(self, uidl: str) -> list[Path]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root / "var" / "spool"):
            for name in files:
                if name == uidl or (name.startswith(uidl) and not name[len(uidl)].isalnum()):
                    found.append(Path(dirpath) / name)
        return found

    def remove_message(self, uidl: str) -> None:
        """Removes a message by hand, as SMTP delivery would."""
        files = self.message_files(uidl)
        assert files, f"no spool file begins with UIDL {uidl}"
        for path in files:
            path.unlink()

    def make_immutable(self, path: Path) -> bool:
        """chattr +i (even root cannot unlink inside); False if unsupported."""
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if result.returncode != 0:
            return False
        self.immutable.append(path)
        return True

    def make_mutable(self) -> None:
        while self.immutable:
            subprocess.run(["chattr", "-i", str(self.immutable.pop())], capture_output=True)

    # -- servers

    def start(self, listen: Sequence[str] = ("127.0.0.1:0",), extra_args: Sequence[str] = (),
              env: dict | None = None, preexec=None) -> Server:
        """`preexec` runs in the child before sdpsd starts (resource limits)."""
        return Server(self, listen, extra_args, env, preexec=preexec)

    def close(self) -> None:
        errors = []
        for server in self.servers:
            try:
                server.stop()
            except AssertionError as e:
                errors.append(str(e))
        self.make_mutable()
        if os.environ.get("SDPS_KEEP_SITES"):  # kept to read the servers' logs after a failure
            self._tmp._finalizer.detach()
        else:
            self._tmp.cleanup()
        if errors:
            raise AssertionError("\n".join(errors))

    def __enter__(self) -> "Site":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until(predicate, timeout: float = TIMEOUT, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def login_when_possible(server, user: str, password: str, **kwargs):
    """A session logged in as `user`, retrying while the login is refused
    (e.g. the maildrop's lock not yet released); kwargs go to connect()."""
    def attempt():
        c = server.connect(**kwargs)
        c.ok(f"USER {user}")
        if c.cmd(f"PASS {password}").startswith("+OK"):
            return c
        c.close()
        return None
    return wait_until(attempt, 5 * SLOW, 0.1, f"a login as {user}")


def timed_login(server, user: str, password: str, **kwargs) -> float:
    """Seconds from connecting to logged in (the session then QUITs);
    kwargs go to session()."""
    started = time.monotonic()
    c = server.session(user, password, **kwargs)
    took = time.monotonic() - started
    c.quit()
    return took


@contextlib.contextmanager
def attackers(server, attack, count: int = 100, timeout: float = 120):
    """`count` connections, each worked by attack(connection, stop) in a
    daemon thread while the block runs; then `stop` is set, the
    connections aborted and the threads joined."""
    stop = threading.Event()
    conns = [server.connect(timeout=timeout) for _ in range(count)]
    threads = [threading.Thread(target=attack, args=(c, stop), daemon=True) for c in conns]
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        for c in conns:
            c.abort()
        for t in threads:
            t.join(5)
