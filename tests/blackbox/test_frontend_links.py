"""Front-end links that outlive sessions (issue 20): each event loop of a
front end keeps its authenticated links to each back end, a session borrows
one per punt and gives it back, and the back end resets it (XRESET) so the
next session starts clean. Real back ends on loopback, killed, restarted or
given another secret between sessions and during one; the pool exhausted; a
back end from before XRESET (a Python stand-in speaking the old protocol)
and a front end from before (poplib speaking it).

Front ends here run one event loop (`threads: 1`): links are kept per loop,
and each session must find the one kept before.
"""

import hashlib
import os
import re
import socket
import socketserver
import threading
import time
from datetime import datetime

import pytest

from conftest import POP_PW
from frontend_harness import FrontEndSite, login_commands, write_secret
from sdps_harness import SLOW, TIMEOUT, Site, binary, message, returned, wait_until

READ_TIMEOUT = 2 * SLOW


def make_site(**link):
    missing = [name for name in ("sdpsd", "sdps") if not binary(name).exists()]
    assert not missing, f"{', '.join(missing)} not built (set SDPS_BUILD_DIR)"
    f = FrontEndSite(Site(top={"threads": 1}), read_timeout=f"{int(READ_TIMEOUT * 1000)}ms",
                     connect_timeout=f"{int(2 * SLOW)}s", backend_top={"log_level": "debug"}, link=link)
    f.add_host("sample", pop3=POP_PW)
    f.add_host("other", pop3=POP_PW)
    return f


@pytest.fixture
def fe():
    """Hosts `sample` and `other`; links refused [IN-USE] are not retried
    (in_use_wait: 0), so a lock still held shows at once."""
    f = make_site(in_use_wait=0)
    yield f
    f.close()


def deliver(site, subject, punt, to="fred", host="sample"):
    data = message(subject=subject, to=f"{to}@{host}")
    site.deliver(f"{to}@{host}.demon.co.uk", data=data, punt=punt)
    return data


def commands(backend, verb):
    """How many times `backend` ran `verb` (its debug log) on the links that
    carried logins (not the background probe's)."""
    return login_commands(backend.log()).count(verb)


def session(server, user="sample"):
    c = server.connect()
    reply = c.login(user, POP_PW)
    return c, reply


# ---------------------------------------------------------------- reuse

def test_sessions_reuse_the_links_xauth_once_per_link(fe):
    f = deliver(fe, "f", "finchley")
    d = deliver(fe, "d", "docklands")
    server = fe.start()
    for _ in range(5):
        c, reply = session(server)
        assert reply.startswith("+OK sample has 2 messages"), reply
        assert {c.retr(1), c.retr(2)} == {returned(f), returned(d)}
        c.quit()
    for punt, backend in fe.backends.items():
        assert commands(backend, "XAUTH") == 1, f"{punt}: one link, authenticated once"
        assert commands(backend, "PASS") == 5
        assert commands(backend, "XRESET") == 5
        assert commands(backend, "QUIT") == 0


def test_a_reset_releases_the_lock_before_the_client_hears_quits_reply(fe):
    """A second client gets in at once, through another front end too: no
    [IN-USE] (in_use_wait: 0 believes the first one)."""
    deliver(fe, "f", "finchley")
    one = fe.start(name="frontend-one")
    two = fe.start(name="frontend-two")
    for server in (one, two, one):
        c, reply = session(server)
        assert reply.startswith("+OK sample has 1 message"), reply
        c.quit()
        other = [s for s in (one, two) if s is not server][0]
        c, reply = session(other)
        assert reply.startswith("+OK sample has 1 message"), reply
        c.quit()


def test_a_client_that_drops_the_connection_releases_the_lock_and_removes_nothing(fe):
    f = deliver(fe, "f", "finchley")
    server = fe.start()
    c, _ = session(server)
    c.ok("DELE 1")
    c.close()                                   # no QUIT: no UPDATE
    finchley = fe.backends["finchley"]
    wait_until(lambda: commands(finchley, "XRESET") == 1, what="the link's reset")
    c, reply = session(server)
    assert reply.startswith("+OK sample has 1 message"), reply
    assert c.retr(1) == returned(f)
    c.quit()
    assert commands(finchley, "XAUTH") == 1     # the same link


