"""RETR and TOP as the client reads them, where the server's streaming could
get them wrong: dot-stuffing at every place a read or a write may split the
message, a stored message without a final line end, TOP's cut at every
line count, a 20 MiB message octet for octet, a reply body whose read
overruns its module's time limit, and a client that stops reading in the
middle of a big RETR while others are served."""

import hashlib
import os
import time

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, TIMEOUT, Pop3, binary, in_flight_bound, slow_chain, wait_until

SENDER = "alice@example.com"
RETURN_PATH = f"Return-Path: <{SENDER}>\r\n".encode()


def raw_reply(c: Pop3, command: str) -> tuple[bytes, bytes]:
    """Sends `command`; returns the status line and the multi-line body as
    sent (still dot-stuffed, with the final ".\r\n"), read in bulk."""
    c.send(command)
    buffer = bytearray(c.buffer)
    c.buffer = b""
    while b"\r\n" not in buffer:
        buffer += recv(c)
    status, rest = bytes(buffer).split(b"\r\n", 1)
    assert status.startswith(b"+OK"), status
    body = bytearray(rest)
    if body.startswith(b".\r\n"):
        c.buffer = bytes(body[3:])
        return status, b".\r\n"
    searched = 0
    while True:
        end = body.find(b"\r\n.\r\n", max(0, searched - 4))
        if end >= 0:
            c.buffer = bytes(body[end + 5:])
            return status, bytes(body[:end + 5])
        searched = len(body)
        body += recv(c)


def recv(c: Pop3) -> bytes:
    chunk = c.sock.recv(1 << 20)
    assert chunk, "the server closed the connection in the middle of a reply"
    return chunk


def unstuff(body: bytes) -> bytes:
    """A multi-line body as sent -> the octets before stuffing."""
    assert body.endswith(b".\r\n")
    lines = body[:-3].split(b"\r\n")
    assert lines[-1] == b""
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1])


