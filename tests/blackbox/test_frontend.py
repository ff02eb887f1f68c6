"""The front end over remote back ends (issue 4), as separate processes on
loopback: the shipped configs, a client that cannot tell the front end from
the embedded default, login in a fixed number of round trips, locks across
front ends, back ends killed, stopped or impersonated, the front-end secret,
and a POP3 client poking a back end directly.

Every other client-visible case of the embedded default (commands, LAST,
*ENV, locks, snapshot, dummy message, UPDATE, user logins, real clients)
runs through a front end too: test_frontend_{commands,extensions,maildrop,
auth,clients}.py repeat those modules' tests with frontend_harness's site.
"""

import hashlib
import os
import poplib
import re
import shutil
import socketserver
import subprocess
import threading
import time

import pytest

from conftest import POP_PW
from frontend_harness import FrontEndSite, held_link_bound, login_commands, substitute, write_secret
from sdps_harness import (SLOW, SOURCE_DIR, TIMEOUT, Pop3, ProtocolError, Site, binary, lines_longer_than, message,
                          returned, wait_until)
from sdps_harness import login_when_possible as harness_login_when_possible

READ_TIMEOUT = 2 * SLOW          # the front end's read_timeout in these tests, seconds


@pytest.fixture
def fe():
    """Host `sample`, back ends for finchley and docklands, front ends on
    demand; everything stopped (and continued, if stopped) at the end."""
    missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
    assert not missing, f"{', '.join(missing)} not built (set SDPS_BUILD_DIR)"
    f = FrontEndSite(Site(), read_timeout=f"{int(READ_TIMEOUT * 1000)}ms", connect_timeout=f"{int(2 * SLOW)}s")
    f.add_host("sample", pop3=POP_PW)
    yield f
    f.close()


@pytest.fixture
def fe1():
    """As `fe`, with every sdpsd on one event loop: links to the back ends
    are kept per loop, so each session finds the link kept before."""
    missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
    assert not missing, f"{', '.join(missing)} not built (set SDPS_BUILD_DIR)"
    f = FrontEndSite(Site(top={"threads": 1}), read_timeout=f"{int(READ_TIMEOUT * 1000)}ms",
                     connect_timeout=f"{int(2 * SLOW)}s")
    f.add_host("sample", pop3=POP_PW)
    yield f
    f.close()


def deliver(site, subject, *, to="fred", punt=None, body=None, sender="alice@example.com"):
    data = message(subject=subject, body=body or f"body of {subject}\n.a line with a leading dot\n",
                   to=f"{to}@sample")
    site.deliver(f"{to}@sample.demon.co.uk", data=data, punt=punt, sender=sender)
    return data


def punt_of(c, n):
    """The punt holding message n: *ENV line 2."""
    return c.env(n)[1]


def by_punt(c):
    out = {}
    for n in sorted(c.list()):
        out.setdefault(punt_of(c, n), []).append(n)
    return out


def login_when_possible(server, user="sample"):
    return harness_login_when_possible(server, user, POP_PW)


def run_sdpsd_check(config):
    return subprocess.run([str(binary("sdpsd")), "-c", str(config), "--check"], capture_output=True,
                          timeout=6 * TIMEOUT)


# ---------------------------------------------------------------- the shipped configs

def test_shipped_configs_check_and_administer_the_same_site(fe):
    """config/punt-*.yaml and config/frontend.yaml, copied as they are into
    a fresh site: they load, and `sdps -c` with each sees the same hosts
    and spools."""
    etc = fe.root / "shipped"
    etc.mkdir()
    for name in ("punt-finchley.yaml", "punt-docklands.yaml", "frontend.yaml", "sdps.yaml"):
        shutil.copy(SOURCE_DIR / "config" / name, etc / name)
    deliver(fe, "one", punt="finchley")
    deliver(fe, "two", punt="docklands")
    listings = set()
    for name in ("punt-finchley.yaml", "punt-docklands.yaml", "frontend.yaml"):
        result = run_sdpsd_check(etc / name)
        assert result.returncode == 0, f"{name}: {result.stderr.decode()}"
        hosts = subprocess.run([str(binary("sdps")), "-c", str(etc / name), "host", "list"], capture_output=True,
                               timeout=6 * TIMEOUT)
        assert hosts.returncode == 0 and b"sample" in hosts.stdout, f"{name}: {hosts.stderr.decode()}"
        spool = subprocess.run([str(binary("sdps")), "-c", str(etc / name), "spool", "list", "sample"],
                               capture_output=True, timeout=6 * TIMEOUT)
        assert spool.returncode == 0, f"{name}: {spool.stderr.decode()}"
        listings.add(spool.stdout)
    assert len(listings) == 1, "the three configs see different spools"
    assert b"finchley" in listings.pop()