# ---------------------------------------------------------------- back ends that die

def test_a_backend_restarted_between_sessions_costs_no_client_anything(fe):
    f = deliver(fe, "f", "finchley")
    d = deliver(fe, "d", "docklands")
    server = fe.start()
    c, _ = session(server)
    c.quit()
    fe.backends["finchley"].kill()              # its end of the kept link closes
    fe.start_backend("finchley")                # the same port
    for _ in range(2):
        c, reply = session(server)
        assert reply == f"+OK sample has 2 messages ({len(returned(f)) + len(returned(d))} octets)", reply
        assert {c.retr(1), c.retr(2)} == {returned(f), returned(d)}
        c.quit()


def test_a_backend_killed_mid_session_and_restarted_serves_the_next_session_in_full(fe):
    f = deliver(fe, "f", "finchley")
    d = deliver(fe, "d", "docklands")
    server = fe.start()
    c, _ = session(server)
    on_finchley = next(n for n in (1, 2) if c.env(n)[1] == "finchley")
    fe.backends["finchley"].kill()
    reply = c.cmd(f"TOP {on_finchley} 0")
    assert reply.startswith("-ERR [SYS/TEMP]"), reply
    assert c.retr(3 - on_finchley) == returned(d)
    c.quit()
    fe.start_backend("finchley")
    c, reply = session(server)                  # no login_when_possible: at once, and whole
    assert reply.startswith("+OK sample has 2 messages") and "unavailable" not in reply, reply
    assert {c.retr(1), c.retr(2)} == {returned(f), returned(d)}
    c.quit()


def test_a_kept_link_whose_backend_now_refuses_xauth_leaves_the_punt_out_until_it_is_fixed(fe):
    """The back end is restarted with another secret between sessions: the
    kept link is dead, the new one's XAUTH is refused, the punt is left out
    (never a hang); back with the right secret, the next session is whole."""
    deliver(fe, "f", "finchley")
    d = deliver(fe, "d", "docklands")
    server = fe.start()
    c, _ = session(server)
    c.quit()
    port = fe.ports["finchley"]
    fe.backends["finchley"].kill()
    write_secret(fe.root / "var" / "other.secret")
    config = fe.backend_config("finchley", listen=f"127.0.0.1:{port}", secret="../var/other.secret",
                               name="punt-finchley-other")
    impostor = fe.run(config, listen=[f"127.0.0.1:{port}"])
    started = time.monotonic()
    c, reply = session(server)
    assert time.monotonic() - started < READ_TIMEOUT + 5 * SLOW
    assert reply.startswith("+OK sample has 1 message") and "finchley is unavailable" in reply, reply
    assert c.retr(1) == returned(d)
    c.quit()
    assert "refused this front end's proof" in server.log()
    impostor.kill()
    fe.start_backend("finchley")
    c, reply = session(server)
    assert reply.startswith("+OK sample has 2 messages"), reply
    c.quit()


# ---------------------------------------------------------------- the pool exhausted

def test_an_exhausted_pool_makes_a_login_wait_then_leaves_the_punts_out_never_hangs():
    fe = make_site(max_links=1, link_wait="1s")
    try:
        deliver(fe, "s", "finchley")
        o = deliver(fe, "o", "finchley", to="jim", host="other")
        server = fe.start()
        holder, _ = session(server)             # holds the one link to each back end
        started = time.monotonic()
        c = server.connect()
        c.ok("USER other")
        reply = c.cmd(f"PASS {POP_PW}")
        took = time.monotonic() - started
        assert reply.startswith("-ERR [SYS/TEMP]"), reply   # no punt could be reached
        assert 1.0 <= took < 1.0 + 5 * SLOW, f"PASS took {took:.1f}s with link_wait 1s"
        # Both punts waited link_wait at once (their logins run side by
        # side), not one after the other: their give-ups are logged within
        # a moment of each other, not a second apart.
        gave_up = [datetime.fromisoformat(line.split()[0].rstrip("Z"))
                   for line in server.log().splitlines() if "no link free within 1s (max_links 1" in line]
        assert len(gave_up) == 2, server.log()
        assert abs((gave_up[1] - gave_up[0]).total_seconds()) < 0.5, gave_up
        c.close()
        holder.quit()                           # the links come back
        c, reply = session(server, "other")
        assert reply.startswith("+OK other has 1 message"), reply
        assert c.retr(1) == returned(o)
        c.quit()
    finally:
        fe.close()


