"""A site's own modules, written from docs/modules.md and the headers alone
(examples/login_hours, a login policy; examples/xcount, a command), built
out of tree against this build folder, in every chain position the docs
allow. A policy is a login stage: USER/PASS and AUTH PLAIN alike pass it,
wherever it stands in the YAML list, and a login it refuses is neither
logged nor counted as one."""

import base64
import datetime
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from sdps_harness import BUILD_DIR, DOMAIN, SOURCE_DIR, Site, message, shipped_chain, wait_until

PW = "secret-pw-1"


def build(name: str, where: Path) -> Path:
    subprocess.run(["cmake", "-S", str(SOURCE_DIR / "examples" / name), "-B", str(where),
                    f"-DCMAKE_PREFIX_PATH={BUILD_DIR.resolve()}"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(where)], check=True, stdout=subprocess.DEVNULL)
    return where


@pytest.fixture(scope="module")
def modules():
    with tempfile.TemporaryDirectory(prefix="sdps-site-modules-") as tmp:
        yield [build(name, Path(tmp) / name) for name in ("login_hours", "xcount")]


def window(open_now: bool) -> str:
    """An hours window that holds now (two hours either side), or one that
    certainly does not (it starts two hours from now)."""
    now = datetime.datetime.now()
    start = now - datetime.timedelta(hours=2) if open_now else now + datetime.timedelta(hours=2)
    end = start + datetime.timedelta(hours=4 if open_now else 2)
    return f'"{start:%H:%M}-{end:%H:%M}"'


def chain_with(position: str) -> list[dict[str, str]]:
    """The shipped chain with two login_hours instances (host `night`
    closed now, host `day` open now) and xcount, at `position`."""
    chain = shipped_chain()
    ours = [
        {"module": "login_hours", "name": "night_hours", "hours": window(False), "hosts": "[night]"},
        {"module": "login_hours", "name": "day_hours", "hours": window(True), "hosts": "[day]"},
        {"module": "xcount"},
    ]
    if position == "first":
        return ours + chain
    if position == "last":
        return chain + ours
    # Between auth and lock: where a policy used to have to stand.
    at = next(i for i, e in enumerate(chain) if e["module"] == "lock")
    return chain[:at] + ours + chain[at:]


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.mark.parametrize("position", ["first", "between", "last"])
def test_a_login_policy_and_a_command_of_the_site_anywhere_in_the_chain(modules, position):
    with Site(top={"module_path": f"[{', '.join(str(m) for m in modules)}]", "plaintext_auth": "always"},
              chain=chain_with(position)) as site:
        for host in ("night", "day", "sample"):
            site.add_host(host, pop3=PW)
            site.deliver(f"fred@{host}.{DOMAIN}", data=message(subject=f"for {host}"))
        check = subprocess.run([str(BUILD_DIR / "bin" / "sdpsd"), "-c", str(site.config), "--check"],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
        assert "night_hours (login_hours): login stage authorize" in check.stdout, check.stdout
        server = site.start()

        # Closed hours: refused whichever way the client logs in, after the
        # password was checked (a wrong one is refused by auth, as always).
        c = server.connect()
        c.ok("USER night")
        assert c.err(f"PASS {PW}").startswith("-ERR [SYS/TEMP] logins are closed at this hour")
        c.ok("USER night")
        assert c.err("PASS wrong").startswith("-ERR [AUTH]")
        assert c.err(f"AUTH PLAIN {plain('night', PW)}").startswith("-ERR [SYS/TEMP] logins are closed")
        c.send("AUTH PLAIN")
        assert c.line() == "+ "
        assert c.err(plain(f"night.{DOMAIN}", PW)).startswith("-ERR [SYS/TEMP] logins are closed")
        c.err("STAT")  # still AUTHORIZATION
        c.quit()

        # Open hours, and a host the policy does not cover: logged in.
        for host in ("day", "sample"):
            c = server.connect()
            c.ok(f"AUTH PLAIN {plain(host, PW)}")
            assert c.ok("XCOUNT") == "+OK 1 messages, 0 marked deleted, last 0"
            c.ok("DELE 1")
            assert c.ok("XCOUNT") == "+OK 1 messages, 1 marked deleted, last 1"
            c.ok("RSET")
            assert c.ok("XCOUNT") == "+OK 1 messages, 0 marked deleted, last 0"
            assert "XCOUNT" in [line.decode() for line in c.multi("CAPA")]
            c.quit()
        c = server.connect()
        c.ok("USER day")
        c.ok(f"PASS {PW}")
        c.quit()

        wait_until(lambda: server.log().count("logout ") >= 4, what="the logout lines")
        log = server.log()
        assert "login failed: host night from 127.0.0.1: outside hours (night_hours)" in log
        assert "login night from" not in log and "night logged in" not in log
        assert "refusing a login of night outside its hours" in log
        # XCOUNT is a TRANSACTION command: before login it is refused.
        c = server.connect()
        assert c.err("XCOUNT") == "-ERR command not valid in the AUTHORIZATION state"
        c.quit()
