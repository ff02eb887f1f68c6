"""Black-box harness for the front end / back end split (issue 4): a Site
whose start() runs a front end over one back end per punt, instead of the
embedded default.

    fe = FrontEndSite(Site())           # or the `site` fixture below
    fe.add_host("sample", pop3="pw")    # everything else is the Site's
    server = fe.start()                 # back ends (once), then a front end
    fe.backends["finchley"].kill()      # faults: kill, SIGSTOP, restart
    fe.relay("finchley")                # before start(): that punt's links through a Relay

The back ends run the shipped config/punt-<punt>.yaml (listening on an
ephemeral port, serving the site's spools); a front end runs the site's own
etc/sdps.yaml with every local_spool entry turned into a remote_spool entry
for that punt's back end, so every setting a test gives the Site (idle
timeout, auth's fail delay, top-level keys) holds for the front end too.
A client of fe.start() must not be able to tell it from site.start().

The `site` fixture here overrides conftest's: a test module that imports
it (and the tests of another module) runs those tests through a front end.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

try:
    import pytest
except ImportError:  # bench/ uses this module outside pytest
    pytest = None

from sdps_harness import SLOW, SOURCE_DIR, TIMEOUT, Pop3, Server, Site, binary, in_flight_bound

SECRET = "../var/frontend.secret"       # as the shipped configs say, relative to etc/


class _View:
    """What Server needs of a Site, with another config file."""

    def __init__(self, site: Site, config: Path):
        self.root = site.root
        self.servers = site.servers
        self.config = config


def login_commands(log: str) -> list[str]:
    """The commands a back end's debug log shows (`session N: command
    VERB`), in order, of the sessions that logged in (USER): a front end's
    background probe has a connection of its own that never does."""
    seen = re.findall(r"session (\d+): command (\S+)", log)
    logins = {number for number, verb in seen if verb == "USER"}
    return [verb for number, verb in seen if number in logins]


def write_secret(path: Path, data: bytes | None = None, mode: int = 0o600) -> None:
    """A secret file created with `mode` from the start (never briefly public)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data if data is not None else os.urandom(32))
    os.chmod(path, mode)


def substitute(text: str, pattern: str, replacement: str, what: str) -> str:
    """re.sub that insists on matching: a shipped config whose layout
    changed must fail the test, not silently test something else."""
    out, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert n > 0, f"{what}: no line matches /{pattern}/"
    return out


def shipped(name: str) -> str:
    return (SOURCE_DIR / "config" / name).read_text()


# ---------------------------------------------------------------- a relay that can hold a link

# What a held link passes of a reply: its status line and some body. Twice
# the front end's flush threshold (64 KiB of output, session_engine's
# flush_threshold), so that the client has been sent the status line and
# a first piece before the hold, however the front end's reads fall (at
# 64 KiB it depended on a few octets of status line and was flaky).
HOLD_AFTER = 128 * 1024
RELAY_CHUNK = 64 * 1024         # one read from either side
RELAY_RCVBUF = 64 * 1024        # the relay's receive buffer towards the back end (fixed, not autotuned)


def held_link_bound() -> int:
    """The most octets of one reply a back end can have written once a
    RelayLink holds it (hold_after(HOLD_AFTER)): what the link passed on (a
    read already under way when it was armed included) and what can be in
    flight towards a client that reads nothing (the relay, with its fixed
    receive buffer; see in_flight_bound). A message longer than this cannot
    all have left a back end that is stopped while its link holds, however
    fast the build: it is stopped in the middle of the message for certain."""
    return HOLD_AFTER + RELAY_CHUNK + in_flight_bound(RELAY_RCVBUF)


class RelayLink:
    """One front-end connection through a Relay: its own socket to the back
    end, a thread for each direction."""

    def __init__(self, front: socket.socket, back: socket.socket):
        self.front, self.back = front, back
        self._cond = threading.Condition()
        self._budget: int | None = None     # octets still to pass on before holding; None: not held
        self.sent = bytearray()             # the front end's first octets (up to 4 KiB)
        self._closed = False
        self._running = 2
        self._threads = [threading.Thread(target=self._pump, args=(front, back, False), daemon=True),
                         threading.Thread(target=self._pump, args=(back, front, True), daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def hold_after(self, octets: int) -> None:
        """From now on, pass at most `octets` more of the back end's output
        on (plus a read already under way), then read nothing more from the
        back end until release(): its output piles up in its own socket."""
        with self._cond:
            self._budget = octets

    def wait_held(self, timeout: float = TIMEOUT) -> None:
        """Until the link has passed its octets on and holds the rest."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._holding(), timeout):
                raise AssertionError(f"the back end did not send {HOLD_AFTER} octets within {timeout:.0f}s")
            if not self._holding():
                raise AssertionError("the link closed before it held the back end's output")

    def release(self) -> None:
        """Pass everything on again, what piled up first."""
        with self._cond:
            self._budget = None
            self._cond.notify_all()

    def carried_login(self) -> bool:
        """Whether the front end logged in on this link (not the background
        probe's link, which never does)."""
        with self._cond:
            return bytes(self.sent).startswith(b"USER ") or b"\r\nUSER " in self.sent

    def _holding(self) -> bool:
        return self._budget is not None and self._budget <= 0

    def _pump(self, src: socket.socket, dst: socket.socket, from_back: bool) -> None:
        try:
            while True:
                want = RELAY_CHUNK
                if from_back:
                    with self._cond:
                        self._cond.wait_for(lambda: self._closed or not self._holding())
                        if self._closed:
                            return
                        if self._budget is not None:
                            want = min(want, self._budget)
                data = src.recv(want)
                if not data:
                    with self._cond:
                        held = self._holding()
                    if held:
                        # The front end has gone: what the back end wrote
                        # will never be read (it gets a reset, as it would
                        # from a front end that closed with unread data).
                        self.abort()
                    else:
                        dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                if not from_back and len(self.sent) < 4096:
                    with self._cond:
                        self.sent += data[:4096 - len(self.sent)]
                if from_back:
                    with self._cond:
                        if self._budget is not None:
                            self._budget -= len(data)
                            self._cond.notify_all()
        except OSError:
            self.abort()
        finally:
            with self._cond:
                self._running -= 1
                done = self._running == 0
            if done:
                self.front.close()
                self.back.close()

    def abort(self) -> None:
        """Resets both connections."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for sock in (self.front, self.back):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


class Relay:
    """A TCP relay on 127.0.0.1 in front of a back end: every octet passes
    both ways unchanged (the secret's proofs do not cover addresses), one
    RelayLink per front-end connection, in `links` in the order they came.
    A test holds a link to know exactly where a back end's reply stood when
    it stopped the back end, whatever the build's speed."""

    def __init__(self, upstream: Callable[[], int]):
        self.upstream = upstream            # the back end's port, at each connection
        self.links: list[RelayLink] = []
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                front, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            front.settimeout(None)
            back = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                back.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_RCVBUF)
                back.connect(("127.0.0.1", self.upstream()))
            except OSError:
                front.close()                # the front end sees the link end at once, as with no back end
                back.close()
                continue
            with self._lock:
                if self._closed:
                    front.close()
                    back.close()
                    return
                link = RelayLink(front, back)
                self.links.append(link)     # before a single octet passes
            link.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links = list(self.links)
        self._thread.join(TIMEOUT)
        self._listener.close()
        for link in links:
            link.release()
            link.abort()
        for link in links:
            link.join(TIMEOUT)


class FrontEndSite:
    """A Site served through a front end; see the module docstring."""

    def __init__(self, site: Site, *, read_timeout: str | None = None, connect_timeout: str | None = None,
                 keepalive: str | None = None, backend_top: dict | None = None,
                 backend_tls: dict[str, Path] | None = None, link: dict | None = None):
        self.site = site
        self.backend_top = dict(backend_top or {})   # top-level settings for the back ends' configs
        # punt -> a folder with cert.pem and key.pem (scripts/make-test-cert):
        # that back end serves implicit TLS only, with that pair.
        self.backend_tls = dict(backend_tls or {})
        self.link = dict(link or {})                 # more settings for every remote_spool entry
        self.read_timeout = read_timeout or f"{int(10 * SLOW)}s"
        self.connect_timeout = connect_timeout or f"{int(5 * SLOW)}s"
        self.keepalive = keepalive
        self.backends: dict[str, Server] = {}
        self.ports: dict[str, int] = {}
        self.frontends: list[Server] = []
        self.embedded: list[Server] = []
        self.ours: list[Server] = []        # every sdpsd started through this object
        self.paused: list[Server] = []
        self.relays: dict[str, Relay] = {}  # punt -> the relay the front ends reach its back end through
        self.secret = site.root / "var" / "frontend.secret"
        write_secret(self.secret)

    def __getattr__(self, name):
        # Everything but start() is the Site's: deliver, add_host, spools...
        return getattr(self.site, name)

    # -- configs

    def _site_section(self, key: str) -> list[str]:
        """The site config's top-level `key:` mapping, as its lines."""
        lines = self.site.config.read_text().splitlines()
        out, inside = [], False
        for line in lines:
            if line.startswith(f"{key}:"):
                inside = True
                out.append(line)
                continue
            if inside:
                if line.startswith("  ") and not line.startswith("  -"):
                    out.append(line)
                else:
                    break
        return out

    def backend_config(self, punt: str, listen: str = "127.0.0.1:0", *, secret: str | None = None,
                       name: str | None = None) -> Path:
        """The shipped config/punt-<punt>.yaml, listening on `listen`,
        serving the site's spools (its `punts:` mapping), with
        `backend_top` settings and optionally another secret file."""
        what = f"punt-{punt}.yaml"
        text = shipped(what)
        text = substitute(text, r"^listen: .*$", f"listen: [{listen}]", what)
        # A control socket of its own: two back ends of one punt may run at once.
        text = substitute(text, r"^control_socket: \S+", f"control_socket: ../var/run/{name or 'punt-' + punt}.sock", what)
        top = dict(self.backend_top)
        if punt in self.backend_tls:
            pki = self.backend_tls[punt]
            top["tls"] = f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}}}"
        for key, value in top.items():
            if re.search(rf"^{key}:", text, flags=re.MULTILINE):
                text = substitute(text, rf"^{key}:.*$", f"{key}: {value}", what)
            else:
                text = substitute(text, r"^(listen: .*)$", rf"\1\n{key}: {value}", what)
        if secret is not None:
            text = substitute(text, r"^(\s+secret:) \S+", rf"\1 {secret}", what)
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("punts:"))
        end = start + 1
        while end < len(lines) and lines[end].startswith("  "):
            end += 1
        lines[start:end] = self._site_section("punts")
        path = self.site.root / "etc" / f"{name or 'punt-' + punt}.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def frontend_config(self, name: str = "frontend", *, secret: str = SECRET, ports: dict | None = None) -> Path:
        """The site's etc/sdps.yaml with each local_spool entry replaced by a
        remote_spool entry for that punt's back end (or its relay)."""
        ports = ports or {**self.ports, **{punt: relay.port for punt, relay in self.relays.items()}}
        out: list[str] = []
        entry: list[str] | None = None

        def flush():
            if entry is None:
                return
            fields = dict(re.match(r"\s*(?:-\s+)?(\w+):\s*(.*)$", line).groups() for line in entry)
            if fields.get("module") != "local_spool":
                out.extend(entry)
                return
            extra = set(fields) - {"module", "name"}
            if extra:
                raise NotImplementedError(f"local_spool settings {sorted(extra)} have no front-end equivalent")
            punt = fields.get("name", "local_spool")
            out.extend([
                "  - module: remote_spool",
                f"    name: {punt}",
                f"    backend: 127.0.0.1:{ports[punt]}",
                f"    secret: {secret}",
                f"    connect_timeout: {self.connect_timeout}",
                f"    read_timeout: {self.read_timeout}",
            ])
            if self.keepalive is not None:
                out.append(f"    keepalive: {self.keepalive}")
            out.extend(f"    {key}: {value}" for key, value in self.link.items())

        in_modules = False
        for line in self.site.config.read_text().splitlines():
            if not in_modules:
                out.append(line)
                in_modules = line.startswith("modules:")
                continue
            if line.startswith("  - "):
                flush()
                entry = [line]
            elif line.startswith("    ") and entry is not None:
                entry.append(line)
            else:
                flush()
                entry = None
                in_modules = False
                out.append(line)
        flush()
        path = self.site.root / "etc" / f"{name}.yaml"
        path.write_text("\n".join(out) + "\n")
        return path

    # -- processes

    def _server(self, config: Path, listen: Sequence[str], extra_args: Sequence[str] = (),
                env: dict | None = None, listen_tls: Sequence[str] = (), program: Path | None = None) -> Server:
        """Starts sdpsd on `config`; it counts as ours even if it fails to start."""
        known = len(self.site.servers)
        try:
            server = Server(_View(self.site, config), listen, extra_args, env, listen_tls=listen_tls,
                            program=program)
        finally:
            self.ours.extend(self.site.servers[known:])
        return server

    def start_backend(self, punt: str) -> Server:
        """Starts (or restarts, on the same port) the back end of `punt`."""
        port = self.ports.get(punt, 0)
        config = self.backend_config(punt)
        if punt in self.backend_tls:
            server = self._server(config, [], listen_tls=[f"127.0.0.1:{port}"])
        else:
            server = self._server(config, [f"127.0.0.1:{port}"])
        self.backends[punt] = server
        self.ports[punt] = server.port
        return server

    def start_backends(self) -> None:
        for punt in self.site.punts:
            if punt not in self.backends or not self.backends[punt].alive():
                self.start_backend(punt)

    def start(self, listen: Sequence[str] = ("127.0.0.1:0",), extra_args: Sequence[str] = (),
              env: dict | None = None, *, name: str = "frontend", secret: str = SECRET,
              program: Path | None = None) -> Server:
        """A front end (the back ends first, if they are not running);
        `program`: another sdpsd than the build tree's (Server)."""
        self.start_backends()
        config = self.frontend_config(name, secret=secret)
        server = self._server(config, listen, extra_args, env, program=program)
        self.frontends.append(server)
        return server

    def start_embedded(self, listen: Sequence[str] = ("127.0.0.1:0",)) -> Server:
        """The embedded default on the same site, for side-by-side checks."""
        known = len(self.site.servers)
        try:
            server = self.site.start(listen)
        finally:
            self.ours.extend(self.site.servers[known:])
        self.embedded.append(server)
        return server

    def relay(self, punt: str) -> Relay:
        """Front ends started after this reach `punt`'s back end through a
        Relay (closed with the site)."""
        if punt not in self.relays:
            self.relays[punt] = Relay(lambda: self.ports[punt])
        return self.relays[punt]

    def retr_held(self, server: Server, user: str, password: str, *, punt: str,
                  timeout: float) -> tuple[Pop3, RelayLink]:
        """A session through `server` (a front end started after
        relay(punt)) that has sent RETR 1, for a message on `punt`, and read
        its +OK and first line, while the session's link to that back end
        holds the rest of the reply after HOLD_AFTER octets (see
        held_link_bound()). Returns the client and the held link: stop the
        back end, then release() the link, and the front end gets exactly
        what the stopped back end had written."""
        relay = self.relays[punt]
        before = len(relay.links)
        c = server.connect(timeout=timeout)
        c.login(user, password)
        # The front end's background probe has a link of its own (it never
        # logs in): only the links that carried a login count.
        opened = [link for link in relay.links[before:] if link.carried_login()]
        assert len(opened) == 1, f"the login opened {len(opened)} links to {punt}"
        link = opened[0]
        link.hold_after(HOLD_AFTER)
        c.send("RETR 1")
        assert c.reply().startswith("+OK")
        c.line_bytes()
        link.wait_held(timeout)
        return c, link

    def run(self, config: Path, listen: Sequence[str] = ("127.0.0.1:0",)) -> Server:
        """sdpsd with any config file; stopped with the site."""
        return self._server(config, listen)

    @contextmanager
    def stopped(self, server: Server):
        """Stopped (SIGSTOP, every thread) for the duration of the block;
        SIGCONT whatever happens."""
        self.paused.append(server)
        server.pause()
        try:
            yield server
        finally:
            self.cont(server)

    def cont(self, server: Server) -> None:
        if server in self.paused:
            self.paused.remove(server)
        server.send_signal(signal.SIGCONT)

    def close(self) -> None:
        for server in list(self.paused):
            self.cont(server)
        for relay in self.relays.values():
            relay.close()
        self.site.close()


if pytest is not None:
    @pytest.fixture
    def site(request):
        """conftest's `site`, served through a front end."""
        missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
        assert not missing, f"{', '.join(missing)} not built in {binary('').parent} (set SDPS_BUILD_DIR)"
        marker = request.node.get_closest_marker("site_options")
        fe = FrontEndSite(Site(**(marker.kwargs if marker else {})))
        yield fe
        # Every sdpsd the test talked to was one of ours: no case slipped past
        # the front end by starting the embedded default some other way.
        others = [s for s in fe.site.servers if s not in fe.ours]
        fe.close()
        assert not others, "a server was started without the front end"
        assert fe.frontends or not fe.site.servers, "the test ran no front end"

