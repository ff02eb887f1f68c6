"""PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt) behind a load
balancer: `proxy_protocol_from: [CIDR...]` (docs/operations.md).

Here the "balancer" is 127.0.0.1 (proxy_protocol_from: [127.0.0.1/32]); a
client connecting from 127.0.0.3 is anyone else. The host `sample` takes
its dialup password only from 127.0.0.2, so a dialup login that works
shows which address the session believes the client has.
"""

import ipaddress
import socket
import struct
import time

import pytest

from conftest import DIALUP_IP, DIALUP_PW, OTHER_IP, POP_PW
from sdps_harness import Pop3, wait_until

BALANCER = "127.0.0.1"
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

# plaintext_auth: always, as these clients reach the balancer without TLS
# from outside trusted_networks (the policy itself: test_tls.py).
pytestmark = pytest.mark.site_options(top={"proxy_protocol_from": f"[{BALANCER}/32]",
                                           "proxy_protocol_timeout": "1s", "plaintext_auth": "always"})


def v1(source: str, port: int = 110, family: str = "TCP4", destination: str | None = None) -> bytes:
    destination = destination or ("127.0.0.1" if family == "TCP4" else "::1")
    return f"PROXY {family} {source} {destination} 40000 {port}\r\n".encode()


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(source: str | None, *, command: int = 1, tlvs: bytes = b"", family: int | None = None,
       length: int | None = None) -> bytes:
    """A v2 header: PROXY (command 1) or LOCAL (0), TCP over the source's family."""
    if source is None:
        block, fam = b"", 0x00
    else:
        a = ipaddress.ip_address(source)
        if a.version == 4:
            block, fam = a.packed + ipaddress.ip_address("127.0.0.1").packed + struct.pack("!HH", 40000, 110), 0x11
        else:
            block, fam = a.packed + ipaddress.ip_address("::1").packed + struct.pack("!HH", 40000, 110), 0x21
    block += tlvs
    fam = fam if family is None else family
    return SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(block) if length is None else length) + block


def through(server, header: bytes, *, source: str = BALANCER) -> Pop3:
    """A connection from `source` that sends `header` first, then reads the greeting."""
    c = Pop3(server.port, source=source, greeting=False)
    c.send_raw(header)
    c.greeting = c.reply()
    assert c.greeting.startswith("+OK")
    return c


def dialup_accepted(c: Pop3) -> bool:
    c.ok("USER sample")
    ok = c.cmd(f"PASS {DIALUP_PW}").startswith("+OK")
    c.close()
    return ok


def refused(server, data: bytes, *, source: str = BALANCER, within: float = 5) -> bytes:
    """Sends `data`; the server closes the connection. Returns what it sent first."""
    c = Pop3(server.port, source=source, greeting=False)
    c.send_raw(data)
    c.expect_closed(within=within)
    out = c.buffer
    c.close()
    return out


# --- the client address the header carries is the session's -------------------

def test_v1_header_carries_the_dialup_address(sample):
    server = sample.start()
    assert dialup_accepted(through(server, v1(DIALUP_IP)))
    assert not dialup_accepted(through(server, v1(OTHER_IP)))
    # The balancer itself is not the dialup address either way.
    assert not dialup_accepted(through(server, v1("192.0.2.9")))


def test_v2_header_carries_the_dialup_address(sample):
    server = sample.start()
    assert dialup_accepted(through(server, v2(DIALUP_IP)))
    assert not dialup_accepted(through(server, v2(OTHER_IP)))
    # IPv4-mapped IPv6 is the IPv4 client.
    assert dialup_accepted(through(server, v2("::ffff:" + DIALUP_IP)))


def test_ipv6_clients_in_both_versions(sample):
    sample.add_host("six", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=["2001:db8:7::/48"])
    server = sample.start()
    for header in (v1("2001:db8:7::1", family="TCP6"), v2("2001:db8:7::1")):
        c = through(server, header)
        c.ok("USER six")
        c.ok(f"PASS {DIALUP_PW}")
        c.quit()
    c = through(server, v2("2001:db8:8::1"))
    c.ok("USER six")
    c.err(f"PASS {DIALUP_PW}")
    c.close()


