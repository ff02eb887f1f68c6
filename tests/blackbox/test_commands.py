"""RFC 1939 commands and CAPA (DESIGN.md section 3): replies, wrong states,
bad arguments, and messages returned octet for octet (Return-Path,
CRLF, dot-stuffing, 8-bit, no final newline, big messages, LIST sizes)."""

import hashlib
import re

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, crlf, message, returned

SENDER = "alice@example.com"


@pytest.fixture
def three(sample):
    """sample with three messages for fred; returns them as stored."""
    msgs = [message(subject=f"message {i}", body=f"line one of {i}\nline two\nline three\n") for i in (1, 2, 3)]
    for data in msgs:
        sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    return msgs


@pytest.fixture
def srv(three, sample):
    return sample.start()


@pytest.fixture
def c(srv):
    """A session logged in as sample over `three`."""
    client = srv.connect()
    client.login("sample", POP_PW)
    yield client
    client.close()


# ---------------------------------------------------------------- STAT, LIST, UIDL, NOOP

def test_stat_is_count_and_octets_only(c, three):
    reply = c.ok("STAT")
    assert re.fullmatch(r"\+OK 3 \d+", reply), reply
    assert int(reply.split()[2]) == sum(len(returned(m)) for m in three)


def test_list_is_number_and_size_only(c, three):
    assert c.text("LIST") == [f"{i} {len(returned(m))}" for i, m in enumerate(three, 1)]
    assert c.ok("LIST 2") == f"+OK 2 {len(returned(three[1]))}"


def test_uidl_listing_and_single(c):
    lines = c.text("UIDL")
    assert [line.split(" ")[0] for line in lines] == ["1", "2", "3"]
    uids = [line.split(" ", 1)[1] for line in lines]
    for uid in uids:
        assert re.fullmatch(r"[\x21-\x7e]{1,70}", uid), f"UIDL {uid!r} is not 1-70 printable octets"
    assert len(set(uids)) == 3
    assert c.ok("UIDL 3") == f"+OK 3 {uids[2]}"


def test_noop(c):
    c.chat("""
        C: NOOP
        S: +OK
    """)


def test_empty_maildrop(sample):
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.ok("STAT") == "+OK 0 0"
    assert c.multi("LIST") == []
    assert c.multi("UIDL") == []
    c.err("RETR 1")
    c.err("LIST 1")
    c.quit()


# ---------------------------------------------------------------- wrong state

TRANSACTION_ONLY = ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "UIDL", "UIDL 1", "TOP 1 0", "RSET", "NOOP",
                    "LAST", "*ENV 1"]


def test_transaction_commands_refused_before_login(three, sample):
    server = sample.start()
    c = server.connect()
    for command in TRANSACTION_ONLY:
        c.err(command)
    c.ok("USER sample")
    for command in TRANSACTION_ONLY:
        c.err(command)                   # after USER, before PASS: still AUTHORIZATION
        c.ok("USER sample")              # (an -ERR may forget the USER; give it again)
    c.ok("PASS " + POP_PW)
    c.ok("NOOP")
    c.quit()
    # Nothing was deleted by a refused DELE.
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 3


# ---------------------------------------------------------------- bad arguments

BAD_NUMBERS = ["0", "-1", "x", "4", "99", "1x", "0x1", "1.0", "+1", "18446744073709551617",
               "99999999999999999999999"]


@pytest.mark.parametrize("verb", ["RETR", "DELE", "LIST", "UIDL", "TOP", "*ENV"])
def test_bad_message_numbers_get_err(c, verb):
    suffix = " 0" if verb == "TOP" else ""
    for arg in BAD_NUMBERS:
        c.err(f"{verb} {arg}{suffix}")
        c.ok("NOOP")                     # the session continues
    assert c.stat()[0] == 3              # and nothing was deleted


def test_missing_or_bad_arguments_get_err(c):
    for command in ["RETR", "DELE", "TOP", "TOP 1", "*ENV", "RETR ", "TOP 1 ", "TOP 1 -1", "TOP 1 x", "TOP x 1",
                    "TOP 0 1", "TOP 4 1"]:
        c.err(command)
        c.ok("NOOP")
    assert c.stat()[0] == 3


