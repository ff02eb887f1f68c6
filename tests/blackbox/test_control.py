"""The control socket (`control_socket:`) and what the admin asks through
it: `sdps who [--json]`, `sdps kick ID | --host HOST | --login LOGIN` and
`sdps status`, against the embedded default and a front end over two
back ends; the background punt probes behind `sdps status` and
`sdps_punt_up`; `sdpsd --check` on a front end contacting its back ends."""

from __future__ import annotations

import datetime
import grp
import json
import os
import re
import stat
import subprocess
import time
import urllib.request

import pytest

from frontend_harness import FrontEndSite, write_secret
from sdps_harness import DOMAIN, SLOW, TIMEOUT, Site, binary, message, returned, wait_until

PW = "Corr3ct-Horse-Battery"
SOCKET = "../var/run/sdpsd.sock"            # relative to the site's etc/
PROBE = f"{int(400 * SLOW)}ms"              # probe_interval in these tests
EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 64, 69, 78
WHO_HEADER = ["id", "login", "host", "user", "client", "tls", "state", "since", "sent"]


def control_site(**top) -> Site:
    site = Site(top={"control_socket": SOCKET, "probe_interval": PROBE, "metrics_listen": "127.0.0.1:0", **top})
    site.add_host("sample", pop3=PW)
    return site


def socket_path(site) -> str:
    return str(site.root / "var" / "run" / "sdpsd.sock")


def who(site) -> list[dict[str, str]]:
    """`sdps who`'s lines as dicts, by its header."""
    result = site.sdps("who")
    lines = result.stdout.decode().splitlines()
    assert lines[0].split("\t") == WHO_HEADER, lines
    return [dict(zip(WHO_HEADER, line.split("\t"))) for line in lines[1:]]


def status(site) -> tuple[int, dict[str, list[str]]]:
    """`sdps status`: its exit status and each punt's fields by name."""
    result = site.sdps("status", expect=None)
    assert result.returncode in (0, 1), result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].split("\t") == ["punt", "state", "latency", "sessions", "checked", "detail"], lines
    return result.returncode, {line.split("\t")[0]: line.split("\t") for line in lines[1:]}


def status_becomes(site, code: int, what: str) -> dict[str, list[str]]:
    """Waits (a few probe intervals at most) for `sdps status` to exit `code`."""
    seen = {}

    def check():
        got, rows = status(site)
        seen["last"] = (got, rows)
        return rows if got == code else None
    try:
        return wait_until(check, timeout=TIMEOUT, interval=0.1, what=what)
    except AssertionError:
        raise AssertionError(f"{what}; last status: {seen.get('last')}") from None


def scrape(server) -> str:
    m = re.search(r"metrics on http://([0-9.]+):(\d+)/metrics", server.log())
    assert m, server.log()
    with urllib.request.urlopen(f"http://{m.group(1)}:{m.group(2)}/metrics", timeout=TIMEOUT) as r:
        return r.read().decode()


def series(text: str, name: str) -> float | None:
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def kicked_ids(server) -> list[str]:
    ids = []
    for m in re.finditer(r"control socket: kick .*: ended session\(s\) ([\d ]+)$", server.log(), re.M):
        ids += m.group(1).split()
    return ids


# ---------------------------------------------------------------- who

