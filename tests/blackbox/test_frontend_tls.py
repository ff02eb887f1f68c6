"""Front end to back end links over TLS: remote_spool's `tls: true`, `ca:`
and `server_name:` against back ends serving implicit TLS
(modules/spool/remote/README.md, docs/backend-protocol.md). A back end whose
certificate another CA signed, or that names another host, or that does not
speak TLS at all, is refused: the punt is unavailable, and the front end's
log says why."""

import subprocess

import pytest

from conftest import POP_PW
from frontend_harness import FrontEndSite
from sdps_harness import SLOW, SOURCE_DIR, TIMEOUT, Site, binary, message, returned, wait_until

MAKE_CERT = SOURCE_DIR / "scripts" / "make-test-cert"


def make_pki(folder, *names):
    subprocess.run([str(MAKE_CERT), str(folder), *names], check=True, capture_output=True)
    return folder


@pytest.fixture
def pki(tmp_path):
    """A CA, and a back-end pair for 127.0.0.1 signed by it."""
    return make_pki(tmp_path / "pki")


def frontend_site(pki, backend_tls, **link):
    settings = {"tls": "true", "ca": str(pki / "ca.pem"), **link}
    fe = FrontEndSite(Site(), read_timeout=f"{int(5 * SLOW)}s", connect_timeout=f"{int(2 * SLOW)}s",
                      backend_tls=backend_tls, link=settings)
    fe.add_host("sample", pop3=POP_PW)
    return fe


def deliver(fe, subject, punt):
    data = message(subject=subject, to="fred@sample")
    fe.deliver("fred@sample.demon.co.uk", data=data, punt=punt)
    return data


def refused_login(server) -> str:
    c = server.connect()
    c.ok("USER sample")
    reply = c.cmd(f"PASS {POP_PW}")
    c.close()
    return reply


def test_a_front_end_over_tls_to_both_back_ends(pki):
    fe = frontend_site(pki, {"finchley": pki, "docklands": pki})
    try:
        f = deliver(fe, "on finchley", "finchley")
        d = deliver(fe, "on docklands", "docklands")
        server = fe.start()
        c = server.connect()
        reply = c.login("sample", POP_PW)
        assert reply.startswith("+OK sample has 2 messages"), reply
        got = {c.retr(n) for n in (1, 2)}
        assert got == {returned(f), returned(d)}
        uids = c.uidl()
        c.ok("DELE 1")
        assert "(1 message removed)" in c.quit()
        assert fe.message_files(uids[1]) == []
        assert fe.message_files(uids[2])
        # The back ends served those sessions over TLS (their logout lines,
        # written when the links end: the front end keeps them until it
        # stops).
        server.stop()
        for backend in fe.backends.values():
            wait_until(lambda: "tls=yes" in backend.log(), what="a TLS session on the back end")
            assert "tls=no" not in backend.log()
    finally:
        fe.close()


@pytest.mark.parametrize("problem", ["another CA", "another name", "server_name"])
def test_a_back_end_with_the_wrong_certificate_is_refused(pki, tmp_path, problem):
    link = {}
    if problem == "another CA":
        wrong = make_pki(tmp_path / "other")                  # its own CA, the right names
    elif problem == "another name":
        wrong = tmp_path / "named"                            # the right CA, another name
        wrong.mkdir()
        for name in ("ca.pem", "ca.key"):
            (wrong / name).write_bytes((pki / name).read_bytes())
        make_pki(wrong, "backend.example")
    else:
        wrong = pki                                           # the right pair; the front end expects another name
        link = {"server_name": "backend.example"}
    fe = frontend_site(pki, {"finchley": wrong, "docklands": wrong}, **link)
    try:
        deliver(fe, "kept", "finchley")
        listed = fe.spool_list("sample")
        server = fe.start()
        reply = refused_login(server)
        assert reply.startswith("-ERR [SYS/TEMP]"), reply
        log = server.log()
        assert "the back end's certificate is refused" in log, log
        expected = "unable to get local issuer certificate" if problem == "another CA" else "mismatch"
        assert expected in log, log
        assert fe.spool_list("sample") == listed            # the mail is kept
    finally:
        fe.close()


def test_a_plain_back_end_is_refused_when_tls_is_required(pki):
    fe = frontend_site(pki, {})                               # back ends without TLS
    try:
        deliver(fe, "kept", "finchley")
        server = fe.start()
        reply = refused_login(server)
        assert reply.startswith("-ERR [SYS/TEMP]"), reply
        assert "TLS handshake failed" in server.log(), server.log()
    finally:
        fe.close()


def test_one_punt_refused_the_other_served(pki, tmp_path):
    wrong = make_pki(tmp_path / "other")
    fe = frontend_site(pki, {"finchley": wrong, "docklands": pki})
    try:
        deliver(fe, "on finchley", "finchley")
        d = deliver(fe, "on docklands", "docklands")
        server = fe.start()
        c = server.connect()
        reply = c.login("sample", POP_PW)
        assert reply.startswith("+OK sample has 1 message") and "finchley" in reply, reply
        assert c.retr(1) == returned(d)
        c.quit()
    finally:
        fe.close()


@pytest.mark.parametrize("settings, complaint", [
    ({"tls": "true"}, "needs 'ca:'"),
    ({"ca": "ca.pem"}, "set 'tls: true' too"),
    ({"server_name": "x.example"}, "set 'tls: true' too"),
    ({"tls": "true", "ca": "/nonexistent/ca.pem"}, "cannot use /nonexistent/ca.pem"),
])
def test_check_refuses_incomplete_tls_settings(pki, settings, complaint):
    fe = FrontEndSite(Site(), link=settings)
    try:
        config = fe.frontend_config("check", ports={"finchley": 1, "docklands": 2})
        out = subprocess.run([str(binary("sdpsd")), "-c", str(config), "--check"], capture_output=True,
                             timeout=6 * TIMEOUT)
        assert out.returncode == 78, out
        assert complaint in out.stderr.decode(), out.stderr
    finally:
        fe.close()
