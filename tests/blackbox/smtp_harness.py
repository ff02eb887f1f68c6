"""SMTP-side helpers for the black-box tests: a real SMTP receiver
(Debian's python3-aiosmtpd) on 127.0.0.1:<ephemeral>, and `sdps lmtp` run
as a process."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import threading
import time

from aiosmtpd.smtp import SMTP

from sdps_harness import SANITIZE, TIMEOUT, binary, sanitizer_report


class Receiver:
    """An aiosmtpd server in its own thread. `envelopes` holds
    (mail_from, rcpt_tos, bytes) of every accepted message; `rcpt_reply`
    and `data_reply` (when set) refuse instead; `data_delay` seconds pass
    before the reply to DATA (with `data_started` set at its start)."""

    def __init__(self, *, rcpt_reply: str | None = None, data_reply: str | None = None, data_delay: float = 0):
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.data_delay = data_delay
        self.data_started = threading.Event()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: SMTP(self, hostname="receiver.test", decode_data=False), "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(TIMEOUT), "aiosmtpd did not start"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_started.set()
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Message accepted"

    def close(self) -> None:
        def stop():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(TIMEOUT)

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lmtp:
    """`sdps -c CONFIG lmtp --listen 127.0.0.1:0 EXTRA...` until stop().
    `listen=None` leaves --listen out (socket activation: `pass_socket`, a
    listening socket, becomes descriptor 3 with LISTEN_FDS=1 and
    LISTEN_PID set to the process's own PID, as systemd does). Ready once
    its log says where it listens; `port` is the TCP port when there is one."""

    def __init__(self, site, *extra: str, listen: str | None = "127.0.0.1:0", pass_socket=None):
        self.log_path = site.root / f"lmtp.{time.monotonic_ns()}.log"
        self.log_file = open(self.log_path, "wb")
        command = [str(binary("sdps")), "-c", str(site.config), "lmtp"]
        if listen is not None:
            command += ["--listen", listen]
        command += list(extra)
        kwargs = {}
        if pass_socket is not None:
            fd = pass_socket.fileno()

            def put_on_fd3():
                os.dup2(fd, 3)
            # sh learns its PID ($$) and execs sdps in place: LISTEN_PID is sdps's own.
            command = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=lmtp exec "$@"', "sh", *command]
            kwargs = {"preexec_fn": put_on_fd3, "pass_fds": (fd, 3)}  # 3: kept after preexec_fn
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        deadline = time.monotonic() + TIMEOUT
        self.port = None
        while True:
            if "listening on" in self.log():  # connections wait in the backlog until it accepts
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log())
                self.port = int(m.group(1)) if m else None
                break
            assert self.process.poll() is None, f"sdps lmtp exited at start-up:\n{self.log()}"
            assert time.monotonic() < deadline, f"sdps lmtp did not listen:\n{self.log()}"
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        if SANITIZE:
            report = sanitizer_report(self.log())
            assert report is None, f"sanitizer report from sdps lmtp: {report}"
        return self.process.returncode


class LineClient:
    """A line-level SMTP/LMTP client: send lines, read replies."""

    def __init__(self, port: int | None = None, *, path: str | None = None):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                assert chunk, f"connection closed (after {lines})"
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            assert line.endswith(b"\r"), f"reply line not ended by CRLF: {line!r}"
            text = line[:-1].decode()
            lines.append(text[4:])
            if len(text) < 4 or text[3] == " ":
                return int(text[:3]), lines

    def cmd(self, line: str) -> tuple[int, list[str]]:
        self.send(line + "\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()
