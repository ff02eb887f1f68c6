"""Several event loops (`threads:`): sessions on different threads lock each
other out exactly as on one, the limits hold across threads, and SIGHUP and
SIGTERM reach every thread's sessions."""

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import POP_PW
from test_tls import make_pki
from sdps_harness import EX_CONFIG, TIMEOUT, Pop3, binary, message, returned, wait_until

LOOPS = 4


def loops_used(server, first_id=1):
    """The event loops the server's log says sessions were accepted on."""
    return {int(loop) for sid, loop in re.findall(r"session (\d+) on event loop (\d+)", server.log())
            if int(sid) >= first_id}


def in_parallel(count, work):
    """Runs work(i) for i in range(count) on `count` threads; returns the
    results in order, re-raising the first failure."""
    results, errors = [None] * count, []
    start = threading.Barrier(count)

    def run(i):
        try:
            start.wait(TIMEOUT)
            results[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    if errors:
        raise errors[0]
    return results


def sessions_on_two_loops(site, sources):
    """A server started on `site` and one greeted session from each source
    address in `sources`, opened one after another, on two event loops at
    least. The kernel hands a connection to a loop by a hash of its
    addresses and ports (SO_REUSEPORT), so in about one server of
    LOOPS**(len(sources) - 1) every session lands on the same loop: that
    server is stopped and another started (new port, new draw)."""
    for _attempt in range(20):
        server = site.start()
        held = []
        for source in sources:
            c = Pop3(server.port, server.host, source=source)
            assert c.greeting.startswith("+OK"), c.greeting
            held.append(c)
        wait_until(lambda: len(re.findall(r"session \d+ on event loop", server.log())) == len(held),
                   what="the sessions' event loops in the log")
        if len(loops_used(server)) >= 2:
            return server, held
        for c in held:
            c.close()
        server.stop()
    raise AssertionError(f"{len(sources)} sessions landed on one event loop in 20 servers running")


def deliver(site, count, to="fred@sample.demon.co.uk"):
    msgs = {}
    for i in range(count):
        data = message(subject=f"message {i + 1}", body=f"body of message {i + 1}\n")
        site.deliver(to, data=data)
        msgs[f"message {i + 1}"] = data
    return msgs


# ---------------------------------------------------------------- the setting

@pytest.mark.parametrize("value", ["0", "-2", "lots", "257", "1.5"])
def test_a_bad_threads_value_fails_check_with_a_clear_message(site, value):
    text = site.config.read_text().replace("customer_domain:", f"threads: {value}\ncustomer_domain:", 1)
    site.config.write_text(text)
    result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                            timeout=TIMEOUT)
    assert result.returncode == EX_CONFIG
    error = result.stderr.decode()
    assert "sdps.yaml:" in error and ("'threads' must be 1 to 256" in error or
                                      "'threads' must be a whole number" in error), error


def test_threads_is_accepted_by_check(site):
    text = site.config.read_text().replace("customer_domain:", "threads: 3\ncustomer_domain:", 1)
    site.config.write_text(text)
    result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.site_options(top={"threads": LOOPS})
def test_threads_runs_that_many_event_loops(server):
    # A served session: the loops' threads have started.
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()
    names = []
    for comm in Path(f"/proc/{server.pid}/task").glob("*/comm"):
        try:
            names.append(comm.read_text().strip())
        except FileNotFoundError:
            pass
    assert sorted(n for n in names if n.startswith("sdpsd-loop-")) == [f"sdpsd-loop-{i}" for i in range(1, LOOPS)]


@pytest.mark.site_options(top={"threads": 1})
def test_threads_1_serves_on_the_main_thread_alone(server):
    names = [comm.read_text().strip() for comm in Path(f"/proc/{server.pid}/task").glob("*/comm")]
    assert not [n for n in names if n.startswith("sdpsd-loop-")]
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()