def test_shipped_configs_serve_as_three_processes(fe):
    """The shipped files with only their addresses changed (ephemeral ports)."""
    one = deliver(fe, "one", punt="finchley")
    two = deliver(fe, "two", punt="docklands")
    ports = {}
    for punt in ("finchley", "docklands"):
        backend = fe.run(fe.backend_config(punt, name=f"shipped-{punt}"))
        ports[punt] = backend.port
    text = (SOURCE_DIR / "config" / "frontend.yaml").read_text()
    text = substitute(text, r"^listen: .*$", "listen: [127.0.0.1:0]", "frontend.yaml")
    text = substitute(text, r"backend: 127\.0\.0\.1:1111", f"backend: 127.0.0.1:{ports['finchley']}", "frontend.yaml")
    text = substitute(text, r"backend: 127\.0\.0\.1:1112", f"backend: 127.0.0.1:{ports['docklands']}", "frontend.yaml")
    text = substitute(text, r"^(customer_domain: .*)$", r"\1\npassword_cost: min", "frontend.yaml")
    config = fe.root / "etc" / "shipped-frontend.yaml"
    config.write_text(text)
    server = fe.run(config)
    c = server.connect()
    assert c.login("sample", POP_PW).startswith("+OK sample has 2 messages")
    assert {c.retr(1), c.retr(2)} == {returned(one), returned(two)}
    c.ok("DELE 1")
    c.quit()
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 1
    c.quit()


# ---------------------------------------------------------------- indistinguishable

MULTI = {"CAPA", "LIST", "UIDL", "RETR", "TOP", "*ENV"}

TRANSCRIPT = [
    "CAPA", "USER sample", f"PASS {POP_PW}", "STAT", "LIST", "UIDL", "LIST 2", "UIDL 3", "LAST",
    "TOP 1 0", "TOP 2 2", "TOP 3 99999999", "TOP 4 1",
    "*ENV 1", "*ENV 2", "*ENV 3", "*ENV 4",
    "RETR 0", "RETR 99", "RETR x", "TOP 1", "TOP x 1", "*ENV 99", "*ENV", "XLIST", "XAUTH",
    "DELE 2", "LIST", "STAT", "LAST", "DELE 2", "*ENV 2", "TOP 2 0", "RSET", "LAST", "NOOP", "LIST 2",
    "QUIT",
]


def transcript(port, commands=TRANSCRIPT):
    """Every octet the server sends, command by command."""
    c = Pop3(port, greeting=False)
    out = [c.line_bytes()]
    for line in commands:
        c.send(line)
        status = c.line_bytes()
        out.append(line.encode() + b" -> " + status)
        verb = line.split(" ")[0].upper()
        single = verb in ("LIST", "UIDL") and " " in line
        if status.startswith(b"+OK") and verb in MULTI and not single:
            out.extend(c.raw_body_lines())
    c.expect_closed()
    c.close()
    return out


def test_a_client_cannot_tell_the_front_end_from_the_embedded_default(fe):
    deliver(fe, "one", punt="finchley", to="fred")
    deliver(fe, "two", punt="docklands", to="jane", sender="")
    deliver(fe, "three", punt="finchley", to="fred", body=".\n..\n.x\nend\n")
    deliver(fe, "four", punt="docklands", to="Fred.Bloggs", sender="<bob@example.org>")
    embedded = fe.start_embedded()
    expected = transcript(embedded.port)
    embedded.stop()
    front = fe.start()
    got = transcript(front.port)
    for want, have in zip(expected, got):
        assert have == want
    assert len(got) == len(expected)