def stuff(data: bytes) -> bytes:
    """What the server must send for `data` (CRLF lines, final CRLF)."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def put_spool_file(site, host: str, stored: bytes, *, user: str = "fred", uidl_time: int = 1700000000000000,
                   punt: str = "finchley") -> None:
    """Writes a message file by hand, as docs/spool.md describes it."""
    folder = site.punt_dir(punt) / host
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    header = (f"SDPS-Spool: 1\r\nEnvelope-From: <{SENDER}>\r\nEnvelope-To: <{user}@{host}.demon.co.uk>\r\n"
              f"\r\n").encode()
    uidl = f"{uidl_time:017d}.{os.urandom(8).hex()}"
    name = f"{uidl},s={len(RETURN_PATH) + len(stored)},u={user}"
    path = folder / name
    path.write_bytes(header + stored)
    path.chmod(0o600)


def dotted_body(size: int, shift: int) -> bytes:
    """About `size` octets of lines, most of them starting with a dot, of
    lengths 1 to 7 (CRLF included, 3 to 9): line starts fall on nearly
    every offset, and across three shifts on every offset, so a dot lands
    on each edge where the server may split its reads or writes. Some
    lines hold a lone CR, so a CR also lands on those edges."""
    out = bytearray(b"Subject: dots\r\n\r\n" + b"x" * shift + b"\r\n")
    i = 0
    while len(out) < size:
        length = 1 + i % 7
        line = b"." + b"." * (i % 3 == 0) + b"y" * max(0, length - 2)
        if i % 11 == 5:
            line = b"\r" + line       # a lone CR at the start of a line
        out += line[:max(length, 1)] + b"\r\n"
        i += 1
    return bytes(out)


def test_dots_on_every_read_and_write_edge_are_stuffed_exactly(sample):
    # 1.2 MiB per message: past the first read of a file, several of the
    # server's reads, and many of its writes.
    bodies = [dotted_body(1_200_000, shift) for shift in range(3)]
    for i, body in enumerate(bodies):
        put_spool_file(sample, "sample", body, uidl_time=1700000000000000 + i)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    for i, body in enumerate(bodies):
        status, sent = raw_reply(c, f"RETR {i + 1}")
        assert status == f"+OK {len(RETURN_PATH) + len(body)} octets".encode()
        assert sent == stuff(RETURN_PATH + body), f"message {i + 1} was stuffed wrongly"
    c.quit()


def test_a_stored_message_without_a_final_line_end_gets_one(sample):
    put_spool_file(sample, "sample", b"Subject: cut\r\n\r\n.first\r\nno end")
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    _, sent = raw_reply(c, "RETR 1")
    assert sent == RETURN_PATH + b"Subject: cut\r\n\r\n..first\r\nno end\r\n.\r\n"
    _, top = raw_reply(c, "TOP 1 5")
    assert top == sent
    c.quit()


def test_top_cuts_at_every_line_count_also_past_the_first_read(sample):
    # A header of about 70 KiB (longer than the server's first read of the
    # file) and a body of lines of growing length, some starting with a dot.
    header = b"".join(b"X-Filler-%05d: " % i + b"h" * 60 + b"\r\n" for i in range(1000))
    body_lines = [(b"." if i % 4 == 0 else b"") + b"b" * (i * 37 % 5000) for i in range(60)]
    stored = header + b"\r\n" + b"".join(line + b"\r\n" for line in body_lines)
    put_spool_file(sample, "sample", stored)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    for k in [0, 1, 2, 3, 17, 59, 60, 61, 1000]:
        _, sent = raw_reply(c, f"TOP 1 {k}")
        expected = RETURN_PATH + header + b"\r\n" + b"".join(line + b"\r\n" for line in body_lines[:k])
        assert sent == stuff(expected), f"TOP 1 {k}"
    _, sent = raw_reply(c, "RETR 1")
    assert sent == stuff(RETURN_PATH + stored)
    c.quit()


def test_a_20_mib_message_arrives_octet_for_octet(sample):
    lines = []
    size = 0
    i = 0
    while size < 20 * 1024 * 1024:
        line = (b"." if i % 9 == 0 else b"") + bytes((33 + (i * 7 + j) % 90) for j in range(i % 200))
        lines.append(line)
        size += len(line) + 2
        i += 1
    stored = b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    sample.deliver("fred@sample.demon.co.uk", data=stored)
    expected = hashlib.sha256(RETURN_PATH + stored).hexdigest()
    server = sample.start()
    c = server.connect(timeout=6 * TIMEOUT)
    c.login("sample", POP_PW)
    status, sent = raw_reply(c, "RETR 1")
    assert status == f"+OK {len(RETURN_PATH) + len(stored)} octets".encode()
    assert hashlib.sha256(unstuff(sent)).hexdigest() == expected
    c.quit()


SLOW_SITE = dict(chain=slow_chain("300ms", "2s"), top={"module_path": f"[{binary('').parent / 'tests' / 'fixtures'}]"})


def check_late_read_waited_for(server):
    log = wait_until(lambda: "fixture_slow: disconnect" in server.log() and server.log(), what="the disconnect event")
    assert log.find("fixture_slow: body read finished") < log.find("fixture_slow: disconnect"), log[-3000:]
    assert "fixture_slow: overlap" not in log


@pytest.mark.site_options(**SLOW_SITE)
def test_a_body_read_past_its_time_limit_before_anything_was_sent_answers_err_and_ends_the_session(sample):
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    started = time.monotonic()
    c.send_raw(b"NOOP\r\nXSLOWBODY 100\r\nNOOP\r\n")
    assert c.reply().startswith("+OK")             # replies queued before still arrive
    assert c.reply().startswith("-ERR [SYS/TEMP]")
    c.expect_closed(within=1 + SLOW)               # the second NOOP is never answered
    assert time.monotonic() - started < 1.5 * SLOW
    check_late_read_waited_for(server)
    c = server.connect()                           # the locks are free again
    c.login("sample", POP_PW)
    c.quit()


@pytest.mark.site_options(**SLOW_SITE)
def test_a_body_read_past_its_time_limit_half_way_closes_the_connection(sample):
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    c.send_raw(b"XSLOWBODY 1000000\r\nNOOP\r\n")
    assert c.reply() == "+OK slow body"
    received = bytearray(c.buffer)
    c.buffer = b""
    c.sock.settimeout(TIMEOUT)
    while True:
        try:
            chunk = c.sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    # Part of the body, never its end, never a reply to NOOP.
    assert 0 < len(received) <= 1000000
    assert not received.endswith(b"\r\n.\r\n") and b"+OK" not in received and b"-ERR" not in received
    check_late_read_waited_for(server)


def test_a_client_that_stops_reading_a_big_retr_does_not_hold_up_others(sample):
    sample.add_host("other", pop3="other pw")
    # Longer than all that can be in flight: the server is certainly still
    # sending it to the client that stopped reading, however fast the build.
    big = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * (in_flight_bound(4096) // 80 + 1)
    sample.deliver("fred@sample.demon.co.uk", data=big)
    sample.deliver("jim@other.demon.co.uk", data=b"Subject: small\r\n\r\nhello\r\n")
    server = sample.start()
    stuck = server.connect(rcvbuf=4096)
    stuck.login("sample", POP_PW)
    stuck.send("RETR 1")                           # and never reads it
    for _ in range(3):
        with server.connect() as c:
            c.login("other", "other pw")
            assert c.retr(1) == RETURN_PATH + b"Subject: small\r\n\r\nhello\r\n"
            c.quit()
    stuck.abort()