@pytest.mark.site_options(top={"threads": 2})
def test_a_second_server_on_the_same_port_fails_instead_of_sharing_it(server):
    # Both would set SO_REUSEPORT: the second must still find the port busy.
    result = subprocess.run([str(binary("sdpsd")), "-c", str(server.site.config), "--listen",
                             f"127.0.0.1:{server.port}"], capture_output=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert str(server.port) in result.stderr.decode()


# ---------------------------------------------------------------- locks across threads

@pytest.mark.site_options(top={"threads": LOOPS, "log_level": "debug", "max_sessions_per_address": 0})
@pytest.mark.parametrize("login", ["sample", "fred+sample"])
def test_concurrent_logins_to_one_maildrop_on_several_threads_one_gets_it(sample, login):
    deliver(sample, 3)
    server = sample.start()
    for round_ in range(3):
        clients = [server.connect() for _ in range(16)]
        for c in clients:
            c.ok(f"USER {login}")
        # Every PASS is sent before any reply is read.
        for c in clients:
            c.send(f"PASS {POP_PW}")
        replies = [c.reply() for c in clients]
        winners = [r for r in replies if r.startswith("+OK")]
        assert len(winners) == 1, f"round {round_}: {replies}"
        for r in replies:
            assert r.startswith("+OK") or r.startswith("-ERR [IN-USE]"), r
        # The winner's QUIT lets go of the lock before its +OK: the next
        # round can win at once.
        clients[replies.index(winners[0])].quit()
        for c in clients:
            c.close()
    assert len(loops_used(server)) >= 2, "the sessions all landed on one loop: nothing was tested"


@pytest.mark.site_options(top={"threads": LOOPS, "log_level": "debug", "max_sessions_per_address": 0})
def test_concurrent_logins_of_different_users_of_one_host_all_get_theirs(sample):
    server = sample.start()
    server.session("sample", POP_PW).quit()            # the host's folders exist
    for round_ in range(3):
        clients = [server.connect() for _ in range(16)]
        for i, c in enumerate(clients):
            c.ok(f"USER user{i}+sample")
        for c in clients:
            c.send(f"PASS {POP_PW}")
        replies = [c.reply() for c in clients]
        assert all(r.startswith("+OK") for r in replies), f"round {round_}: {replies}"
        # ... and each holds its own: a second login of any of them is refused.
        with server.connect() as second:
            second.ok("USER user7+sample")
            assert second.cmd(f"PASS {POP_PW}").startswith("-ERR [IN-USE]")
        for c in clients:
            c.quit()
    assert len(loops_used(server)) >= 2, "the sessions all landed on one loop: nothing was tested"


@pytest.mark.site_options(top={"threads": LOOPS, "log_level": "debug", "max_sessions_per_address": 0})
def test_concurrent_deletions_with_quit_never_lose_or_duplicate(sample):
    msgs = deliver(sample, 40)
    server = sample.start()
    taken = []  # (uidl, subject) of every message a session deleted and QUIT
    lock = threading.Lock()
    deadline = time.monotonic() + 6 * TIMEOUT

    def client(_i):
        sessions = 0
        while time.monotonic() < deadline:
            c = server.connect()
            c.ok("USER sample")
            reply = c.cmd(f"PASS {POP_PW}")
            if not reply.startswith("+OK"):
                assert "[IN-USE]" in reply, reply
                c.close()
                time.sleep(0.005)
                continue
            sessions += 1
            count, _size = c.stat()
            if count == 0:
                c.quit()
                return sessions
            uidls = c.uidl()
            mine = []
            for n in sorted(uidls)[:3]:
                body = c.retr(n)
                subject = re.search(rb"Subject: (message \d+)", body).group(1).decode()
                assert body == returned(msgs[subject]), subject
                c.ok(f"DELE {n}")
                mine.append((uidls[n], subject))
            assert c.quit().startswith("+OK")
            with lock:
                taken.extend(mine)
        raise AssertionError("the maildrop was not emptied in time")

    in_parallel(8, client)
    subjects = [s for _u, s in taken]
    uidls = [u for u, _s in taken]
    assert sorted(subjects) == sorted(msgs), "a message was deleted twice or never"
    assert len(set(uidls)) == len(uidls) == len(msgs)
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat() == (0, 0)
    c.quit()
    assert len(loops_used(server)) >= 2


# ---------------------------------------------------------------- limits across threads

@pytest.mark.site_options(top={"threads": LOOPS, "max_sessions": 5, "max_sessions_per_address": 0,
                               "log_level": "debug"})
def test_max_sessions_holds_across_threads(site):
    # Four of the five places taken on two loops or more, whatever the
    # build's speed (16 connections at once could all be admitted by
    # whichever loop ran first); then twelve connect at once for the last.
    server, held = sessions_on_two_loops(site, ["127.0.0.1"] * 4)

    def connect(_i):
        c = Pop3(server.port, server.host, greeting=False)
        return c, c.reply()

    clients = in_parallel(12, connect)
    greetings = [c.greeting for c in held] + [g for _c, g in clients]
    assert sum(g.startswith("+OK") for g in greetings) == 5, greetings
    assert sum("too many connections" in g for g in greetings) == 11, greetings
    for c in held + [c for c, _g in clients]:
        c.close()


@pytest.mark.site_options(top={"threads": LOOPS, "max_sessions_per_address": 3, "log_level": "debug"})
def test_max_sessions_per_address_holds_across_threads(site):
    # Two of each address's three places taken, on two loops or more; then
    # six connections from each address at once for the last place.
    sources = ["127.0.0.2", "127.0.0.1"]
    server, held = sessions_on_two_loops(site, sources * 2)

    def connect(i):
        c = Pop3(server.port, server.host, greeting=False, source=sources[i % 2])
        return i % 2, c, c.reply()

    clients = in_parallel(12, connect)
    for source in (0, 1):
        greetings = [c.greeting for c in held[source::2]] + [g for s, _c, g in clients if s == source]
        assert sum(g.startswith("+OK") for g in greetings) == 3, greetings
        assert sum("too many connections from your address" in g for g in greetings) == 5, greetings
    for c in held + [c for _s, c, _g in clients]:
        c.close()


# ---------------------------------------------------------------- signals and metrics

@pytest.mark.site_options(top={"threads": LOOPS, "log_level": "debug", "max_sessions_per_address": 0})
def test_sigterm_closes_the_sessions_of_every_thread_without_update(sample):
    hosts = [f"host{i}" for i in range(12)]
    for h in hosts:
        sample.add_host(h, pop3=POP_PW)
        sample.deliver(f"fred@{h}.demon.co.uk", data=message(subject=h))
    server = sample.start()
    clients = []
    for h in hosts:
        c = server.connect()
        c.login(h, POP_PW)
        c.ok("DELE 1")
        clients.append(c)
    assert len(loops_used(server)) >= 2
    assert server.stop(signal.SIGTERM) == 0
    assert "closing 12 session(s)" in server.log()
    for c in clients:
        c.expect_closed()
    again = sample.start()
    for h in hosts:
        c = again.connect()
        c.login(h, POP_PW)
        assert c.stat()[0] == 1, f"{h}: SIGTERM entered UPDATE"
        c.quit()


def test_sighup_reload_reaches_the_sessions_of_every_thread(sample, tmp_path):
    pki = make_pki(tmp_path / "pki")
    sample.write_config(top={"threads": LOOPS, "log_level": "debug", "max_sessions_per_address": 0,
                             "tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}}}"})
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    deadline = time.monotonic() + TIMEOUT
    while not (found := re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", server.log())):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    secure = int(found.group(1))
    trust = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def tls_session():
        c = Pop3(secure, greeting=False)
        c.sock = trust.wrap_socket(c.sock, server_hostname="localhost")
        assert c.reply().startswith("+OK")
        return c, c.sock.getpeercert(binary_form=True)

    before = [tls_session() for _ in range(8)]
    old_cert = before[0][1]
    make_pki(pki)  # a new certificate and key from the same CA
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while "TLS certificate" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    first_after = int(re.findall(r"session (\d+) on event loop", server.log())[-1]) + 1
    # Sessions open on every loop carry on with the certificate they began with...
    for c, _cert in before:
        assert c.cmd("NOOP").startswith("-ERR")  # not logged in: refused, but answered
        c.quit()
    # ...and new ones, whichever loop takes them, get the new one.
    for _ in range(12):
        c, cert = tls_session()
        assert cert != old_cert
        c.quit()
    assert len(loops_used(server, first_after)) >= 2
    assert server.alive()


@pytest.mark.site_options(top={"threads": LOOPS, "metrics_listen": "127.0.0.1:0", "max_sessions_per_address": 0})
def test_metrics_count_every_session_of_every_thread_exactly(sample):
    server = sample.start()
    found = re.search(r"metrics on (?:http://)?([0-9.]+):(\d+)", server.log())
    assert found, server.log()
    metrics_port = int(found.group(2))

    def sessions(_i):
        for _ in range(10):
            c = server.connect()
            assert c.multi("CAPA")
            c.quit()

    in_parallel(8, sessions)
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    text = text.decode()

    def value(series):
        m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
        assert m, f"{series} not in the scrape:\n{text}"
        return float(m.group(1))

    assert value('sdps_sessions_total{role="embedded"}') == 80
    assert value('sdps_sessions_current{role="embedded"}') == 0
    assert value('sdps_commands_total{verb="QUIT"}') == 80
    assert value('sdps_session_ends_total{end="QUIT"}') == 80
    assert value("sdps_sent_bytes_total") > 0
