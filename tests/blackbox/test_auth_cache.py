"""The auth cache (modules/auth/README.md, "The auth cache"): a repeated
good login skips Argon2id; the cache expires after auth_cache_ttl, forgets
a host whose password or dialup list `sdps host` changes, never admits a
wrong password, and a wrong password still waits fail_delay. Hits and
misses are observed through the metrics."""

import re
import time
import urllib.request

from conftest import DIALUP_IP, DIALUP_PW, OTHER_IP, POP_PW
from sdps_harness import TIMEOUT, Site

METRICS = {"metrics_listen": "127.0.0.1:0"}


def counters(server) -> tuple[int, int]:
    """(hits, misses) of the auth cache, from the server's metrics."""
    m = re.search(r"metrics on http://([0-9.]+):(\d+)/metrics", server.log())
    assert m, server.log()
    with urllib.request.urlopen(f"http://{m.group(1)}:{m.group(2)}/metrics", timeout=TIMEOUT) as r:
        text = r.read().decode()
    values = []
    for name in ("sdps_auth_cache_hits_total", "sdps_auth_cache_misses_total"):
        found = re.search(r"^" + name + r" (\S+)$", text, re.M)
        assert found, text
        values.append(int(float(found.group(1))))
    return values[0], values[1]


def login_ok(server, user="sample", password=POP_PW, source=None):
    c = server.connect(source=source) if source else server.connect()
    c.ok(f"USER {user}")
    c.ok(f"PASS {password}")
    c.quit()


def login_refused(server, user="sample", password=POP_PW, source=None) -> float:
    """The seconds PASS took to be refused."""
    c = server.connect(source=source) if source else server.connect()
    c.ok(f"USER {user}")
    start = time.monotonic()
    reply = c.err(f"PASS {password}")
    took = time.monotonic() - start
    assert reply.startswith("-ERR [AUTH] invalid login"), reply
    c.quit()
    return took


def cached_site(ttl="1h", fail_delay="200ms", **top) -> Site:
    site = Site(fail_delay=fail_delay, top={**METRICS, **top}, module_settings={"auth": {"auth_cache_ttl": ttl}})
    site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP])
    return site


def test_a_repeated_login_is_answered_from_the_cache():
    with cached_site(log_level="debug") as site:
        server = site.start()
        login_ok(server)
        assert counters(server) == (0, 1)
        login_ok(server)
        login_ok(server, user="fred+sample")
        assert counters(server) == (2, 1)
        log = server.log()
        assert "auth cache: sample: the POP3 password passed its check" in log
        assert POP_PW not in log


def test_the_cache_expires_after_its_ttl():
    with cached_site(ttl="3s") as site:
        server = site.start()
        login_ok(server)
        login_ok(server)
        assert counters(server) == (1, 1)
        time.sleep(3.2)
        login_ok(server)          # checked in full again
        assert counters(server) == (1, 2)
        login_ok(server)
        assert counters(server) == (2, 2)


def test_ttl_0_turns_the_cache_off():
    with cached_site(ttl="0s") as site:
        server = site.start()
        for _ in range(3):
            login_ok(server)
        assert counters(server) == (0, 0)


def test_host_passwd_refuses_the_old_password_at_once():
    with cached_site() as site:
        server = site.start()
        login_ok(server)
        login_ok(server)
        assert counters(server) == (1, 1)
        site.set_password("sample", "--pop3", "a new secret")
        # No signal needed: the next PASS sees the new file.
        login_refused(server)
        login_ok(server, password="a new secret")
        login_ok(server, password="a new secret")
        login_refused(server)
        hits, _ = counters(server)
        assert hits == 2  # the first login, and then only the new password's repeat


def test_a_changed_dialup_list_drops_the_entries_and_the_rule_holds():
    with cached_site() as site:
        server = site.start()
        login_ok(server, password=DIALUP_PW, source=DIALUP_IP)
        login_ok(server, password=DIALUP_PW, source=DIALUP_IP)
        assert counters(server) == (1, 1)
        # The rule is checked at every login, cached or not.
        login_refused(server, password=DIALUP_PW, source=OTHER_IP)
        site.sdps("host", "dialup", "sample", "--add", "192.0.2.0/24")
        login_ok(server, password=DIALUP_PW, source=DIALUP_IP)  # entry dropped: a miss
        assert counters(server)[0] == 1
        login_ok(server, password=DIALUP_PW, source=DIALUP_IP)
        assert counters(server)[0] == 2
        site.sdps("host", "dialup", "sample", "--clear", "--add", OTHER_IP)
        login_refused(server, password=DIALUP_PW, source=DIALUP_IP)
        login_ok(server, password=DIALUP_PW, source=OTHER_IP)
        assert counters(server)[0] == 2


def test_a_wrong_password_right_after_a_good_login_is_refused_after_the_delay():
    with cached_site(fail_delay="1s") as site:
        server = site.start()
        login_ok(server)
        login_ok(server)
        for wrong in (POP_PW + " ", POP_PW.upper(), DIALUP_PW, POP_PW[:-1]):
            assert login_refused(server, password=wrong) >= 1.0
        login_ok(server)
        assert counters(server)[0] == 2


def test_pipelined_user_pass_after_a_wrong_password():
    # A client that sends a wrong then the right password in one write is
    # refused once, after the delay, then admitted from the cache.
    with cached_site(fail_delay="300ms") as site:
        server = site.start()
        login_ok(server)
        c = server.connect()
        c.send_raw(f"USER sample\r\nPASS wrong\r\nUSER sample\r\nPASS {POP_PW}\r\n".encode())
        assert c.reply().startswith("+OK")
        assert c.reply().startswith("-ERR [AUTH] invalid login")
        assert c.reply().startswith("+OK")
        assert c.reply().startswith("+OK")
        c.quit()
        assert counters(server) == (1, 2)