def test_retrieval_and_removal_across_both_punts(fe):
    msgs = {
        "f1": deliver(fe, "f1", punt="finchley"),
        "d1": deliver(fe, "d1", punt="docklands", to="jane"),
        "f2": deliver(fe, "f2", punt="finchley", to="jane"),
        "d2": deliver(fe, "d2", punt="docklands"),
    }
    server = fe.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    assert by_punt(c) == {"finchley": [1, 3], "docklands": [2, 4]}
    for n, subject in enumerate(["f1", "d1", "f2", "d2"], start=1):
        assert c.retr(n) == returned(msgs[subject])
        assert c.env(n)[0] == "RD"
    c.ok("DELE 1")
    c.ok("DELE 4")
    assert c.ok("LAST") == "+OK 4"
    assert "(2 messages removed)" in c.quit()
    for n in (1, 4):
        assert fe.message_files(uids[n]) == [], f"message {n} is still in the spool"
    for n in (2, 3):
        assert fe.message_files(uids[n]), f"message {n} was removed"
    c = server.connect()
    c.login("sample", POP_PW)
    assert list(c.uidl().values()) == [uids[2], uids[3]]
    assert [c.env(n)[0] for n in (1, 2)] == ["RD", "RD"]   # the read flags persisted on the punts
    c.quit()


def test_login_costs_the_same_round_trips_whatever_the_maildrop_size(fe1):
    """The back end sees, on a new link, XAUTH (answering its greeting's
    challenge), CAPA, USER, PASS and XLIST in one write; on the link kept
    from the session before, USER, PASS and XLIST; nothing for STAT, LIST
    or UIDL; and XRESET when the session is over (the link goes back to the
    pool): the same with 1 message or 60. One event loop: links are kept per
    loop, and every session here must find the one kept before."""
    fe = fe1
    fe.backend_top["log_level"] = "debug"
    deliver(fe, "first", punt="finchley")
    server = fe.start()
    finchley = fe.backends["finchley"]

    def commands_seen():
        return login_commands(finchley.log())     # not the background probe's

    def session(expected):
        before = len(commands_seen())
        c = server.connect()
        c.login("sample", POP_PW)
        c.stat()
        c.list()
        c.uidl()
        c.quit()
        return wait_until(lambda: commands_seen()[before:] if len(commands_seen()) >= before + expected else None,
                          what="the back end's log")

    first = session(6)
    assert first == ["XAUTH", "CAPA", "USER", "PASS", "XLIST", "XRESET"]
    small = session(4)
    for i in range(59):
        fe.deliver("fred@sample.demon.co.uk", data=message(subject=f"m{i}"), punt="finchley")
    large = session(4)
    assert small == large == ["USER", "PASS", "XLIST", "XRESET"]
    assert commands_seen().count("XAUTH") == 1


def test_pipelined_commands_through_the_front_end(fe):
    """mpop's way: everything in one write, the replies in order."""
    a = deliver(fe, "a", punt="finchley")
    b = deliver(fe, "b", punt="docklands")
    server = fe.start()
    c = server.connect()
    c.send_raw(f"USER sample\r\nPASS {POP_PW}\r\nSTAT\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n".encode())
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK sample has 2 messages")
    assert c.reply().startswith("+OK 2 ")
    assert c.reply().startswith("+OK")
    assert b"".join(line + b"\r\n" for line in c.body_lines()) == returned(a)
    assert c.reply().startswith("+OK")
    assert b"".join(line + b"\r\n" for line in c.body_lines()) == returned(b)
    assert c.reply().startswith("+OK")
    assert c.reply().startswith("+OK")
    assert "(2 messages removed)" in c.reply()
    c.expect_closed()


# ---------------------------------------------------------------- locks across front ends

def test_locks_hold_across_two_front_ends_and_die_with_one(fe):
    deliver(fe, "one", punt="finchley")
    deliver(fe, "two", punt="docklands")
    one = fe.start(name="frontend-one")
    two = fe.start(name="frontend-two")
    a = one.connect()
    a.login("sample", POP_PW)
    for user in ("sample", "fred+sample"):
        b = two.connect()
        b.ok(f"USER {user}")
        reply = b.cmd(f"PASS {POP_PW}")
        assert reply.startswith("-ERR [IN-USE]"), f"{user} on the other front end: {reply!r}"
        b.close()
    a.quit()
    b = login_when_possible(two, "fred+sample")            # the host's lock went with QUIT
    c = one.connect()
    c.login("jane+sample", POP_PW)                          # another user: allowed
    d = one.connect()
    d.ok("USER fred+sample")
    assert d.cmd(f"PASS {POP_PW}").startswith("-ERR [IN-USE]")
    d.close()
    c.quit()
    two.kill()                                              # the holder's front end dies
    b.close()
    e = login_when_possible(one, "fred+sample")
    e.quit()