def test_who_lists_every_session_with_its_fields():
    with control_site() as site:
        site.deliver(f"fred@sample.{DOMAIN}", data=message(subject="one"))
        server = site.start()
        before = time.time()
        fred = server.session("fred+sample", PW)
        fred.retr(1)
        anonymous = server.connect()
        rows = who(site)
        assert len(rows) == 2, rows
        logged, other = rows if rows[0]["login"] != "-" else rows[::-1]
        assert logged["login"] == "fred+sample" and logged["host"] == "sample" and logged["user"] == "fred"
        assert logged["client"] == f"127.0.0.1:{fred.sock.getsockname()[1]}"
        assert logged["tls"] == "no" and logged["state"] == "TRANSACTION"
        assert int(logged["sent"]) > len(returned(message(subject="one")))
        since = datetime.datetime.strptime(logged["since"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        assert before - 2 <= since <= time.time() + 1
        assert other["login"] == other["host"] == other["user"] == "-"
        assert other["client"] == f"127.0.0.1:{anonymous.sock.getsockname()[1]}"
        assert other["state"] == "AUTHORIZATION"
        assert int(other["sent"]) == len(anonymous.greeting) + 2
        assert int(logged["id"]) != int(other["id"])
        # Listing changes nothing.
        assert fred.stat()[0] == 1
        fred.quit()
        anonymous.quit()
        wait_until(lambda: who(site) == [], what="no session left")


def test_who_json_has_numbers_as_numbers():
    with control_site(threads=2) as site:
        server = site.start()
        sessions = [server.session("sample", PW), server.connect(), server.connect()]
        result = site.sdps("who", "--json")
        rows = json.loads(result.stdout)
        assert isinstance(rows, list) and len(rows) == 3
        by_login = {row["login"]: row for row in rows}
        host = by_login["sample"]
        assert host["host"] == "sample" and host["user"] is None and host["state"] == "TRANSACTION"
        assert isinstance(host["id"], int) and isinstance(host["sent"], int) and host["sent"] > 0
        assert host["tls"] is False and re.fullmatch(r"127\.0\.0\.1:\d+", host["client"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", host["since"])
        anonymous = [row for row in rows if row["login"] is None]
        assert len(anonymous) == 2 and all(row["host"] is None for row in anonymous)
        assert len({row["id"] for row in rows}) == 3
        for c in sessions:
            c.quit()
        wait_until(lambda: json.loads(site.sdps("who", "--json").stdout) == [], what="an empty list")


# ---------------------------------------------------------------- kick

def test_kick_by_id_host_and_login():
    with control_site() as site:
        site.add_host("other", pop3=PW)
        server = site.start()
        fred = server.session("fred+sample", PW)
        jim = server.session("jim+sample", PW)
        other = server.session("other", PW)
        anonymous = server.connect()
        rows = {row["login"]: row["id"] for row in who(site)}

        # By id: that session only.
        result = site.sdps("kick", rows["-"])
        assert f"session {rows['-']} " in result.stdout.decode()
        anonymous.expect_closed()
        # By login: exactly that login.
        result = site.sdps("kick", "--login", f"fred@sample.{DOMAIN}")
        assert f"session {rows['fred+sample']} (fred+sample from 127.0.0.1:" in result.stdout.decode()
        assert "ended" in result.stdout.decode()
        fred.expect_closed()
        assert jim.stat() == (0, 0)
        # By host: every session of the host, and nothing else.
        site.sdps("kick", "--host", "SAMPLE")
        jim.expect_closed()
        assert other.stat() == (0, 0)
        # Nothing left to match: exit 1.
        for args in (["--host", "sample"], ["--login", "fred+sample"], [rows["fred+sample"]], ["99999"]):
            result = site.sdps("kick", *args, expect=1)
            assert b"no session matched" in result.stderr
        assert sorted(kicked_ids(server)) == sorted([rows["-"], rows["fred+sample"], rows["jim+sample"]])
        ends = [line for line in server.log().splitlines() if ": logout " in line and "end=kicked" in line]
        assert len(ends) == 3, server.log()
        text = scrape(server)
        assert series(text, 'sdps_session_ends_total{end="kicked"}') == 3
        other.quit()


def test_kick_refuses_what_names_no_session():
    with control_site() as site:
        site.start()
        for args in (["kick"], ["kick", "--host"], ["kick", "1", "2"], ["kick", "--user", "fred"],
                     ["kick", "--login", "a b"], ["kick", "--host", "fred+sample"], ["kick", "12x"],
                     ["kick", "--host", "bad/host"], ["who", "--xml"], ["status", "extra"]):
            result = site.sdps(*args, expect=EX_USAGE)
            assert result.stderr.startswith(b"sdps: "), (args, result.stderr)


def test_a_kicked_customer_logs_in_again_at_once_and_nothing_was_deleted():
    with control_site() as site:
        site.deliver(f"fred@sample.{DOMAIN}", data=message(subject="keep me"))
        server = site.start()
        hung = server.session("sample", PW)
        hung.ok("DELE 1")
        # The maildrop is locked: the customer's new session is refused...
        second = server.connect()
        second.ok("USER sample")
        assert second.cmd(f"PASS {PW}").startswith("-ERR [IN-USE]")
        second.close()
        # ...until the admin kicks the old one: then at the first attempt.
        site.sdps("kick", "--host", "sample")
        c = server.session("sample", PW)
        assert c.stat()[0] == 1, "the kicked session's DELE took effect"
        c.quit()
        hung.expect_closed()


# ---------------------------------------------------------------- status and the probes

def test_status_of_an_embedded_server_follows_its_punts():
    with control_site() as site:
        server = site.start()
        rows = status_becomes(site, 0, "every punt up")
        assert set(rows) == {"finchley", "docklands"}
        for name, fields in rows.items():
            assert fields[1] == "up" and re.fullmatch(r"[\d.]+m?s", fields[2]), fields
            assert fields[3] == "0"
        c = server.session("sample", PW)
        rows = status(site)[1]
        assert rows["finchley"][3] == "1" and rows["docklands"][3] == "1"      # the session holds both locks
        c.quit()
        # A punt folder that goes away after it was seen: that punt is down.
        punt = site.punt_dir("docklands")
        punt.rename(punt.with_name("docklands.away"))
        rows = status_becomes(site, 1, "docklands down")
        assert rows["docklands"][1] == "down" and "missing" in rows["docklands"][5]
        assert rows["finchley"][1] == "up"
        assert "punt docklands is down" in server.log()
        punt.with_name("docklands.away").rename(punt)
        status_becomes(site, 0, "docklands up again")
        assert "punt docklands is up again" in server.log()


def test_the_punt_metric_has_a_series_from_the_start():
    with control_site() as site:
        server = site.start()

        def both_up():
            text = scrape(server)
            return all(series(text, f'sdps_punt_up{{punt="{p}"}}') == 1 for p in ("finchley", "docklands"))
        wait_until(both_up, what="sdps_punt_up 1 for both punts before any login")
        assert "sdps_punt_probe_seconds" in scrape(server)


def test_status_json():
    with control_site() as site:
        site.start()
        status_becomes(site, 0, "every punt up")
        data = json.loads(site.sdps("status", "--json").stdout)
        assert data["role"] == "embedded" and data["sessions"] == 0
        assert data["probe_interval_ms"] == int(PROBE[:-2])
        punts = {p["name"]: p for p in data["punts"]}
        assert set(punts) == {"finchley", "docklands"}
        assert all(p["up"] is True and isinstance(p["latency_ms"], float) and p["sessions"] == 0 for p in punts.values())


def test_an_unreachable_server_is_69_and_no_socket_configured_is_78():
    with control_site() as site:
        server = site.start()
        status_becomes(site, 0, "every punt up")
        server.stop()
        assert not os.path.exists(socket_path(site)), "the socket was not removed at exit"
        for args in (["who"], ["kick", "--host", "sample"], ["status"]):
            result = site.sdps(*args, expect=EX_UNAVAILABLE)
            assert b"cannot reach sdpsd" in result.stderr
        # A stopped (not ended) sdpsd answers nothing either; a killed one
        # leaves its socket behind, which refuses connections.
        server = site.start()
        server.kill()
        assert os.path.exists(socket_path(site))
        site.sdps("status", expect=EX_UNAVAILABLE)
    with Site() as plain:
        result = plain.sdps("who", expect=EX_CONFIG)
        assert b"control_socket" in result.stderr


# ---------------------------------------------------------------- the socket file

def test_the_socket_is_0660_and_in_its_group():
    groups = [g for g in grp.getgrall() if g.gr_gid != os.getgid()]
    if os.geteuid() != 0:
        groups = [g for g in groups if g.gr_gid in os.getgroups()]
    if not groups:
        pytest.skip("no second group to give the socket to")
    group = groups[0]
    with control_site(control_socket_group=group.gr_name) as site:
        site.start()
        st = os.stat(socket_path(site))
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert st.st_gid == group.gr_gid and st.st_uid == os.geteuid()
    with control_site() as site:
        site.start()
        st = os.stat(socket_path(site))
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getegid()
    with control_site(control_socket_group="no-such-group-here") as site:
        with pytest.raises(AssertionError, match="no-such-group-here"):
            site.start()


def test_a_stale_socket_is_replaced_and_a_live_one_refused():
    with control_site() as site:
        first = site.start()
        first.kill()                                            # leaves its socket file
        assert os.path.exists(socket_path(site))
        second = site.start()
        assert "replaced the stale control socket" in second.log()
        assert who(site) == []
        # The socket in use: a second sdpsd of the same config refuses to start.
        with pytest.raises(AssertionError, match="is in use"):
            site.start()
        assert second.alive()
        assert who(site) == []
        second.stop()
        # Not a socket at all: never removed.
        path = socket_path(site)
        with open(path, "w") as f:
            f.write("precious\n")
        with pytest.raises(AssertionError, match="is not a socket"):
            site.start()
        assert open(path).read() == "precious\n"


# ---------------------------------------------------------------- a front end

@pytest.fixture
def fe():
    site = control_site()
    front = FrontEndSite(site, link={"in_use_wait": f"{int(2 * SLOW)}s"})
    yield front
    front.close()


def test_a_front_end_lists_and_kicks_its_sessions(fe):
    fe.deliver(f"fred@sample.{DOMAIN}", data=message(subject="f"), punt="finchley")
    server = fe.start()
    c = server.session("sample", PW)
    c.ok("DELE 1")
    rows = who(fe)
    assert len(rows) == 1 and rows[0]["login"] == "sample" and rows[0]["state"] == "TRANSACTION"
    status_becomes(fe, 0, "both back ends up")
    rows = status(fe)[1]
    assert rows["finchley"][3] == "1" and rows["docklands"][3] == "1"     # a link to each back end
    fe.sdps("kick", "--login", "sample")
    c.expect_closed()
    # The back ends let go of the lock: the customer is in again at once,
    # and the kicked session's DELE never reached a back end.
    again = server.session("sample", PW)
    assert again.stat()[0] == 1
    again.quit()
    fe.sdps("kick", "--login", "sample", expect=1)
    # Each back end answers for its own punt.
    punt = fe.site.root / "etc" / "punt-finchley.yaml"
    result = subprocess.run([str(binary("sdps")), "-c", str(punt), "status"], capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert re.search(rb"^finchley\tup\t", result.stdout, re.M)


def test_a_front_ends_status_and_metric_follow_its_back_ends(fe):
    server = fe.start()
    rows = status_becomes(fe, 0, "both back ends up")
    assert rows["finchley"][1] == rows["docklands"][1] == "up"

    def metric(punt):
        return series(scrape(server), f'sdps_punt_up{{punt="{punt}"}}')
    wait_until(lambda: metric("finchley") == 1 and metric("docklands") == 1, what="both series at 1 from the start")

    # A back end that stops: down within the probe interval, with the reason.
    fe.backends["docklands"].kill()
    rows = status_becomes(fe, 1, "docklands down")
    assert rows["docklands"][1] == "down" and "cannot connect" in rows["docklands"][5]
    assert rows["docklands"][2] == "-" and rows["finchley"][1] == "up"
    wait_until(lambda: metric("docklands") == 0, what="sdps_punt_up 0 for docklands")
    assert metric("finchley") == 1
    # Started again (same port): up again, without any login.
    fe.start_backend("docklands")
    status_becomes(fe, 0, "docklands up again")
    wait_until(lambda: metric("docklands") == 1, what="sdps_punt_up 1 again")
    # A back end that stops answering (SIGSTOP): down too, then up.
    with fe.stopped(fe.backends["finchley"]):
        rows = status_becomes(fe, 1, "finchley down while stopped")
        assert "no answer within probe_interval" in rows["finchley"][5]
    status_becomes(fe, 0, "finchley up once it runs again")
    assert "punt finchley is down" in server.log() and "punt finchley is up again" in server.log()
    # The front end itself stopped: 69.
    server.stop()
    fe.sdps("status", expect=EX_UNAVAILABLE)


def test_check_on_a_front_end_contacts_its_back_ends(fe):
    fe.start_backends()
    config = fe.frontend_config("frontend-check")

    def check():
        return subprocess.run([str(binary("sdpsd")), "-c", str(config), "--check"], capture_output=True, text=True,
                              timeout=6 * TIMEOUT)
    result = check()
    assert result.returncode == 0, result.stderr
    assert "punt finchley: up" in result.stdout and "punt docklands: up" in result.stdout
    # A back end down for maintenance: said, and --check still passes.
    fe.backends["docklands"].kill()
    result = check()
    assert result.returncode == 0, result.stderr
    assert "punt finchley: up" in result.stdout
    assert re.search(r"warning: punt docklands is down: .*cannot connect", result.stderr), result.stderr
    # A back end with another secret: it refuses this front end's proof.
    other = fe.site.root / "var" / "other.secret"
    write_secret(other)
    fe.run(fe.backend_config("docklands", listen=f"127.0.0.1:{fe.ports['docklands']}", secret="../var/other.secret",
                             name="punt-docklands-other"), listen=[f"127.0.0.1:{fe.ports['docklands']}"])
    result = check()
    assert result.returncode == 0, result.stderr
    assert re.search(r"warning: punt docklands is down: .*refused this front end's proof", result.stderr), result.stderr
