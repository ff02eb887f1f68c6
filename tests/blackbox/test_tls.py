"""TLS, the plaintext policy and AUTH PLAIN (issue 9): STLS on plain
listeners, implicit TLS (POP3S) on --listen-tls, real clients (curl,
openssl s_client, fetchmail, mpop, poplib) checking the certificate against
a test CA made by scripts/make-test-cert."""

import base64
import ipaddress
import os
import poplib
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DIALUP_IP, DIALUP_PW, POP_PW
from sdps_harness import SLOW, SOURCE_DIR, TIMEOUT, Pop3, crlf, message, wait_until

MAKE_CERT = SOURCE_DIR / "scripts" / "make-test-cert"



def implicit_tls_ready(server) -> None:
    """Waits until `server` logs its implicit-TLS listener."""
    wait_until(lambda: "(implicit TLS)" in server.log(), what="the implicit-TLS listener")

def make_pki(folder: Path) -> Path:
    subprocess.run([str(MAKE_CERT), str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def tls_top(pki: Path, **extra) -> dict:
    top = {"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}}}"}
    top.update(extra)
    return top


def start(site, pki, *, tls_listener=True, **top):
    site.write_config(top=tls_top(pki, **top))
    extra = ["--listen-tls", "127.0.0.1:0"] if tls_listener else []
    server = site.start(extra_args=extra)
    if tls_listener:
        implicit_tls_ready(server)
    return server


def ports(server) -> tuple[int, int]:
    """(plain port, implicit-TLS port) from the log."""
    plain = re.search(r"listening on 127\.0\.0\.1:(\d+) \(STLS offered\)", server.log())
    tls = re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", server.log())
    return int(plain.group(1)), int(tls.group(1)) if tls else 0


def client_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    return ctx


def starttls(c: Pop3, pki: Path) -> None:
    c.ok("STLS")
    assert c.buffer == b""
    c.sock = client_context(pki).wrap_socket(c.sock, server_hostname="localhost")


def capa(c: Pop3) -> list[str]:
    return [line.decode() for line in c.multi("CAPA")]


def plain_response(authzid: str, authcid: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


# ---------------------------------------------------------------- STLS and the plaintext policy

def test_untrusted_client_must_use_stls_and_capa_says_so(sample, pki):
    server = start(sample, pki, tls_listener=False, trusted_networks="[10.0.0.0/8]")
    plain, _ = ports(server)
    c = Pop3(plain)
    before = capa(c)
    assert "STLS" in before
    assert "USER" not in before and "SASL PLAIN" not in before
    reply = c.err("USER sample")
    assert reply.startswith("-ERR [AUTH]") and "STLS" in reply
    assert c.err(f"AUTH PLAIN {plain_response('', 'sample', POP_PW)}").startswith("-ERR [AUTH]")
    starttls(c, pki)
    after = capa(c)
    assert "STLS" not in after
    assert "USER" in after and "SASL PLAIN" in after
    assert c.err("STLS").startswith("-ERR")
    c.login("sample", POP_PW)
    c.quit()


def test_trusted_client_may_use_plaintext_and_shipped_default_without_tls(server):
    c = server.connect()
    words = capa(c)
    assert "USER" in words and "STLS" not in words
    c.login("sample", POP_PW)
    c.quit()


def test_plaintext_always(sample, pki):
    server = start(sample, pki, tls_listener=False, trusted_networks="[10.0.0.0/8]", plaintext_auth="always")
    c = Pop3(ports(server)[0])
    before = capa(c)
    assert "USER" in before and "STLS" in before
    c.login("sample", POP_PW)
    # RFC 2449: what the state offers. STLS is refused in TRANSACTION, and
    # USER means nothing there.
    after = capa(c)
    assert "STLS" not in after and "USER" not in after, after
    assert c.err("STLS").startswith("-ERR")
    c.quit()


def test_trusted_networks_judge_the_address_a_proxy_header_gives(sample, pki):
    sample.write_config(top={"proxy_protocol_from": "[127.0.0.1/32]"})
    server = sample.start()
    for source, allowed in (("192.0.2.9", False), ("127.0.0.5", True)):
        c = Pop3(server.port, greeting=False)
        c.send_raw(f"PROXY TCP4 {source} 127.0.0.1 40000 110\r\n".encode())
        assert c.reply().startswith("+OK")
        if allowed:
            c.ok("USER sample")
        else:
            assert c.err("USER sample").startswith("-ERR [AUTH]")
        c.close()


def test_commands_pipelined_before_the_handshake_are_not_run(sample, pki):
    server = start(sample, pki, tls_listener=False)
    c = Pop3(ports(server)[0])
    c.send_raw(b"STLS\r\nUSER sample\r\nPASS " + POP_PW.encode() + b"\r\nQUIT\r\n")
    assert c.reply().startswith("+OK")
    time.sleep(0.2)
    c.sock = client_context(pki).wrap_socket(c.sock, server_hostname="localhost")
    c.buffer = b""
    # The USER sent in clear before the handshake was dropped with the rest.
    assert c.err(f"PASS {POP_PW}") == "-ERR send USER first"
    c.err("STAT")
    c.login("sample", POP_PW)
    c.quit()
    assert "discarding" in server.log()


def test_a_failed_handshake_closes_the_connection(sample, pki):
    server = start(sample, pki, tls_listener=False)
    c = Pop3(ports(server)[0])
    c.ok("STLS")
    c.send_raw(b"this is not a TLS record\r\n")
    c.expect_closed()
    assert server.alive()


def test_handshake_time_limit(sample, pki):
    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}, "
                                    f"handshake_timeout: 500ms}}"})
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(server)
    c = Pop3(ports(server)[1], greeting=False)
    c.expect_closed(within=5)