# ---------------------------------------------------------------- back ends that die

def test_a_backend_killed_before_the_session_is_left_out_and_its_mail_kept(fe):
    f = deliver(fe, "on finchley", punt="finchley")
    d = deliver(fe, "on docklands", punt="docklands")
    server = fe.start()
    c = server.connect()
    c.login("sample", POP_PW)
    finchley_uidl = c.uidl()[1]
    c.quit()
    fe.backends["finchley"].kill()
    c = server.connect()
    reply = c.login("sample", POP_PW)
    assert reply.startswith("+OK sample has 1 message")
    assert "finchley" in reply and "unavailable" in reply, reply
    assert c.retr(1) == returned(d)
    c.ok("DELE 1")
    c.quit()
    assert "finchley" in server.log()
    fe.start_backend("finchley")                            # the same port again
    c = login_when_possible(server)
    assert c.uidl() == {1: finchley_uidl}
    assert c.retr(1) == returned(f)
    c.quit()


def test_a_backend_killed_during_the_session(fe):
    f1 = deliver(fe, "f1", punt="finchley")
    deliver(fe, "d1", punt="docklands")
    deliver(fe, "f2", punt="finchley")
    d2 = deliver(fe, "d2", punt="docklands")
    server = fe.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    assert by_punt(c) == {"finchley": [1, 3], "docklands": [2, 4]}
    fe.backends["finchley"].kill()
    reply = c.cmd("RETR 1")
    assert reply.startswith("-ERR [SYS/TEMP]"), reply
    assert c.cmd("TOP 3 0").startswith("-ERR [SYS/TEMP]")
    # by_punt() asked every envelope already: the front end keeps what the
    # back end said for the session, as it keeps the listing.
    assert c.env(3)[1] == "finchley"
    assert c.retr(4) == returned(d2)                        # the other punt keeps working
    assert c.stat()[0] == 4                                 # the snapshot is intact
    c.ok("DELE 1")
    c.ok("DELE 2")
    reply = c.cmd("QUIT")
    assert reply.startswith("-ERR [SYS/TEMP] 1 of 2 messages"), reply
    c.expect_closed()
    assert fe.message_files(uids[2]) == [], "docklands did not remove its deleted message"
    assert fe.message_files(uids[1]), "finchley's message went although its back end never saw QUIT"
    fe.start_backend("finchley")
    c = login_when_possible(server)
    assert list(c.uidl().values()) == [uids[1], uids[3], uids[4]]
    assert c.retr(1) == returned(f1)
    c.quit()


# ---------------------------------------------------------------- back ends that stop answering

def test_a_stopped_backend_at_login_is_left_out_within_the_time_limit(fe):
    deliver(fe, "f", punt="finchley")
    d = deliver(fe, "d", punt="docklands")
    server = fe.start()
    with fe.stopped(fe.backends["finchley"]):
        c = server.connect(timeout=READ_TIMEOUT + 10 * SLOW)
        c.ok("USER sample")
        started = time.monotonic()
        reply = c.cmd(f"PASS {POP_PW}")
        took = time.monotonic() - started
        assert reply.startswith("+OK sample has 1 message") and "finchley" in reply, reply
        assert took < READ_TIMEOUT + 3 * SLOW, f"PASS took {took:.1f}s with a read_timeout of {READ_TIMEOUT}s"
        assert c.retr(1) == returned(d)
        c.quit()
    c = login_when_possible(server)                        # continued: served again
    assert c.stat()[0] == 2
    c.quit()


def test_a_backend_stopped_mid_session_answers_sys_temp_within_the_time_limit(fe):
    deliver(fe, "f", punt="finchley")
    d = deliver(fe, "d", punt="docklands")
    server = fe.start()
    c = server.connect(timeout=READ_TIMEOUT + 10 * SLOW)
    c.login("sample", POP_PW)
    assert by_punt(c) == {"finchley": [1], "docklands": [2]}
    with fe.stopped(fe.backends["finchley"]):
        started = time.monotonic()
        reply = c.cmd("RETR 1")
        took = time.monotonic() - started
        assert reply.startswith("-ERR [SYS/TEMP]"), reply
        assert took < READ_TIMEOUT + 3 * SLOW, f"RETR took {took:.1f}s with a read_timeout of {READ_TIMEOUT}s"
        assert c.retr(2) == returned(d)
        c.ok("NOOP")
    c.quit()
    c = login_when_possible(server)
    assert c.stat()[0] == 2, "a stopped back end lost mail"
    c.quit()


