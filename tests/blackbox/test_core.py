"""The core against bad input and hard conditions (issue 2): overlong
lines, NUL bytes and junk, bare LF, pipelining, stalled and dropped
clients, the idle timer, SIGTERM, --check, backpressure on a slow reader,
IPv6 listeners."""

import hashlib
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import POP_PW
from sdps_harness import (EX_CONFIG, SANITIZE, SLOW, SOURCE_DIR, TIMEOUT, Pop3, binary, in_flight_bound, message,
                          returned, sanitizer_report, shipped_chain, wait_until)


def fill(site, count, **kw):
    msgs = [message(subject=f"message {i + 1}", body=f"body of message {i + 1}\n", **kw) for i in range(count)]
    for data in msgs:
        site.deliver("fred@sample.demon.co.uk", data=data)
    return msgs


# ---------------------------------------------------------------- greeting, unknown commands

def test_greeting_is_ok_without_apop_timestamp(server):
    c = server.connect()
    assert c.greeting.startswith("+OK")
    assert "<" not in c.greeting, "an APOP timestamp makes curl use APOP: " + c.greeting


def test_unknown_and_empty_commands_get_err_in_both_states(server):
    c = server.connect()
    c.chat("""
        C: XYZZY
        S: -ERR
        C:
        S: -ERR
        C: USER sample
        S: +OK
        C: PASS pop secret
        S: +OK
        C: XYZZY 1 2 3
        S: -ERR
        C:
        S: -ERR
        C: NOOP
        S: +OK
    """)


def test_commands_are_case_insensitive(sample):
    fill(sample, 1)
    c = sample.start().connect()
    c.chat("""
        C: user sample
        S: +OK
        C: pass pop secret
        S: +OK
        C: stat
        S: +OK 1
        C: NoOp
        S: +OK
    """)


# ---------------------------------------------------------------- overlong lines

def test_overlong_line_gets_err_and_session_continues(sample):
    fill(sample, 1)
    c = sample.start().connect()
    c.err("USER " + "x" * 600)                     # AUTHORIZATION
    c.login("sample", POP_PW)
    c.err("NOOP " + "x" * 600)                     # TRANSACTION
    assert c.stat()[0] == 1
    c.err(b"STAT " + b"y" * 100_000)               # one -ERR for one huge line
    c.ok("NOOP")
    c.quit()


def test_a_line_of_exactly_512_octets_is_accepted(sample):
    # "PASS " + 505 octets + CRLF = 512 octets: the longest line allowed.
    sample.add_host("long", pop3="p" * 505)
    server = sample.start()
    c = server.connect()
    c.ok("USER long")
    c.err("PASS " + "p" * 506)                      # 513 octets: too long
    c.ok("USER long")                               # the session goes on
    c.ok("PASS " + "p" * 505)
    c.quit()


def test_overlong_line_in_a_pipeline_does_not_swallow_the_next_command(server):
    c = server.connect()
    c.send_raw(b"CAPA " + b"z" * 5000 + b"\r\nUSER sample\r\nPASS " + POP_PW.encode() + b"\r\nNOOP\r\n")
    assert c.reply().startswith("-ERR")
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")


def test_overlong_line_sent_slowly_in_pieces(server):
    c = server.connect()
    for _ in range(10):
        c.send_raw(b"a" * 100)
        time.sleep(0.01)
    c.send_raw(b"\r\n")
    assert c.reply().startswith("-ERR")
    c.login("sample", POP_PW)
    c.ok("NOOP")


def test_error_replies_stay_within_512_octets(server):
    c = server.connect()
    c.send("XYZZY" + "q" * 500)
    c.send("USER sample")
    c.send("PASS " + POP_PW)
    c.send("RETR " + "9" * 490)
    for _ in range(4):
        line = c.line_bytes()
        assert len(line) + 2 <= 512


# ---------------------------------------------------------------- NUL bytes, junk