# ---------------------------------------------------------------- listeners

def test_the_files_listeners_and_listen_tls_replacing_them(sample, pki):
    sample.write_config(top=tls_top(pki, listen="[127.0.0.1:0, {address: 127.0.0.1:0, tls: implicit}]",
                                    trusted_networks="[10.0.0.0/8]"))
    server = sample.start(listen=())
    server._wait_listening(2)
    plain, secure = ports(server)
    assert plain and secure
    p = poplib.POP3_SSL("127.0.0.1", secure, context=client_context(pki), timeout=TIMEOUT)
    p.user("sample")
    p.pass_(POP_PW)
    p.quit()
    assert "STLS" in capa(Pop3(plain))
    server.stop()

    # --listen-tls alone replaces the file's two listeners.
    only = sample.start(listen=(), extra_args=["--listen-tls", "127.0.0.1:0"])
    only._wait_listening(1)
    port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", only.log()).group(1))
    p = poplib.POP3_SSL("127.0.0.1", port, context=client_context(pki), timeout=TIMEOUT)
    p.quit()
    assert only.log().count("listening on") == 1, only.log()


# ---------------------------------------------------------------- versions and ciphers

def handshake(port: int, pki: Path, *, version=ssl.TLSVersion.TLSv1_2, ciphers: str | None = None) -> str | None:
    """The cipher a client limited to `version` (and `ciphers`) gets, or None if refused."""
    ctx = client_context(pki)
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT),
                             server_hostname="localhost") as s:
            return s.cipher()[0]
    except (ssl.SSLError, ConnectionError):
        return None


INTERMEDIATE_ECDSA = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}