def test_tlvs_are_skipped_and_balancer_tls_is_not_tls(sample):
    server = sample.start()
    ssl = tlv(0x20, b"\x01" + b"\x00" * 4 + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example"))
    c = through(server, v2(DIALUP_IP, tlvs=tlv(0x01, b"pop3") + tlv(0x05, b"id-1") + ssl + tlv(0x04, b"")))
    # Whatever the balancer says of TLS, this session is plain: the TLVs
    # change nothing but are walked past to the client's first command.
    c.multi("CAPA")
    assert dialup_accepted(c)


@pytest.mark.parametrize("version", [1, 2])
def test_commands_sent_with_the_header_are_served_after_the_greeting(sample, version):
    """Header and commands in one send(): the header is read alone, the
    commands after it are the client's first line (none is lost)."""
    server = sample.start()
    c = Pop3(server.port, greeting=False)
    header = v1(DIALUP_IP) if version == 1 else v2(DIALUP_IP, tlvs=tlv(0x05, b"id-1"))
    c.send_raw(header + f"USER sample\r\nPASS {DIALUP_PW}\r\nSTAT\r\n".encode())
    assert c.reply().startswith("+OK")            # the greeting first
    assert c.reply().startswith("+OK")            # USER
    assert c.reply().startswith("+OK")            # PASS: the dialup address came through
    assert c.reply() == "+OK 0 0"
    c.quit()


def test_v2_local_is_the_balancers_own_session(sample):
    """A health check: the session keeps the balancer's address and is an
    ordinary POP3 session (HAProxy's tcp-check expects +OK, sends QUIT)."""
    server = sample.start()
    c = through(server, v2(None, command=0))
    c.multi("CAPA")
    c.quit()
    c = through(server, v2(DIALUP_IP, command=0))   # LOCAL ignores any addresses
    assert not dialup_accepted(c)
    c = through(server, v2(None, command=0))
    c.ok("USER sample")
    c.ok(f"PASS {POP_PW}")
    c.quit()


def test_v1_unknown_and_v2_unspec_keep_the_balancers_address(sample):
    server = sample.start()
    assert not dialup_accepted(through(server, b"PROXY UNKNOWN\r\n"))
    assert not dialup_accepted(through(server, v2(None)))
    c = through(server, b"PROXY UNKNOWN\r\n")
    c.login("sample", POP_PW)
    c.quit()


# --- a listed balancer must send a valid header --------------------------------

def test_missing_header_is_closed_after_the_time_limit(sample):
    server = sample.start()
    started = time.monotonic()
    assert refused(server, b"") == b""            # no greeting, then closed
    assert 0.8 < time.monotonic() - started < 5
    wait_until(lambda: "no PROXY header" in server.log(), what="the time limit logged")
    assert server.log().count("no PROXY header") == 1
    # A header cut short is closed the same way.
    assert refused(server, v1(DIALUP_IP)[:20]) == b""
    assert refused(server, v2(DIALUP_IP)[:20]) == b""


@pytest.mark.parametrize("data", [
    b"USER sample\r\n",                                        # a POP3 client, not the balancer
    b"CAPA\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PROXY TCP4 127.0.0.2 127.0.0.1 40000\r\n",               # a field short
    b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 110\n",             # bare LF
    b"PROXY TCP4 2001:db8::1 127.0.0.1 40000 110\r\n",        # wrong family
    b"PROXY " + b"A" * 200 + b"\r\n",                          # longer than 107 octets
    b"PROXY " + b"A" * 4000,
    SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,            # v2 version 3
    SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12,            # v2 command 2
    SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,             # length too short for IPv4
    SIGNATURE + b"\x21\x11\xff\xff",                           # longer than the server takes
    SIGNATURE[:8] + b"XXXX" + b"\x21\x11\x00\x00",             # bad signature
    b"\x00" * 64,
], ids=lambda d: repr(d[:24]))
def test_garbage_and_overlong_headers_are_closed(sample, data):
    server = sample.start()
    assert refused(server, data) == b""          # no greeting: nothing of POP3 was served
    wait_until(lambda: "closing:" in server.log(), what="the reason logged")
    assert server.alive()
    # The server goes on serving.
    assert dialup_accepted(through(server, v1(DIALUP_IP)))


def test_v2_tlv_that_overruns_the_header_is_closed(sample):
    server = sample.start()
    bad = v2(DIALUP_IP, tlvs=b"\x01\x00\x09pop3")
    assert refused(server, bad) == b""
    assert server.alive()


def test_many_bad_balancer_connections_do_not_hurt(sample):
    server = sample.start()
    socks = []
    for i in range(40):
        s = socket.create_connection((BALANCER, server.port))
        s.sendall([b"PROXY ", SIGNATURE[:7], b"junk\r\n", v2(DIALUP_IP)[:30]][i % 4])
        socks.append(s)
    for s in socks[::2]:
        s.close()
    assert dialup_accepted(through(server, v2(DIALUP_IP)))
    for s in socks[1::2]:
        s.close()
    assert server.alive()


# --- a header from anyone else is refused ----------------------------------------

@pytest.mark.parametrize("header", [v1(DIALUP_IP), v2(DIALUP_IP)], ids=["v1", "v2"])
def test_header_from_an_unlisted_address_is_refused(sample, header):
    server = sample.start()
    c = Pop3(server.port, source=OTHER_IP)       # greeted at once: an ordinary client
    c.send_raw(header + f"USER sample\r\nPASS {DIALUP_PW}\r\n".encode())
    c.expect_closed()
    assert b"+OK" not in c.buffer                # nothing after the greeting
    c.close()
    wait_until(lambda: "not in proxy_protocol_from" in server.log(), what="the refusal logged")
    # Without a header it is an ordinary client, with its own address.
    c = Pop3(server.port, source=OTHER_IP)
    c.login("sample", POP_PW)
    c.quit()


def test_a_second_header_from_the_client_is_refused(sample):
    """A client behind the balancer cannot add a header of its own."""
    server = sample.start()
    c = through(server, v1(OTHER_IP))
    c.send_raw(v1(DIALUP_IP) + f"USER sample\r\nPASS {DIALUP_PW}\r\n".encode())
    c.expect_closed()
    assert c.buffer == b""
    c.close()
    wait_until(lambda: "PROXY header of its own" in server.log(), what="the refusal logged")


def test_without_the_setting_no_header_is_read(site):
    """proxy_protocol_from absent: every client is greeted at once, and a
    header is refused like any other spoofing attempt."""
    site.write_config(top={})
    site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP])
    server = site.start()
    c = Pop3(server.port)
    c.send_raw(v1(DIALUP_IP))
    c.expect_closed()
    c.close()
    c = Pop3(server.port, source=DIALUP_IP)
    assert dialup_accepted(c)


def test_per_address_limit_counts_the_client_the_header_names(site):
    """max_sessions_per_address applies to the client a header names, not to
    the balancer: the balancer opens more sessions than the limit, and only
    the third one for the same client is refused."""
    site.write_config(top={"proxy_protocol_from": f"[{BALANCER}/32]", "max_sessions_per_address": "2"})
    site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP])
    server = site.start()
    held = [through(server, v1(DIALUP_IP)) for _ in range(2)]
    held += [through(server, v1(OTHER_IP)) for _ in range(2)]
    reply = refused(server, v1(DIALUP_IP))
    assert reply.startswith(b"-ERR [SYS/TEMP] too many connections from your address")
    for c in held:
        c.close()
    # Once those sessions are gone, the client is served again.

    def served_again() -> bool:
        c = Pop3(server.port, source=BALANCER, greeting=False)
        c.send_raw(v1(DIALUP_IP))
        c.greeting = c.reply()
        if not c.greeting.startswith("+OK"):
            c.close()
            return False
        return dialup_accepted(c)

    wait_until(served_again, timeout=10, what="the client served again")