def test_a_backend_stopped_in_the_middle_of_a_message_cannot_hang_the_client(fe):
    """Stopped in the middle for certain, whatever the build's speed: the
    link holds the reply after 64 KiB until the back end is stopped, and the
    message is longer than all the back end can have written by then."""
    big = message(subject="big", body=lines_longer_than(held_link_bound()))
    fe.deliver("fred@sample.demon.co.uk", data=big, punt="finchley")
    fe.relay("finchley")
    server = fe.start()
    c, link = fe.retr_held(server, "sample", POP_PW, punt="finchley", timeout=READ_TIMEOUT + 10 * SLOW)
    with fe.stopped(fe.backends["finchley"]):
        link.release()                                      # what the back end wrote, then nothing
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="closed"):
            c.body_lines()                                  # never the final "."
        took = time.monotonic() - started
    assert took < READ_TIMEOUT + 20 * SLOW, f"the client waited {took:.1f}s"
    c = login_when_possible(server)
    assert c.retr(1) == returned(big)
    c.quit()


# ---------------------------------------------------------------- keeping back-end links alive

@pytest.mark.parametrize("keepalive,survives", [("500ms", True), ("0", False)])
def test_an_idle_session_keeps_its_backend_links_alive(keepalive, survives):
    """The back ends' autologout timer (2s here) must not end a session the
    client keeps alive on the front end: the front end NOOPs idle links."""
    with Site() as site:
        fe = FrontEndSite(site, keepalive=keepalive, backend_top={"idle_timeout": "2s"})
        try:
            fe.add_host("sample", pop3=POP_PW)
            f = deliver(fe, "f", punt="finchley")
            server = fe.start()
            c = server.connect()
            c.login("sample", POP_PW)
            time.sleep(2.0 + 1.5 * SLOW)         # past the back ends' 2s autologout
            reply = c.cmd("RETR 1")
            if survives:
                assert reply.startswith("+OK"), reply
                assert b"".join(line + b"\r\n" for line in c.body_lines()) == returned(f)
            else:
                assert reply.startswith("-ERR [SYS/TEMP]"), reply
            c.quit()
        finally:
            for server in list(fe.paused):
                fe.cont(server)


# ---------------------------------------------------------------- the front-end secret

def test_a_front_end_with_another_secret_reads_nothing(fe):
    deliver(fe, "f", punt="finchley")
    fe.start()                                              # the back ends, with the right secret
    write_secret(fe.root / "var" / "other.secret")
    wrong = fe.start(name="frontend-wrong", secret="../var/other.secret")
    c = wrong.connect()
    c.ok("USER sample")
    reply = c.cmd(f"PASS {POP_PW}")
    assert reply.startswith("-ERR [SYS/TEMP]"), reply
    c.close()
    assert "refused this front end's proof" in wrong.log()
    for backend in fe.backends.values():
        wait_until(lambda: "XAUTH from" in backend.log() and "refused" in backend.log(), what="the back end's log")


@pytest.mark.parametrize("problem", ["missing", "world-readable", "too short"])
@pytest.mark.parametrize("side", ["frontend", "backend"])
def test_a_missing_or_unsafe_secret_refuses_to_start(fe, side, problem):
    path = fe.root / "var" / "bad.secret"
    if problem == "world-readable":
        write_secret(path, mode=0o644)
    elif problem == "too short":
        write_secret(path, b"0123456789\n")
    fe.ports.update(finchley=1, docklands=2)  # never contacted: --check only
    config = (fe.frontend_config("frontend-bad", secret="../var/bad.secret") if side == "frontend" else
              fe.backend_config("finchley", secret="../var/bad.secret", name="punt-bad"))
    result = run_sdpsd_check(config)
    stderr = result.stderr.decode()
    assert result.returncode == 78, stderr
    assert "bad.secret" in stderr
    hint = {"missing": "head -c 32 /dev/urandom", "world-readable": "chmod 600", "too short": "between 16"}[problem]
    assert hint in stderr