def test_intermediate_ciphers_by_default_and_the_ciphers_setting(sample, pki):
    # CBC with SHA-1 is in OpenSSL's DEFAULT list, not in Mozilla's intermediate one.
    cbc = "ECDHE-ECDSA-AES128-SHA"
    server = start(sample, pki)
    _, secure = ports(server)
    assert handshake(secure, pki) in INTERMEDIATE_ECDSA
    assert handshake(secure, pki, ciphers=cbc) is None
    assert handshake(secure, pki, version=ssl.TLSVersion.TLSv1_3) is not None
    server.stop()

    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}, "
                                    f"ciphers: \"{cbc}\"}}"})
    other = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(other)
    _, secure = ports(other)
    assert handshake(secure, pki, ciphers=cbc) == cbc
    assert handshake(secure, pki, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256") is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # ssl.TLSVersion.TLSv1_1, on purpose
def test_tls_1_1_is_refused_even_where_the_ciphers_would_allow_it(sample, pki):
    """OpenSSL's security level alone would refuse TLS 1.1; a `ciphers:`
    list that lowers it (@SECLEVEL=0) must still not let it in."""
    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}, "
                                    f"ciphers: \"DEFAULT:@SECLEVEL=0\"}}"})
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(server)
    _, secure = ports(server)
    assert handshake(secure, pki, version=ssl.TLSVersion.TLSv1_2) is not None
    assert handshake(secure, pki, version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0") is None
    assert handshake(secure, pki, version=ssl.TLSVersion.TLSv1, ciphers="DEFAULT:@SECLEVEL=0") is None


# ---------------------------------------------------------------- session resumption

class Resumption:
    """One `openssl s_client` session: how its handshake went ('New' or
    'Reused'), the protocol, and everything it printed."""

    def __init__(self, out: str):
        self.text = out
        m = re.search(r"^(New|Reused), (TLSv1\.[23])", out, re.M)
        assert m, out
        self.how, self.protocol = m.group(1), m.group(2)


def s_client(port: int, pki: Path, *, stls=False, sess_in: Path | None = None, sess_out: Path | None = None,
             tls12=False) -> Resumption:
    """A real client that resumes: logs in, STAT, QUIT, keeping the ticket
    the server gave it in `sess_out` and offering the one in `sess_in`."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki / "ca.pem"),
           "-verify_return_error", "-verify_hostname", "localhost", "-crlf", "-ign_eof"]
    if stls:
        cmd += ["-starttls", "pop3"]
    if sess_in:
        cmd += ["-sess_in", str(sess_in)]
    if sess_out:
        cmd += ["-sess_out", str(sess_out)]
    if tls12:
        cmd += ["-tls1_2"]
    out = subprocess.run(cmd, input=f"USER sample\nPASS {POP_PW}\nSTAT\nQUIT\n".encode(), capture_output=True,
                         timeout=TIMEOUT)
    text = out.stdout.decode(errors="replace")
    assert "+OK 1 " in text, (text, out.stderr)                 # logged in, the maildrop there
    if sess_out:
        assert sess_out.exists(), text                            # the server gave a ticket
    return Resumption(text)


def rotate_by_sighup(server, times: int) -> None:
    """SIGHUP with the certificate unchanged: the ticket keys rotate."""
    import signal
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count("session ticket keys rotated") == times, what="the key rotation")


@pytest.mark.parametrize("how", ["implicit", "STLS"])
def test_a_resumed_session_works_and_gets_a_fresh_ticket(sample, pki, tmp_path, how):
    sample.deliver("fred@sample.demon.co.uk", data=message("resumed"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    plain, secure = ports(server)
    port = secure if how == "implicit" else plain
    first = s_client(port, pki, stls=how == "STLS", sess_out=tmp_path / "t0")
    assert (first.how, first.protocol) == ("New", "TLSv1.3")
    # the ticket is valid as long as its key seals (ticket_key_rotation: 1h)
    assert "lifetime hint: 3600 (seconds)" in first.text, first.text
    again = s_client(port, pki, stls=how == "STLS", sess_in=tmp_path / "t0", sess_out=tmp_path / "t1")
    assert again.how == "Reused"
    # a resumed handshake leaves the client a fresh ticket, which resumes too
    assert (tmp_path / "t1").read_bytes() != (tmp_path / "t0").read_bytes()
    assert s_client(port, pki, stls=how == "STLS", sess_in=tmp_path / "t1").how == "Reused"


def test_tls_1_2_sessions_resume_from_tickets(sample, pki, tmp_path):
    sample.deliver("fred@sample.demon.co.uk", data=message("resumed"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    _, secure = ports(server)
    first = s_client(secure, pki, tls12=True, sess_out=tmp_path / "t0")
    assert (first.how, first.protocol) == ("New", "TLSv1.2")
    assert s_client(secure, pki, tls12=True, sess_in=tmp_path / "t0").how == "Reused"


@pytest.mark.parametrize("how", ["implicit", "STLS"])
def test_a_ticket_from_before_two_key_rotations_gets_a_full_handshake(sample, pki, tmp_path, how):
    """SIGHUP with the same certificate rotates the session ticket keys:
    a ticket sealed before one rotation still resumes (and is replaced),
    one sealed before two does not, and its client gets a full handshake."""
    sample.deliver("fred@sample.demon.co.uk", data=message("rotated"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    plain, secure = ports(server)
    port, stls = (secure, False) if how == "implicit" else (plain, True)
    assert s_client(port, pki, stls=stls, sess_out=tmp_path / "t0").how == "New"
    rotate_by_sighup(server, 1)
    assert s_client(port, pki, stls=stls, sess_in=tmp_path / "t0", sess_out=tmp_path / "t1").how == "Reused"
    rotate_by_sighup(server, 2)
    assert s_client(port, pki, stls=stls, sess_in=tmp_path / "t0").how == "New"
    assert s_client(port, pki, stls=stls, sess_in=tmp_path / "t1").how == "Reused"


def test_no_resumption_across_a_certificate_change(sample, pki, tmp_path):
    """A session made under one certificate does not resume under another:
    a certificate replaced (compromised, revoked) must not go on serving
    sessions it authenticated."""
    sample.deliver("fred@sample.demon.co.uk", data=message("changed"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    _, secure = ports(server)
    assert s_client(secure, pki, sess_out=tmp_path / "t0").how == "New"
    make_pki(pki)                                          # a new key and certificate from the same CA
    import signal
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate" in server.log(), what="the reload")
    assert "session ticket keys rotated" not in server.log()
    assert s_client(secure, pki, sess_in=tmp_path / "t0").how == "New"


def test_the_ticket_lifetime_follows_ticket_key_rotation(sample, pki, tmp_path):
    sample.deliver("fred@sample.demon.co.uk", data=message("hint"))
    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}, "
                                    f"ticket_key_rotation: 2h}}", "trusted_networks": "[10.0.0.0/8]"})
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(server)
    first = s_client(ports(server)[1], pki, sess_out=tmp_path / "t0")
    assert "lifetime hint: 7200 (seconds)" in first.text, first.text


# ---------------------------------------------------------------- PROXY header, then TLS

class BioClient:
    """A TLS client over a socket through memory BIOs, so that its first
    flight (the ClientHello) can go out in one send() with what precedes it."""

    def __init__(self, sock, ctx: ssl.SSLContext, first: bytes = b"", *, stall: float = 0):
        """Sends `first` and the ClientHello in one send(); with `stall`,
        only half the ClientHello, and the rest `stall` seconds later."""
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.buffer = b""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = self.outgoing.read()
        assert hello[:1] == b"\x16"                 # a TLS handshake record
        if stall:
            sock.sendall(first + hello[:len(hello) // 2])
            time.sleep(stall)
            sock.sendall(hello[len(hello) // 2:])
        else:
            sock.sendall(first + hello)              # one send(): one segment on loopback
        self._drive(self.tls.do_handshake)

    def _drive(self, step):
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the server")
                self.incoming.write(data)
                continue
            self._flush()
            return result

    def _flush(self):
        out = self.outgoing.read()
        if out:
            self.sock.sendall(out)

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            self.buffer += self._drive(lambda: self.tls.read(65536))
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def cmd(self, text: str) -> str:
        self._drive(lambda: self.tls.write(text.encode() + b"\r\n"))
        return self.line()


def proxy_v1(source: str) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 40000 995\r\n".encode()


def proxy_v2(source: str) -> bytes:
    block = ipaddress.ip_address(source).packed + bytes([127, 0, 0, 1]) + struct.pack("!HH", 40000, 995)
    block += struct.pack("!BH", 0x05, 4) + b"id-1"     # a TLV, so the length field counts
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(block)) + block


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
def test_proxy_header_and_client_hello_in_one_segment(sample, pki, header):
    """A balancer in TCP mode in front of POP3S: its PROXY header and the
    client's ClientHello reach sdps together. The header is read alone and
    the handshake gets the rest; the dialup rule sees the header's address."""
    server = start(sample, pki, proxy_protocol_from="[127.0.0.1/32]")
    _, secure = ports(server)
    sock = socket.create_connection(("127.0.0.1", secure), timeout=TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = BioClient(sock, client_context(pki), header(DIALUP_IP))
        assert c.line().startswith("+OK")
        assert c.cmd("USER sample").startswith("+OK")
        assert c.cmd(f"PASS {DIALUP_PW}").startswith("+OK")  # only from the dialup address
        assert c.cmd("QUIT").startswith("+OK")
    finally:
        sock.close()


def test_proxy_header_then_stls_with_pipelined_commands(sample, pki):
    """Commands after a PROXY header are the client's and run; those after
    STLS in the same packet are still discarded."""
    server = start(sample, pki, tls_listener=False, proxy_protocol_from="[127.0.0.1/32]")
    c = Pop3(ports(server)[0], greeting=False)
    c.send_raw(proxy_v1(DIALUP_IP) + b"NOOP\r\nSTLS\r\nUSER sample\r\n")
    assert c.reply().startswith("+OK")               # the greeting
    assert c.reply().startswith("-ERR")              # NOOP was read and answered (not yet valid)
    assert c.reply().startswith("+OK")               # STLS
    time.sleep(0.2)
    c.sock = client_context(pki).wrap_socket(c.sock, server_hostname="localhost")
    c.buffer = b""
    assert c.err(f"PASS {DIALUP_PW}") == "-ERR send USER first"
    c.ok("USER sample")
    c.ok(f"PASS {DIALUP_PW}")                       # the header's address, under TLS
    c.quit()
    assert "discarding" in server.log()


# ---------------------------------------------------------------- login_timeout and TLS

def client_hello(pki: Path) -> bytes:
    tls = client_context(pki).wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("how", ["implicit", "STLS"])
def test_login_timeout_closes_a_client_stuck_in_the_handshake(sample, pki, how):
    """The handshake's own limit is long here: login_timeout is what ends it."""
    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}, "
                                    f"handshake_timeout: 60s}}", "login_timeout": "2s"})
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(server)
    plain, secure = ports(server)
    started = time.monotonic()
    if how == "implicit":
        c = Pop3(secure, greeting=False)
    else:
        c = Pop3(plain)
        c.ok("STLS")
    c.send_raw(client_hello(pki)[:20])                 # half a ClientHello, then nothing
    c.expect_closed(within=TIMEOUT)
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 2 + 2 * SLOW, f"closed after {elapsed:.1f}s"
    assert "no login within 2s" in server.log()


