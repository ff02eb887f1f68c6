"""Black-box harness for the front end / back end split (issue 4): a Site
whose start() runs a front end over one back end per punt, instead of the
embedded default.

    fe = FrontEndSite(Site())           # or the `site` fixture below
    fe.add_host("sample", pop3="pw")    # everything else is the Site's
    server = fe.start()                 # back ends (once), then a front end
    fe.backends["finchley"].kill()      # faults: kill, SIGSTOP, restart

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
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

try:
    import pytest
except ImportError:  # bench/ uses this module outside pytest
    pytest = None

from sdps_harness import SLOW, SOURCE_DIR, Server, Site, binary

SECRET = "../var/frontend.secret"       # as the shipped configs say, relative to etc/


class _View:
    """What Server needs of a Site, with another config file."""

    def __init__(self, site: Site, config: Path):
        self.root = site.root
        self.servers = site.servers
        self.config = config


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
        remote_spool entry for that punt's back end."""
        ports = ports or self.ports
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
                env: dict | None = None, listen_tls: Sequence[str] = ()) -> Server:
        """Starts sdpsd on `config`; it counts as ours even if it fails to start."""
        known = len(self.site.servers)
        try:
            server = Server(_View(self.site, config), listen, extra_args, env, listen_tls=listen_tls)
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
              env: dict | None = None, *, name: str = "frontend", secret: str = SECRET) -> Server:
        """A front end (the back ends first, if they are not running)."""
        self.start_backends()
        config = self.frontend_config(name, secret=secret)
        server = self._server(config, listen, extra_args, env)
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

    def run(self, config: Path, listen: Sequence[str] = ("127.0.0.1:0",)) -> Server:
        """sdpsd with any config file; stopped with the site."""
        return self._server(config, listen)

    @contextmanager
    def stopped(self, server: Server):
        """SIGSTOP for the duration of the block; SIGCONT whatever happens."""
        server.send_signal(signal.SIGSTOP)
        self.paused.append(server)
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