def test_nul_bytes_get_err_and_no_crash(sample):
    fill(sample, 1)
    server = sample.start()
    c = server.connect()
    c.err(b"US\x00ER sample")
    c.err(b"\x00\x00\x00")
    c.login("sample", POP_PW)
    c.err(b"NO\x00OP")
    c.err(b"STAT\x00")
    c.err(b"RETR 1\x00")
    c.err(b"RETR \x001")
    c.ok("NOOP")
    assert c.stat() == (1, c.list()[1])
    c.quit()
    assert server.alive()


def test_binary_junk_gets_err_per_line_and_session_continues(sample):
    fill(sample, 1)
    server = sample.start()
    rng = random.Random(1939)
    alphabet = bytes(b for b in range(256) if b not in (10, 13))
    lines = [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(200)]
    c = server.connect()
    c.login("sample", POP_PW)
    c.send_raw(b"".join(line + b"\r\n" for line in lines))
    for i in range(len(lines)):
        got = c.reply()
        assert got.startswith("-ERR"), f"junk line {i} ({lines[i][:40]!r}) -> {got!r}"
    c.ok("NOOP")
    assert c.stat()[0] == 1
    c.quit()
    assert server.alive()


def test_raw_junk_without_line_ends_then_disconnect(server):
    rng = random.Random(2449)
    for _ in range(20):
        c = server.connect()
        c.send_raw(bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000))))
        c.abort()
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()
    assert server.alive()


# ---------------------------------------------------------------- line ends, pipelining

def test_bare_lf_commands_work(sample):
    msgs = fill(sample, 2)
    c = sample.start().connect()
    c.send_raw(b"USER sample\nPASS " + POP_PW.encode() + b"\nSTAT\n")
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK 2 ")
    c.send_raw(b"RETR 2\n")
    assert c.reply().startswith("+OK")
    assert b"".join(line + b"\r\n" for line in c.body_lines()) == returned(msgs[1])
    c.send_raw(b"QUIT\n")
    assert c.reply().startswith("+OK")


def test_pipelined_commands_answered_in_order(sample):
    msgs = fill(sample, 3)
    c = sample.start().connect()
    c.send_raw(("USER sample\r\nPASS " + POP_PW + "\r\nSTAT\r\nLIST\r\nRETR 1\r\nUIDL 2\r\nXYZZY\r\n"
                "TOP 3 0\r\nDELE 1\r\nRETR 1\r\nNOOP\r\nRSET\r\nSTAT\r\nQUIT\r\n").encode())
    assert c.reply().startswith("+OK")                      # USER
    assert c.reply().startswith("+OK")                      # PASS
    assert c.reply().startswith("+OK 3 ")                   # STAT
    assert c.reply().startswith("+OK")                      # LIST
    assert len(c.body_lines()) == 3
    assert c.reply().startswith("+OK")                      # RETR 1
    assert b"".join(line + b"\r\n" for line in c.body_lines()) == returned(msgs[0])
    assert c.reply().startswith("+OK 2 ")                   # UIDL 2
    assert c.reply().startswith("-ERR")                     # XYZZY
    assert c.reply().startswith("+OK")                      # TOP 3 0
    assert b"Subject: message 3" in b"\n".join(c.body_lines())
    assert c.reply().startswith("+OK")                      # DELE 1
    assert c.reply().startswith("-ERR")                     # RETR 1 (deleted)
    assert c.reply().startswith("+OK")                      # NOOP
    assert c.reply().startswith("+OK")                      # RSET
    assert c.reply().startswith("+OK 3 ")                   # STAT
    assert c.reply().startswith("+OK")                      # QUIT
    c.expect_closed()


def test_pipelined_failed_login_then_good_login_in_order(server):
    c = server.connect()
    c.send_raw(("USER sample\r\nPASS wrong\r\nUSER sample\r\nPASS " + POP_PW + "\r\nNOOP\r\n").encode())
    replies = [c.reply() for _ in range(5)]
    assert [r.split(" ")[0] for r in replies] == ["+OK", "-ERR", "+OK", "+OK", "+OK"], replies