def test_deleted_message_gets_err(c):
    c.ok("DELE 2")
    for command in ["RETR 2", "DELE 2", "LIST 2", "UIDL 2", "TOP 2 0", "*ENV 2"]:
        c.err(command)
        c.ok("NOOP")
    c.ok("RETR 1")
    c.body_lines()


# ---------------------------------------------------------------- DELE, RSET

def test_dele_hides_the_message_from_stat_list_uidl(c, three):
    uids = c.uidl()
    c.chat("""
        C: DELE 2
        S: +OK
        C: DELE 2
        S: -ERR
    """)
    assert c.stat() == (2, len(returned(three[0])) + len(returned(three[2])))
    assert sorted(c.list()) == [1, 3]
    assert c.uidl() == {1: uids[1], 3: uids[3]}


def test_rset_unmarks_deleted_messages(srv, c, three):
    c.ok("DELE 1")
    c.ok("DELE 3")
    assert c.stat()[0] == 1
    c.ok("RSET")
    assert c.stat()[0] == 3
    assert c.retr(1) == returned(three[0])
    c.quit()
    # RSET then QUIT deletes nothing.
    c = srv.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 3
    c.quit()


# ---------------------------------------------------------------- RETR and TOP

def test_retr_is_the_stored_message_with_return_path(c, three):
    c.send("RETR 2")
    status = c.reply()
    assert status.startswith("+OK")
    lines = c.body_lines()
    assert lines[0] == b"Return-Path: <alice@example.com>"
    assert b"".join(line + b"\r\n" for line in lines) == returned(three[1])


def test_list_size_is_the_octets_of_retr_before_dot_stuffing(sample):
    msgs = [
        message(subject="plain"),
        message(subject="dots", body=".\n..\n.leading dot\n...\nend\n"),
        message(subject="lf", body="one\ntwo\n", eol=b"\n"),
        message(subject="nofinal", body="no final newline"),
        message(subject="8bit", body=bytes(range(128, 256)) + b"\n\xe9t\xe9\n"),
    ]
    for data in msgs:
        sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="bounce"), sender="")
    c = sample.start().connect()
    c.login("sample", POP_PW)
    sizes = c.list()
    total = 0
    for n in range(1, 7):
        got = c.retr(n)
        assert sizes[n] == len(got), f"LIST {n} says {sizes[n]}, RETR sent {len(got)} octets"
        total += len(got)
    assert c.stat() == (6, total)


def test_dot_stuffing(sample):
    body = b".\r\n..\r\n.leading dot\r\n...\r\nnot.a.dot\r\n. \r\nend\r\n"
    data = message(subject="dots", body=body, headers=[".X-Dotted: header line starting with a dot"])
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    c.send("RETR 1")
    assert c.reply().startswith("+OK")
    raw = c.raw_body_lines()
    for line in raw:
        assert line != b".", "an unstuffed '.' line would end the reply early"
    assert b"..X-Dotted: header line starting with a dot" in raw
    assert raw[-7:] == [b"..", b"...", b"..leading dot", b"....", b"not.a.dot", b".. ", b"end"]
    assert c.retr(1) == returned(data)
    assert c.top(1, 99999999) == returned(data)
    c.quit()


def test_bare_lf_message_is_sent_with_crlf(sample):
    data = b"From: a@example.com\nSubject: bare lf\n\nline 1\nline 2\n\nline 4\n"
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    c.send("RETR 1")
    assert c.reply().startswith("+OK")
    c.raw_body_lines()                   # the client checks every line ends in CRLF
    got = c.retr(1)
    assert got == returned(crlf(data))
    assert b"\n" not in got.replace(b"\r\n", b"")
    assert c.list()[1] == len(got)


def test_mixed_line_ends_and_lone_cr(sample):
    data = b"From: a@example.com\r\nSubject: mixed\n\r\ncrlf\r\nlf\nend\r\n"
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.retr(1) == returned(crlf(data))


def test_missing_final_newline(sample):
    data = b"From: a@example.com\r\nSubject: no final newline\r\n\r\nlast line without newline"
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    c.send("RETR 1")
    assert c.reply().startswith("+OK")
    lines = c.body_lines()               # properly terminated by CRLF . CRLF
    assert lines[-1] == b"last line without newline"
    assert c.retr(1) == returned(data)
    assert c.list()[1] == len(returned(data))
    c.ok("NOOP")                         # and the session is in step
    c.quit()


