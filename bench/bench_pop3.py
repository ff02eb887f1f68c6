"""What maildrop.py and frontend_vs_embedded.py share: pointing
tests/blackbox's harness at a build tree, and a minimal POP3 client."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_build_tree(build_dir: str) -> None:
    """Makes tests/blackbox/ importable, its harness running `build_dir`'s
    binaries."""
    os.environ["SDPS_BUILD_DIR"] = str(Path(build_dir).resolve())
    os.environ.setdefault("SDPS_SOURCE_DIR", str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "blackbox"))
    sys.dont_write_bytecode = True


class Client:
    """A minimal POP3 client: replies read straight off the socket."""

    TIMEOUT = 30.0
    RECV = 1 << 20          # octets asked of one recv() for a status line

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=self.TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.line()

    def fill(self, size: int = 0) -> None:
        """Appends what one recv() brings to self.buf; raises at EOF."""
        chunk = self.sock.recv(size or self.RECV)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                out = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return out
            self.fill()

    def ok(self, command: str) -> bytes:
        self.sock.sendall(command.encode() + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"{command.split()[0]}: {reply!r}")
        return reply