def test_pipeline_sent_one_octet_at_a_time(server):
    c = server.connect()
    for octet in ("USER sample\r\nPASS " + POP_PW + "\r\nNOOP\r\n").encode():
        c.send_raw(bytes([octet]))
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")


# ---------------------------------------------------------------- stalled and dropped clients

def test_half_line_then_stall_does_not_block_other_sessions(sample):
    fill(sample, 1)
    server = sample.start()
    stalled = server.connect()
    stalled.send_raw(b"US")                        # half a command, then nothing
    other = server.connect()
    started = time.monotonic()
    other.login("sample", POP_PW)
    assert other.stat()[0] == 1
    other.quit()
    assert time.monotonic() - started < 2 * SLOW
    stalled.send_raw(b"ER sample\r\n")             # the stalled client finishes its line later
    assert stalled.reply().startswith("+OK")
    stalled.ok("PASS " + POP_PW)
    stalled.quit()


def test_client_that_never_reads_does_not_block_others(sample):
    stored = fill(sample, 1, headers=["X-Pad: " + "p" * 900] * 100)[0]   # ~90 KB
    server = sample.start()
    hog = server.connect(rcvbuf=4096)
    hog.login("sample", POP_PW)
    # Megabytes of replies it never reads, more than can be in flight: the
    # server is certainly still sending them, however fast the build.
    hog.send_raw(b"RETR 1\r\n" * (in_flight_bound(4096) // len(stored) + 1))
    time.sleep(0.5)
    hog2 = server.connect()
    hog2.send_raw(b"USER sam")
    c = server.connect()
    c.ok("CAPA")
    c.body_lines()
    c.ok("USER nobody")
    c.err("PASS nothing")
    hog.abort()
    hog2.abort()


@pytest.mark.site_options(top={"max_sessions_per_address": 60})
def test_thousand_connections_opened_and_dropped(server):
    started = time.monotonic()
    rng = random.Random(110)
    for _round in range(10):
        socks = []
        for i in range(100):
            s = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            socks.append(s)
            if i % 4 == 1:
                s.sendall(b"USER sam")                # half a line
            elif i % 4 == 2:
                s.sendall(b"NOOP\r\nCAPA\r\n")          # commands it never reads the answer to
        for i, s in enumerate(socks):
            if rng.random() < 0.5:                     # half with a reset, half with a FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    assert time.monotonic() - started < 60 * SLOW
    assert server.alive()
    # Still serving, and the dropped sessions do not count against a limit.
    many = [server.connect() for _ in range(50)]
    for c in many:
        assert c.greeting.startswith("+OK")
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()
    for c in many:
        c.close()


@pytest.mark.site_options(top={"max_sessions_per_address": 300, "login_timeout": "1h"})
def test_clients_that_reset_at_once_leave_nothing_waiting_at_shutdown(server):
    """A client that resets before its greeting is written ends its session
    before the session's login timer has started to wait: that timer must
    not be left waiting (for login_timeout, here an hour), holding the
    session and keeping sdpsd from stopping."""
    for _round in range(4):
        socks = [socket.create_connection((server.host, server.port), timeout=TIMEOUT) for _ in range(50)]
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()
    started = time.monotonic()
    assert server.stop(timeout=10 * SLOW) == 0
    assert time.monotonic() - started < 10 * SLOW


# ---------------------------------------------------------------- idle timer, SIGTERM

@pytest.mark.site_options(idle_timeout="2s")
def test_idle_timeout_closes_without_update(sample):
    fill(sample, 2)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uidls = c.uidl()
    c.ok("DELE 1")
    started = time.monotonic()
    c.expect_closed(within=2 + 8 * SLOW)
    waited = time.monotonic() - started
    assert waited >= 1.5, f"closed after {waited:.1f}s, the timer is 2s"
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.uidl() == uidls, "a message DELE'd before the idle timeout was removed"
    c.quit()


@pytest.mark.site_options(idle_timeout="2s")
def test_idle_timeout_applies_before_login_too(server):
    c = server.connect()
    c.ok("USER sample")
    c.expect_closed(within=2 + 8 * SLOW)


@pytest.mark.site_options(idle_timeout="2s")
def test_activity_keeps_an_idle_timer_session_open(server):
    c = server.connect()
    c.login("sample", POP_PW)
    for _ in range(4):
        time.sleep(1.0)
        c.ok("NOOP")
    c.quit()


def test_sigterm_closes_sessions_without_update(sample):
    fill(sample, 2)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uidls = c.uidl()
    c.ok("DELE 1")
    c.ok("DELE 2")
    assert server.stop(signal.SIGTERM) == 0
    c.expect_closed()
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.uidl() == uidls, "SIGTERM entered UPDATE"
    c.quit()


def test_sigterm_with_idle_and_stalled_clients_exits_promptly(server):
    a = server.connect()
    a.send_raw(b"USE")
    b = server.connect()
    b.login("sample", POP_PW)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5 * SLOW
    a.expect_closed()
    b.expect_closed()


# ---------------------------------------------------------------- --check

def run_check(config):
    result = subprocess.run([str(binary("sdpsd")), "-c", str(config), "--check"], capture_output=True,
                            timeout=TIMEOUT * 3)
    out = (result.stdout + result.stderr).decode("utf-8", "replace")
    if SANITIZE:
        assert sanitizer_report(out) is None, out
    return result.returncode, out


def test_check_accepts_the_shipped_config(tmp_path):
    # A copy of config/ works from anywhere (DESIGN.md section 2).
    shutil.copytree(SOURCE_DIR / "config", tmp_path / "config")
    code, out = run_check(tmp_path / "config" / "sdps.yaml")
    assert code == 0, out


def test_check_accepts_the_test_config(site):
    code, out = run_check(site.config)
    assert code == 0, out


def test_shipped_chain_is_the_documented_one():
    names = [(e["module"], e.get("name", e["module"])) for e in shipped_chain()]
    assert names == [("sasl", "sasl"), ("auth", "auth"), ("lock", "lock"), ("local_spool", "finchley"), ("local_spool", "docklands"),
                     ("merge", "merge"), ("commands", "commands"), ("extensions", "extensions")]


def test_check_refuses_an_unknown_module(site):
    chain = shipped_chain() + [{"module": "no_such_module"}]
    site.write_config(chain=chain)
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert "no_such_module" in out
    assert "sdps.yaml:" in out, "the message should name the file and line: " + out


def test_check_refuses_an_unknown_module_setting(site):
    site.write_config(module_settings={"auth": {"fial_delay": "1s"}})
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert "fial_delay" in out and "auth" in out, out
    line = next(i + 1 for i, text in enumerate(site.config.read_text().splitlines()) if "fial_delay" in text)
    assert f"sdps.yaml:{line}" in out, f"expected the line number {line}: {out}"


def test_check_refuses_an_unknown_top_level_setting(site):
    site.write_config(top={"idle_timout": "5m"})
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert "idle_timout" in out, out


def test_check_refuses_a_bad_setting_value(site):
    site.write_config(module_settings={"auth": {"fail_delay": "soon"}})
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert "fail_delay" in out, out


def test_check_and_the_admin_tool_refuse_a_key_set_twice(site):
    # YAML forbids it; yaml-cpp would keep one of the two without a word.
    text = site.config.read_text()
    first = len(text.splitlines()) + 1
    site.config.write_text(text + "banner: one\nbanner: two\n")
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert f"sdps.yaml:{first + 1}: 'banner' is set twice (first at line {first})" in out, out
    tool = site.sdps("host", "list", expect=EX_CONFIG)
    assert f"'banner' is set twice (first at line {first})" in tool.stderr.decode(), tool.stderr


def test_check_refuses_bad_yaml(site):
    site.config.write_text(site.config.read_text() + "  - module: [commands\n    name: : :\n")
    code, out = run_check(site.config)
    assert code == EX_CONFIG, out
    assert "sdps.yaml:" in out, out


def test_check_refuses_merge_without_spools(site):
    chain = [e for e in shipped_chain() if e["module"] != "local_spool"]
    site.write_config(chain=chain)
    code, out = run_check(site.config)
    assert code != 0, out
    assert "merge" in out or "spool" in out, out


def test_check_refuses_a_missing_file(tmp_path):
    code, out = run_check(tmp_path / "nonexistent.yaml")
    assert code != 0
    assert "nonexistent.yaml" in out


def test_server_with_bad_config_exits_78(site):
    site.write_config(chain=shipped_chain() + [{"module": "no_such_module"}])
    result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--listen", "127.0.0.1:0"],
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == EX_CONFIG, result.stderr


# ---------------------------------------------------------------- backpressure

def test_slow_reader_of_a_big_retr_does_not_grow_rss(sample):
    mib = 1024 * 1024
    line = b"0123456789abcdef" * 4 + b"\r\n"            # 66 octets
    body = line * (20 * mib // len(line))
    data = message(subject="big", body=body)
    sample.deliver("fred@sample.demon.co.uk", data=data)
    server = sample.start()
    c = server.connect(rcvbuf=8192)
    c.login("sample", POP_PW)
    c.ok("NOOP")
    time.sleep(0.3)
    before = server.rss_kib()
    c.send("RETR 1")
    peak = before
    for _ in range(int(6 * SLOW)):                       # read nothing for a while
        time.sleep(0.5)
        peak = max(peak, server.rss_kib())
    growth_mib = (peak - before) / 1024
    print(f"RSS before RETR {before} KiB, peak while not reading {peak} KiB")
    assert growth_mib < 8, f"RSS grew {growth_mib:.1f} MiB while a client did not read a 20 MiB RETR"
    # Then the client reads it all, intact.
    assert c.reply().startswith("+OK")
    digest = hashlib.sha256()
    size = 0
    for part in c.body_lines():
        digest.update(part + b"\r\n")
        size += len(part) + 2
    expected = returned(data)
    assert size == len(expected)
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    c.quit()


def test_pipelined_flood_from_a_client_that_never_reads_stays_bounded(sample):
    # Thousands of pipelined RETRs of a 1 MiB message, none of the replies
    # read: the server must stop reading commands rather than queue replies.
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="mib", body=("z" * 1022 + "\n") * 1024))
    server = sample.start()
    c = server.connect(rcvbuf=8192)
    c.login("sample", POP_PW)
    time.sleep(0.2)
    before = server.rss_kib()
    c.sock.settimeout(0.5)
    sent = 0
    flood = b"RETR 1\r\n" * 1000
    deadline = time.monotonic() + 10 * SLOW
    try:
        while time.monotonic() < deadline:
            sent += c.sock.send(flood)
    except (socket.timeout, BlockingIOError):
        pass                                       # the server stopped reading: good
    time.sleep(1.0)
    growth_mib = (server.rss_kib() - before) / 1024
    print(f"flood: {sent} octets of commands taken, RSS growth {growth_mib:.2f} MiB")
    assert sent < 20 * 1024 * 1024, f"the server kept reading commands: {sent} octets taken"
    assert growth_mib < 8, f"RSS grew {growth_mib:.1f} MiB for a client that reads nothing"
    c.abort()
    d = server.connect()
    wait_until(lambda: d.cmd("USER sample") and d.cmd("PASS " + POP_PW).startswith("+OK"), 5 * SLOW, 0.2,
               "the flooding session to end")
    d.quit()
    assert server.alive()


# ---------------------------------------------------------------- listeners

def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv4_and_ipv6_listeners(sample):
    server = sample.start(listen=("127.0.0.1:0", "[::1]:0"))
    hosts = sorted(host for host, _ in server.endpoints)
    assert hosts == ["127.0.0.1", "::1"]
    for host, port in server.endpoints:
        c = Pop3(port, host)
        c.login("sample", POP_PW)
        c.quit()


def test_listen_on_a_busy_port_fails_clearly(site):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--listen", f"127.0.0.1:{port}"],
                                capture_output=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert str(port) in result.stderr.decode()