def test_eight_bit_bytes_intact(sample):
    body = bytes(b for b in range(1, 256) if b not in (10, 13)) + b"\r\n" + "naïve café ☃\n".encode("utf-8")
    data = b"From: a@example.com\r\nSubject: 8bit caf\xe9\r\nX-Latin1: caf\xe9\r\n\r\n" + body
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    got = c.retr(1)
    assert got == returned(data)
    assert b"\x80" in got and b"\xff" in got and b"caf\xe9" in got


def test_five_mib_message(sample):
    chunk = b"".join(b"%06d the quick brown fox jumps over the lazy dog\r\n" % i for i in range(10000))
    body = b""
    while len(body) < 5 * 1024 * 1024:
        body += chunk
    body += b".starts with a dot\r\n"
    data = message(subject="five mib", body=body)
    sample.deliver("fred@sample.demon.co.uk", data=data, sender=SENDER)
    c = sample.start().connect(timeout=60 * SLOW)
    c.login("sample", POP_PW)
    expected = returned(data)
    assert c.list()[1] == len(expected)
    got = c.retr(1)
    assert len(got) == len(expected)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
    c.quit()


def test_null_sender_return_path_is_empty(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="bounce 1"), sender="")
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="bounce 2"), sender="<>")
    c = sample.start().connect()
    c.login("sample", POP_PW)
    for n in (1, 2):
        assert c.retr(n).startswith(b"Return-Path: <>\r\n")
        assert c.top(n, 0).startswith(b"Return-Path: <>\r\n")


def test_top_headers_and_k_body_lines(c, three):
    full = returned(three[0])
    head, body = full.split(b"\r\n\r\n", 1)
    body_lines = body.split(b"\r\n")
    assert c.top(1, 0) == head + b"\r\n\r\n"
    assert c.top(1, 1) == head + b"\r\n\r\n" + body_lines[0] + b"\r\n"
    assert c.top(1, 2) == head + b"\r\n\r\n" + body_lines[0] + b"\r\n" + body_lines[1] + b"\r\n"
    assert c.top(1, 3) == full
    assert c.top(1, 99999999) == full
    assert c.top(1, 99999999) == c.retr(1)


def test_top_of_a_dele_marked_message_and_after_rset(c):
    c.ok("DELE 3")
    c.err("TOP 3 0")
    c.ok("RSET")
    assert c.top(3, 0).startswith(b"Return-Path: <alice@example.com>\r\n")


# ---------------------------------------------------------------- CAPA

def capa(c):
    return [line.decode() for line in c.multi("CAPA")]


def test_capa_lists_what_the_server_supports(server):
    c = server.connect()
    before = capa(c)
    words = {line.split(" ")[0].upper() for line in before}
    for needed in ("USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
        assert needed in words, f"CAPA lacks {needed}: {before}"
    assert "SASL PLAIN" in before
    for absent in ("STLS", "APOP"):            # no tls: in this config, so no STLS
        assert absent not in words, f"CAPA advertises {absent}, which does not work: {before}"
    impl = [line for line in before if line.upper().startswith("IMPLEMENTATION")]
    assert impl, f"no IMPLEMENTATION line: {before}"
    c.login("sample", POP_PW)
    after = capa(c)
    words_after = {line.split(" ")[0].upper() for line in after}
    for needed in ("TOP", "UIDL", "PIPELINING", "RESP-CODES"):
        assert needed in words_after, f"CAPA in TRANSACTION lacks {needed}: {after}"
    # RFC 2449: what the session can use now. USER, SASL and STLS are
    # AUTHORIZATION's (test_tls.py checks STLS with tls: configured).
    assert "STLS" not in words_after and "SASL" not in words_after and "USER" not in words_after
    c.quit()


def test_capa_lines_are_not_duplicated(server):
    c = server.connect()
    lines = capa(c)
    assert len(lines) == len(set(lines)), lines


def test_commands_advertised_in_capa_work(three, sample):
    c = sample.start().connect()
    c.ok("CAPA")
    c.body_lines()
    c.login("sample", POP_PW)
    c.multi("TOP 1 0")
    c.multi("UIDL")
    c.quit()