# ---------------------------------------------------------------- poking a back end

def key_of(secret_file):
    """docs/backend-protocol.md: the key is BLAKE2b-256 of the file without
    trailing white space."""
    return hashlib.blake2b(secret_file.read_bytes().rstrip(b"\r\n \t"), digest_size=32).digest()


def xauth_proof(key, side, server_nonce, frontend_nonce, punt):
    text = f"sdps-xauth-1 {side} {server_nonce} {frontend_nonce} {punt}".encode()
    return hashlib.blake2b(text, key=key, digest_size=32).hexdigest()


def test_a_pop3_client_poking_a_backend(fe):
    m = deliver(fe, "f", punt="finchley")
    fe.start_backends()
    port = fe.ports["finchley"]
    # Without XAUTH: nothing.
    p = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    greeting = p.getwelcome().decode().split()
    assert greeting[0] == "+OK" and len(greeting[1]) == 64 and greeting[2] == "finchley", greeting
    for line in ("USER sample", "PASS anything", "STAT", "XLIST", "RETR 1", "XREAD 1", "*ENV 1"):
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p._shortcmd(line)
    assert "XAUTH" in p.capa()
    challenge = p._shortcmd("XAUTH").decode().split()
    assert challenge[0] == "+OK" and len(challenge[1]) == 64 and challenge[2] == "finchley"
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd(f"XAUTH {'0' * 64} {'0' * 64}")
    with pytest.raises((EOFError, OSError, poplib.error_proto)):
        p.noop()                                            # a refused XAUTH closes the connection
    p.close()
    # With the secret, computed as the protocol document says.
    key = key_of(fe.secret)
    p = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    server_nonce = p._shortcmd("XAUTH").decode().split()[1]
    frontend_nonce = os.urandom(32).hex()
    reply = p._shortcmd(f"XAUTH {frontend_nonce} "
                        f"{xauth_proof(key, 'frontend', server_nonce, frontend_nonce, 'finchley')}").decode()
    assert reply.split()[1] == xauth_proof(key, "backend", server_nonce, frontend_nonce, "finchley")
    p.user("sample")
    assert p.pass_("anything: the front end checked the password").startswith(b"+OK sample has 1 message")
    listing = p._longcmd("XLIST")[1]
    assert len(listing) == 1
    number, uidl, size, arrival = listing[0].decode().split()
    assert number == "1" and int(size) == len(returned(m)) and int(arrival) > 0
    assert p.uidl(1).split()[2].decode() == uidl
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == returned(m)
    assert p._longcmd("*ENV 1")[1][0] == b"RD"
    p.quit()


class _Impostor(socketserver.ThreadingTCPServer):
    """Says it is finchley's back end and lists a message, without the secret."""
    allow_reuse_address = True
    daemon_threads = True


class _ImpostorHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"+OK impostor\r\n")
        for raw in self.rfile:
            verb = raw.split()[0].upper() if raw.split() else b""
            if verb == b"XAUTH" and len(raw.split()) == 1:
                self.wfile.write(b"+OK " + b"a" * 64 + b" finchley\r\n")
            elif verb == b"XAUTH":
                self.wfile.write(b"+OK " + b"b" * 64 + b"\r\n")
            elif verb == b"XLIST":
                self.wfile.write(b"+OK\r\n1 planted 10 1\r\n.\r\n")
            else:
                self.wfile.write(b"+OK\r\n")


def test_a_front_end_trusts_no_backend_without_the_secret(fe):
    d = deliver(fe, "d", punt="docklands")
    fe.start_backends()
    impostor = _Impostor(("127.0.0.1", 0), _ImpostorHandler)
    thread = threading.Thread(target=impostor.serve_forever, daemon=True)
    thread.start()
    try:
        ports = dict(fe.ports, finchley=impostor.server_address[1])
        config = fe.frontend_config("frontend-impostor", ports=ports)
        server = fe.run(config)
        c = server.connect()
        reply = c.login("sample", POP_PW)
        assert reply.startswith("+OK sample has 1 message") and "finchley" in reply, reply
        assert "planted" not in c.uidl().values()
        assert c.retr(1) == returned(d)
        c.quit()
        assert "does not hold the front-end secret" in server.log()
    finally:
        impostor.shutdown()
        impostor.server_close()