def test_login_timeout_is_not_extended_by_the_handshake_or_an_auth_continuation(sample, pki):
    """A slow handshake (3s of the 4s) and then an AUTH PLAIN left at its
    `+ ` continuation: the session goes 4s after it connected, not 4s after
    the handshake or the continuation began."""
    sample.write_config(top=tls_top(pki, login_timeout="4s"))
    server = sample.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    implicit_tls_ready(server)
    _, secure = ports(server)
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", secure), timeout=TIMEOUT)
    try:
        c = BioClient(sock, client_context(pki), stall=3)
        assert c.line().startswith("+OK")
        assert c.cmd("AUTH PLAIN") == "+ "
        with pytest.raises((ConnectionError, ssl.SSLError)):
            c.line()
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert 3.8 <= elapsed < 6.5, f"closed after {elapsed:.1f}s"     # extended, it would be 7s or more
    assert "no login within 4s" in server.log()


# ---------------------------------------------------------------- implicit TLS and real clients

def test_poplib_pop3_ssl_and_stls(sample, pki):
    sample.deliver("fred@sample.demon.co.uk", data=message("one"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    plain, secure = ports(server)
    p = poplib.POP3_SSL("127.0.0.1", secure, context=client_context(pki), timeout=TIMEOUT)
    assert "STLS" not in p.capa()
    p.user("sample")
    p.pass_(POP_PW)
    assert p.stat()[0] == 1
    p.quit()
    q = poplib.POP3("127.0.0.1", plain, timeout=TIMEOUT)
    q.stls(context=client_context(pki))
    q.user("sample")
    q.pass_(POP_PW)
    assert b"Subject: one" in b"\n".join(q.retr(1)[1])
    q.quit()


def test_curl_pop3s_and_ssl_reqd(sample, pki):
    sample.deliver("fred@sample.demon.co.uk", data=message("hello curl"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    plain, secure = ports(server)
    for url, extra in ((f"pop3s://localhost:{secure}/1", []), (f"pop3://localhost:{plain}/1", ["--ssl-reqd"])):
        out = subprocess.run(["curl", "-s", "-S", "--cacert", str(pki / "ca.pem"), "--user", f"sample:{POP_PW}",
                              *extra, url], capture_output=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert b"Subject: hello curl" in out.stdout
    # A client that does not trust the CA is refused.
    out = subprocess.run(["curl", "-s", "--user", f"sample:{POP_PW}", f"pop3s://localhost:{secure}/"],
                         capture_output=True, timeout=TIMEOUT)
    assert out.returncode != 0


def test_openssl_s_client_starttls(sample, pki):
    sample.deliver("fred@sample.demon.co.uk", data=message("s_client"))
    server = start(sample, pki, tls_listener=False, trusted_networks="[10.0.0.0/8]")
    script = f"CAPA\nUSER sample\nPASS {POP_PW}\nSTAT\nQUIT\n"   # -crlf adds the CRs
    out = subprocess.run(["openssl", "s_client", "-starttls", "pop3", "-connect", f"127.0.0.1:{ports(server)[0]}",
                          "-CAfile", str(pki / "ca.pem"), "-verify_return_error", "-verify_hostname", "localhost",
                          "-quiet", "-crlf"],
                         input=script.encode(), capture_output=True, timeout=TIMEOUT)
    text = out.stdout.decode()
    assert "+OK 1 " in text, (text, out.stderr)
    assert "\r\nSTLS\r\n" not in text


def test_fetchmail_ssl_and_mpop_starttls(sample, pki, tmp_path):
    for n in range(2):
        sample.deliver("fred@sample.demon.co.uk", data=message(f"m{n}"))
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    plain, secure = ports(server)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"set no syslog\npoll 127.0.0.1 service {secure} protocol pop3:\n"
                  f"  user \"sample\" there with password \"{POP_PW}\" is me here\n"
                  f"  ssl sslcertck sslcertfile {pki / 'ca.pem'} sslcommonname localhost keep fetchall\n"
                  f"  mda \"sh -c 'cat > {out_dir}/msg.$$'\"\n")
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    got = subprocess.run(["fetchmail", "-f", str(rc), "-d0", "--nosyslog"], capture_output=True, env=env,
                         timeout=6 * TIMEOUT)
    assert got.returncode == 0, (got.stdout, got.stderr)
    assert len(list(out_dir.iterdir())) == 2

    mbox = tmp_path / "out.mbox"
    mbox.write_text("")
    got = subprocess.run(["mpop", "--host=127.0.0.1", f"--port={plain}", "--tls=on", "--tls-starttls=on",
                          f"--tls-trust-file={pki / 'ca.pem'}", "--tls-host-override=localhost", "--auth=user",
                          "--user=sample", f"--passwordeval=echo '{POP_PW}'", f"--delivery=mbox,{mbox}",
                          f"--uidls-file={tmp_path / 'uidls'}", "--keep=on", "--only-new=off"],
                         capture_output=True, env=env, timeout=6 * TIMEOUT)
    assert got.returncode == 0, (got.stdout, got.stderr)
    assert mbox.read_text().count("Subject: m") == 2


# ---------------------------------------------------------------- AUTH PLAIN

def test_auth_plain_both_forms_wrong_password_and_authzid(server):
    c = server.connect()
    assert c.multi("AUTH") == [b"PLAIN"]
    assert "SASL PLAIN" in capa(c)
    assert c.err(f"AUTH PLAIN {plain_response('', 'sample', 'wrong')}") == "-ERR [AUTH] invalid login"
    reply = c.err(f"AUTH PLAIN {plain_response('other', 'sample', POP_PW)}")
    assert reply.startswith("-ERR [AUTH]")
    assert c.ok(f"AUTH PLAIN {plain_response('sample', 'sample', POP_PW)}").startswith("+OK")
    c.ok("STAT")
    c.err("AUTH PLAIN")                          # TRANSACTION: no AUTH
    c.quit()

    d = server.connect()
    d.send("AUTH PLAIN")
    assert d.line() == "+ "
    d.send(plain_response("", "sample.demon.co.uk", POP_PW))
    assert d.reply().startswith("+OK")
    d.quit()

    e = server.connect()
    e.send("AUTH PLAIN")
    assert e.line() == "+ "
    assert e.err("*").startswith("-ERR")
    assert e.err("AUTH PLAIN !!!").startswith("-ERR")
    e.quit()


def test_auth_plain_keeps_the_dialup_rule_and_the_user_form(sample):
    server = sample.start()
    # The dialup password counts only from the dialup address, as with PASS.
    c = server.connect()
    assert c.err(f"AUTH PLAIN {plain_response('', 'sample', DIALUP_PW)}").startswith("-ERR [AUTH]")
    c.close()
    d = server.connect(source=DIALUP_IP)
    assert d.ok(f"AUTH PLAIN {plain_response('', 'sample', DIALUP_PW)}").startswith("+OK")
    d.quit()
    # user+host, and the authorization identity equal to it.
    e = server.connect()
    assert e.ok(f"AUTH PLAIN {plain_response('fred+sample', 'fred+sample', POP_PW)}").startswith("+OK")
    e.quit()


def test_a_site_may_drop_the_sasl_module(sample):
    from sdps_harness import shipped_chain
    sample.write_config(chain=[e for e in shipped_chain() if e["module"] != "sasl"])
    server = sample.start()
    c = server.connect()
    assert not [w for w in capa(c) if w.startswith("SASL")]
    assert c.err(f"AUTH PLAIN {plain_response('', 'sample', POP_PW)}").startswith("-ERR")
    c.login("sample", POP_PW)
    c.quit()


# ---------------------------------------------------------------- configuration

def test_check_reports_a_key_that_does_not_match(sample, pki, tmp_path):
    other = make_pki(tmp_path / "other")
    sample.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {other / 'key.pem'}}}"})
    from sdps_harness import binary
    out = subprocess.run([str(binary("sdpsd")), "-c", str(sample.config), "--check"], capture_output=True)
    assert out.returncode == 78
    assert b"does not match" in out.stderr
    sample.write_config(top=tls_top(pki))
    out = subprocess.run([str(binary("sdpsd")), "-c", str(sample.config), "--check"], capture_output=True)
    assert out.returncode == 0, out.stderr


def self_signed(folder: Path, start: str, end: str) -> Path:
    """A self-signed localhost pair valid from `start` to `end` (YYYYMMDDHHMMSSZ):
    `openssl ca` is what sets explicit dates with Debian 12's OpenSSL 3.0."""
    folder.mkdir(parents=True)
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("01\n")
    (folder / "ca.cnf").write_text(f"[ca]\ndefault_ca = self\n[self]\ndatabase = {folder}/index.txt\n"
                                   f"new_certs_dir = {folder}\nserial = {folder}/serial\ndefault_md = sha256\n"
                                   "policy = any\n[any]\ncommonName = supplied\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=localhost", "-keyout", str(folder / "key.pem"), "-out", str(folder / "req.pem")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-config", str(folder / "ca.cnf"), "-selfsign",
                    "-keyfile", str(folder / "key.pem"), "-in", str(folder / "req.pem"), "-startdate", start,
                    "-enddate", end, "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("start, end, complaint", [
    ("20200101000000Z", "20200201000000Z", "has expired"),
    ("20900101000000Z", "20900201000000Z", "is not valid yet"),
])
def test_check_reports_an_expired_or_not_yet_valid_certificate(sample, tmp_path, start, end, complaint):
    from sdps_harness import binary
    pair = self_signed(tmp_path / "dated", start, end)
    sample.write_config(top=tls_top(pair))
    out = subprocess.run([str(binary("sdpsd")), "-c", str(sample.config), "--check"], capture_output=True)
    assert out.returncode == 78, out
    assert complaint.encode() in out.stderr, out.stderr
    assert str(pair / "cert.pem").encode() in out.stderr
    # Serving refuses the same way: sdpsd does not start.
    started = subprocess.run([str(binary("sdpsd")), "-c", str(sample.config), "--listen", "127.0.0.1:0"],
                             capture_output=True, timeout=TIMEOUT)
    assert started.returncode == 78 and complaint.encode() in started.stderr, started


def test_sighup_with_a_broken_pair_keeps_the_one_in_force(sample, pki, tmp_path):
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    _, secure = ports(server)
    before = client_context(pki).wrap_socket(socket.create_connection(("127.0.0.1", secure)),
                                             server_hostname="localhost")
    served = before.getpeercert(binary_form=True)
    before.close()
    expired = self_signed(tmp_path / "expired", "20200101000000Z", "20200201000000Z")
    for name in ("cert.pem", "key.pem"):
        (pki / name).write_bytes((expired / name).read_bytes())
    import signal
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while "keeping the certificate loaded before" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "has expired" in server.log()
    after = client_context(pki).wrap_socket(socket.create_connection(("127.0.0.1", secure)),
                                            server_hostname="localhost")
    assert after.getpeercert(binary_form=True) == served
    after.close()


def test_sighup_rereads_the_certificate(sample, pki, tmp_path):
    server = start(sample, pki, trusted_networks="[10.0.0.0/8]")
    _, secure = ports(server)
    first = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    old = first.wrap_socket(__import__("socket").create_connection(("127.0.0.1", secure)), server_hostname="localhost")
    old_cert = old.getpeercert(binary_form=True)
    # A new pair from the same CA, then SIGHUP.
    make_pki(pki)
    import signal
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while "TLS certificate" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    new = first.wrap_socket(__import__("socket").create_connection(("127.0.0.1", secure)), server_hostname="localhost")
    assert new.getpeercert(binary_form=True) != old_cert
    # The session begun before keeps its TLS and works on: it logs in now.
    old.settimeout(TIMEOUT)
    reader = old.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    old.sendall(b"USER sample\r\n")
    assert reader.readline().startswith(b"+OK")
    old.sendall(f"PASS {POP_PW}\r\n".encode())
    assert reader.readline().startswith(b"+OK")
    old.sendall(b"STAT\r\n")
    assert reader.readline() == b"+OK 0 0\r\n"
    reader.close()
    new.close()
    old.close()