def test_a_login_waiting_for_a_link_takes_the_one_given_back():
    fe = make_site(max_links=1, link_wait=f"{int(10 * SLOW)}s")
    try:
        deliver(fe, "s", "finchley")
        server = fe.start()
        holder, _ = session(server)
        c = server.connect(timeout=20 * SLOW)
        c.ok("USER other")
        c.send(f"PASS {POP_PW}")                # waits for a link ...
        time.sleep(0.2)
        holder.quit()                           # ... given back here
        reply = c.reply()
        assert reply.startswith("+OK other has 0 messages"), reply
        c.quit()
        for backend in fe.backends.values():
            assert commands(backend, "XAUTH") == 1
    finally:
        fe.close()


# ---------------------------------------------------------------- compatibility

def key_of(secret_file):
    return hashlib.blake2b(secret_file.read_bytes().rstrip(b"\r\n \t"), digest_size=32).digest()


def xauth_proof(key, side, server_nonce, frontend_nonce, punt):
    text = f"sdps-xauth-1 {side} {server_nonce} {frontend_nonce} {punt}".encode()
    return hashlib.blake2b(text, key=key, digest_size=32).hexdigest()


class _OldBackend(socketserver.ThreadingTCPServer):
    """A back end from before XRESET, holding one message for `sample`:
    its CAPA does not list XRESET, QUIT and XUPDATE end the connection. It
    records each connection's commands."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, key, punt, body):
        super().__init__(("127.0.0.1", 0), _OldBackendHandler)
        self.key, self.punt, self.body = key, punt, body
        self.connections: list[list[str]] = []
        self.lock = threading.Lock()


class _OldBackendHandler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server
        seen: list[str] = []
        with srv.lock:
            srv.connections.append(seen)
        nonce = os.urandom(32).hex()
        self.wfile.write(f"+OK {nonce} {srv.punt} an older back end\r\n".encode())
        logged_in = deleted = False
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            words = line.split()
            verb = words[0].upper() if words else ""
            seen.append(line if verb in ("CAPA", "XLIST", "QUIT", "XUPDATE") else verb)
            if verb == "XAUTH" and len(words) == 3:
                if words[2] != xauth_proof(srv.key, "frontend", nonce, words[1], srv.punt):
                    self.wfile.write(b"-ERR [AUTH] XAUTH refused\r\n")
                    return
                self.wfile.write(f"+OK {xauth_proof(srv.key, 'backend', nonce, words[1], srv.punt)}\r\n".encode())
            elif verb == "CAPA":
                self.wfile.write(b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nXAUTH\r\n.\r\n")
            elif verb == "USER":
                self.wfile.write(b"+OK send PASS\r\n")
            elif verb == "PASS":
                logged_in = True
                self.wfile.write(f"+OK sample has 1 message ({len(srv.body)} octets)\r\n".encode())
            elif verb == "XLIST" and logged_in:
                self.wfile.write(f"+OK\r\n1 old-1 {len(srv.body)} 1700000000000000\r\n.\r\n".encode())
            elif verb == "RETR":
                stuffed = re.sub(rb"(?m)^\.", b"..", srv.body)
                self.wfile.write(f"+OK {len(srv.body)} octets\r\n".encode() + stuffed + b".\r\n")
            elif verb == "DELE":
                deleted = True
                self.wfile.write(b"+OK\r\n")
            elif verb == "XUPDATE":
                self.wfile.write(b"+OK 1 0\r\n" if deleted else b"+OK 0 0\r\n")
                return
            elif verb == "QUIT":
                self.wfile.write(b"+OK bye\r\n")
                return
            else:
                self.wfile.write(b"-ERR unknown command\r\n")


def test_a_backend_without_xreset_gets_a_link_per_session_ended_as_before(fe):
    """A new front end against an old back end: it sees no XRESET in CAPA
    and falls back to one connection per session, ended with QUIT, or with
    XUPDATE after the client's deletions."""
    d = deliver(fe, "d", "docklands")
    fe.start_backends()
    body = b"Subject: old\r\n\r\n.dotted\r\nend\r\n"
    old = _OldBackend(key_of(fe.secret), "finchley", body)
    thread = threading.Thread(target=old.serve_forever, daemon=True)
    thread.start()
    try:
        config = fe.frontend_config("frontend-old", ports=dict(fe.ports, finchley=old.server_address[1]))
        server = fe.run(config)
        for deleting in (False, True):
            c, reply = session(server)
            assert reply.startswith("+OK sample has 2 messages"), reply
            assert returned(d) in (c.retr(1), c.retr(2))
            assert body in (c.retr(1), c.retr(2))
            if deleting:
                c.ok("DELE 1" if c.retr(1) == body else "DELE 2")
            c.quit()
        # The front end's background probe has a connection of its own,
        # which never logs in: the sessions' are those with USER.

        def logins():
            return [seen for seen in list(old.connections) if "USER" in seen]
        wait_until(lambda: len(logins()) == 2 and all(seen[-1] in ("QUIT", "XUPDATE") for seen in logins()),
                   what="both sessions' connections ended")
        assert [seen[:2] for seen in logins()] == [["XAUTH", "CAPA"]] * 2
        assert [seen[-1] for seen in logins()] == ["QUIT", "XUPDATE"]
        assert "XRESET" not in sum(old.connections, [])
    finally:
        old.shutdown()
        old.server_close()


