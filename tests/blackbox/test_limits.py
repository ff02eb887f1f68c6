"""Limits per client address and the login deadline (docs/operations.md,
"Limits and timers"): what one hostile address can and cannot do to
everyone else."""

import socket
import time

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, TIMEOUT, ProtocolError, attackers, timed_login, wait_until

SECOND_ADDRESS = "127.0.0.2"   # loopback is 127/8: a second client address


def raw_connections(server, count, source="127.0.0.1"):
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(TIMEOUT)
        s.connect((server.host, server.port))
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


# ---------------------------------------------------------------- sessions per address

@pytest.mark.site_options(top={"max_sessions_per_address": 3})
def test_sessions_beyond_the_per_address_limit_are_refused_others_served(server):
    held = [server.connect() for _ in range(3)]
    for _ in range(2):
        with server.connect() as c:
            assert c.greeting.startswith("-ERR [SYS/TEMP]"), c.greeting
            c.expect_closed()
    # Another address is not affected, and logs in.
    other = server.session("sample", POP_PW, source=SECOND_ADDRESS)
    other.quit()
    # Logged once per flood, not once per refusal.
    assert server.log().count("refusing connections from 127.0.0.1") == 1
    # A place that frees up is available again.
    held.pop().quit()

    def place_free():
        with server.connect() as probe:
            return probe.greeting.startswith("+OK")

    wait_until(place_free, what="a free place")
    for c in held:
        c.close()


def test_thousand_idle_connections_from_one_address_do_not_block_another(server):
    socks = raw_connections(server, 1000)
    try:
        started = time.monotonic()
        c = server.session("sample", POP_PW, source=SECOND_ADDRESS)
        assert c.stat() == (0, 0)
        c.quit()
        assert time.monotonic() - started < 2 * SLOW
    finally:
        close_all(socks)


# ---------------------------------------------------------------- login deadline

@pytest.mark.site_options(top={"login_timeout": "2s"})
def test_login_timeout_is_not_extended_by_commands(server):
    c = server.connect()
    started = time.monotonic()
    with pytest.raises((ProtocolError, OSError)):
        while time.monotonic() - started < 10 * SLOW:
            c.cmd("NOOP")
            time.sleep(0.3)
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 2 + 2 * SLOW, f"closed after {elapsed:.1f}s"
    assert "no login within 2s" in server.log()
    # A session that logged in is under idle_timeout only.
    s = server.session("sample", POP_PW)
    time.sleep(2.5)
    assert s.stat() == (0, 0)
    s.quit()


# ---------------------------------------------------------------- failed logins

@pytest.mark.site_options(top={"max_login_failures_per_address": 3}, fail_delay="50ms")
def test_failed_logins_per_address_end_in_a_temporary_refusal(server):
    c = server.connect()
    for _ in range(3):
        c.ok("USER sample")
        assert c.err("PASS wrong") == "-ERR [AUTH] invalid login"
    # Even the right password is refused now, at once, without a check.
    c.ok("USER sample")
    started = time.monotonic()
    refusal = c.err("PASS " + POP_PW)
    assert refusal.startswith("-ERR [AUTH] too many failed logins"), refusal
    assert time.monotonic() - started < 0.5 * SLOW
    c.ok("USER sample")
    c.err("PASS " + POP_PW)
    assert server.log().count("refusing logins from 127.0.0.1") == 1
    # Another address is not affected.
    other = server.session("sample", POP_PW, source=SECOND_ADDRESS)
    other.quit()
    c.close()


@pytest.mark.site_options(fail_delay="200ms")
def test_failed_login_delay_grows_after_five(server):
    c = server.connect()
    took = []
    for _ in range(7):
        c.ok("USER sample")
        started = time.monotonic()
        c.err("PASS wrong")
        took.append(time.monotonic() - started)
    assert all(0.18 <= t < 0.2 + 0.3 * SLOW for t in took[:5]), took
    assert took[5] >= 0.38, took     # 400 ms
    assert took[6] >= 0.78, took     # 800 ms
    c.close()


# ---------------------------------------------------------------- the hash pool

@pytest.mark.site_options(top={"password_cost": "interactive"}, fail_delay="0s")
def test_wrong_passwords_from_many_connections_do_not_delay_a_good_login(sample):
    server = sample.start()

    def good_login():
        return timed_login(server, "sample", POP_PW, source=SECOND_ADDRESS, timeout=120)

    good_login()                       # warm up
    baseline = min(good_login() for _ in range(2))

    def attack(c, stop):
        try:
            while not stop.is_set():
                c.send(b"USER sample\r\nPASS wrong")
                c.reply()
                c.reply()
                time.sleep(0.01)
        except (ProtocolError, OSError):
            pass

    with attackers(server, attack):
        time.sleep(1.0)                # the attack's checks are queued by now
        took = good_login()
    # Its own hash (two at most: the pool has two threads, the attacker
    # holds at most one), not a queue of a hundred.
    assert took < 2 * baseline + 0.5 * SLOW, f"good login took {took:.2f}s, alone {baseline:.2f}s"
