"""End to end behind Debian's haproxy (issue 9): haproxy with
`send-proxy-v2` on loopback in front of two front ends over two back ends
(frontend_harness.py). A fetchmail SDPS session works through it, the
dialup rule sees the real client's address, and haproxy's health checks
(PROXY v2 LOCAL, then a POP3 greeting and QUIT) keep both front ends up.

Addresses: fetchmail and the test's own client connect to haproxy from
127.0.0.1; haproxy connects to the front ends from 127.0.0.3 (`source`),
the only address in their proxy_protocol_from. The host `sample` takes
its dialup password from 127.0.0.1 only, `balanced` from 127.0.0.3 only.
"""

import shutil
import socket
import subprocess
import time

import pytest

from conftest import DIALUP_PW, POP_PW
from frontend_harness import FrontEndSite
from sdps_harness import SLOW, TIMEOUT, Pop3, message, wait_until
from test_clients import CLIENT_TIMEOUT, show

CLIENT_IP = "127.0.0.1"
BALANCER_IP = "127.0.0.3"

pytestmark = pytest.mark.site_options(top={"proxy_protocol_from": f"[{BALANCER_IP}/32]", "log_level": "debug"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def balanced(site):
    """haproxy on loopback over two front ends; yields (haproxy port, front ends)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if not haproxy:
        pytest.skip("haproxy is not installed (scripts/install-deps --test installs it)")
    site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[CLIENT_IP])
    site.add_host("balanced", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[BALANCER_IP])
    fe = FrontEndSite(site)
    frontends = [fe.start(name="frontend1"), fe.start(name="frontend2")]
    port = free_port()
    cfg = site.root / "haproxy.cfg"
    servers = "\n".join(
        f"    server fe{i} 127.0.0.1:{f.port} send-proxy-v2 source {BALANCER_IP} check inter 500ms check-send-proxy"
        for i, f in enumerate(frontends, 1))
    cfg.write_text(f"""\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client {int(60 * SLOW)}s
    timeout server {int(60 * SLOW)}s
    timeout check 5s
listen pop3
    bind 127.0.0.1:{port}
    balance roundrobin
    option tcp-check
    tcp-check expect string +OK
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
{servers}
""")
    log = open(site.root / "haproxy.log", "wb")
    # -db: foreground, no daemon; its own config, loopback only.
    process = subprocess.Popen([haproxy, "-f", str(cfg), "-db"], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def greeted():
            assert process.poll() is None, (site.root / "haproxy.log").read_text()
            try:
                c = Pop3(port, timeout=2)
            except (OSError, AssertionError):
                return False
            ok = c.greeting.startswith("+OK")
            c.quit()
            return ok
        wait_until(greeted, timeout=TIMEOUT, what="haproxy serving")
        yield port, frontends
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_fetchmail_sdps_through_haproxy_with_the_dialup_password(site, balanced, tmp_path):
    fetchmail = shutil.which("fetchmail")
    if not fetchmail:
        pytest.skip("fetchmail is not installed (scripts/install-deps --test installs it)")
    port, frontends = balanced
    for user, punt in (("fred", "finchley"), ("jim", "docklands")):
        site.deliver(f"{user}@sample.demon.co.uk", data=message(subject=f"for {user}"), punt=punt)
    home = tmp_path / "home"
    out = home / "out"
    out.mkdir(parents=True)
    rc = home / "fetchmailrc"
    # The dialup password: accepted only from 127.0.0.1, the real client,
    # which the front end knows only from haproxy's PROXY header.
    rc.write_text("set no syslog\n"
                  f"poll 127.0.0.1 service {port} protocol sdps no dns localdomains sample.demon.co.uk:\n"
                  f'  user "sample" there with password "{DIALUP_PW}" is * here\n'
                  f"  mda \"sh -c 'cat > {out}/%T.$$'\"\n"
                  "  sslproto ''\n")
    rc.chmod(0o600)
    result = subprocess.run([fetchmail, "-f", str(rc), "-d0", "--nosyslog", "-v"], capture_output=True,
                            timeout=CLIENT_TIMEOUT, env={"HOME": str(home), "LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, show(result)
    delivered = sorted(p.name.split("@")[0].rsplit(".", 1)[0] for p in out.iterdir())
    assert delivered == ["fred", "jim"], show(result)
    logs = "".join(f.log() for f in frontends)
    assert f"via {BALANCER_IP}:" in logs and f"client {CLIENT_IP}:" in logs


def test_the_dialup_rule_sees_the_client_not_the_balancer(balanced):
    port, frontends = balanced
    for _ in range(4):                       # round robin: both front ends, twice
        c = Pop3(port)
        c.ok("USER sample")
        c.ok(f"PASS {DIALUP_PW}")            # from 127.0.0.1, the client's address
        c.quit()
        c = Pop3(port)
        c.ok("USER balanced")
        c.err(f"PASS {DIALUP_PW}")           # its dialup address is the balancer's
        c.ok("USER balanced")
        c.ok(f"PASS {POP_PW}")
        c.quit()
    for f in frontends:
        assert f"client {CLIENT_IP}:" in f.log() and f"via {BALANCER_IP}:" in f.log(), f.log()[-2000:]


def test_haproxy_health_checks_are_served_as_local(balanced):
    """haproxy's checks send PROXY v2 LOCAL; each front end greets them."""
    _, frontends = balanced
    for f in frontends:
        wait_until(lambda: "PROXY v2 LOCAL" in f.log() and "command QUIT" in f.log(),
                   timeout=TIMEOUT, what="a health check")
        assert "closing:" not in f.log()
        assert "no PROXY header" not in f.log()