def test_a_front_end_from_before_xreset_works_against_a_new_backend(fe):
    """What an older front end sends (XAUTH, USER, PASS, XLIST, DELE,
    XUPDATE) works as it did: XUPDATE removes and ends the connection."""
    f = deliver(fe, "f", "finchley")
    fe.start_backends()
    key = key_of(fe.secret)
    sock = socket.create_connection(("127.0.0.1", fe.ports["finchley"]), timeout=TIMEOUT)
    reader = sock.makefile("rb")
    greeting = reader.readline().decode().split()
    nonce = os.urandom(32).hex()
    proof = xauth_proof(key, "frontend", greeting[1], nonce, "finchley")
    sock.sendall(f"XAUTH {nonce} {proof}\r\nUSER sample\r\nPASS\r\nXLIST\r\n".encode())
    assert reader.readline().decode().split()[1] == xauth_proof(key, "backend", greeting[1], nonce, "finchley")
    assert reader.readline().startswith(b"+OK")
    assert reader.readline().startswith(b"+OK sample has 1 message")
    assert reader.readline().startswith(b"+OK")
    listing = reader.readline().split()
    assert reader.readline() == b".\r\n"
    assert int(listing[2]) == len(returned(f))
    sock.sendall(b"DELE 1\r\nXUPDATE\r\n")
    assert reader.readline().startswith(b"+OK")
    assert reader.readline() == b"+OK 1 0\r\n"
    assert reader.readline() == b""                     # the back end closed the connection
    sock.close()
    assert fe.message_files(listing[1].decode()) == []


# ---------------------------------------------------------------- stopping

def test_a_front_end_keeping_idle_links_stops_at_once_and_the_links_end(fe):
    """An event loop whose sessions are over holds no timer for its idle
    links: SIGTERM ends sdpsd at once, and the back ends see the links
    close (their logout lines)."""
    deliver(fe, "f", "finchley")
    server = fe.start()
    for _ in range(2):
        c, _ = session(server)
        c.quit()
    started = time.monotonic()
    assert server.stop() == 0
    took = time.monotonic() - started
    assert took < 5 * SLOW, f"sdpsd took {took:.1f}s to stop"
    for backend in fe.backends.values():
        wait_until(lambda: "logout" in backend.log(), what="the link's end on the back end")
