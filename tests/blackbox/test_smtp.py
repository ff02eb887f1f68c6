"""The SMTP side of the spool (issue 10): `sdps flush` to a real SMTP
server (aiosmtpd), `sdps expire` with RFC 3464 bounces through a relay,
and `sdps lmtp`. Each test reads like an admin's session: queue mail,
run the command, look at what the receiver got and what the spool kept."""

import email
import email.policy
import json
import re
import subprocess
import time

import pytest

from conftest import POP_PW
from sdps_harness import EX_NOUSER, EX_OK, EX_TEMPFAIL, TIMEOUT, binary, crlf, message, wait_until
from smtp_harness import LineClient, Lmtp, Receiver, closed_port

EX_UNAVAILABLE = 69


def stored(data: bytes) -> bytes:
    """What flush sends for `data` delivered with `sdps deliver`: CRLF
    lines, a final CRLF, no Return-Path."""
    data = crlf(data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def uidls(site, host="sample"):
    return [line.split("\t")[1] for line in site.spool_list(host).splitlines()]


def flush(site, receiver_or_address, *extra, expect=EX_OK, host="sample"):
    to = receiver_or_address if isinstance(receiver_or_address, str) else receiver_or_address.address
    return site.sdps("flush", host, "--to", to, "--timeout", "20s", *extra, expect=expect)


def popen_sdps(site, *args):
    return subprocess.Popen([str(binary("sdps")), "-c", str(site.config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ------------------------------------------------------------------ flush

def test_flush_delivers_exactly_the_queue_with_envelopes_and_bytes(sample):
    sample.add_host("other", pop3="other pw")
    first = message(subject="first", body=".leading dot\n..two\nlast line without end", eol=b"\n")
    second = message(subject="second", body="caf\xe9 8-bit\r\n".encode("latin-1"))
    bounce = message(subject="a bounce", sender="MAILER-DAEMON@example.com")
    sample.deliver("fred@sample.demon.co.uk", data=first, punt="finchley")
    sample.deliver("jim@SAMPLE.demon.co.uk", data=second, punt="docklands", sender="<bob@example.net>")
    sample.deliver("fred@sample.demon.co.uk", data=bounce, sender="")
    sample.deliver("x@other.demon.co.uk", data=message(subject="not for sample"))
    queued = uidls(sample)

    with Receiver() as r:
        result = flush(sample, r)
    lines = result.stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in lines] == queued, "one line per message, oldest first"
    assert all(line.split("\t")[2] == "delivered" and "\t250 " in line for line in lines)
    assert r.envelopes == [
        ("alice@example.com", ["fred@sample.demon.co.uk"], stored(first)),
        ("bob@example.net", ["jim@sample.demon.co.uk"], stored(second)),
        ("<>", ["fred@sample.demon.co.uk"], stored(bounce)),
    ]
    assert sample.spool_list("sample") == ""
    assert "not for sample" not in str(r.envelopes)
    assert len(uidls(sample, "other")) == 1


def test_flush_of_an_empty_queue_sends_nothing_and_exits_0(sample):
    result = flush(sample, f"127.0.0.1:{closed_port()}")
    assert result.stdout == b""


@pytest.mark.parametrize("refusal", [
    {"rcpt_reply": "450 4.2.0 Mailbox busy"},
    {"data_reply": "451 4.3.0 Try again later"},
    {"rcpt_reply": "550 5.1.1 No such user"},
    {"data_reply": "554 5.6.0 Content refused"},
])
def test_flush_keeps_a_message_the_receiver_refuses(sample, refusal):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="refused"))
    before = uidls(sample)
    with Receiver(**refusal) as r:
        result = flush(sample, r, expect=EX_TEMPFAIL)
    assert r.envelopes == []
    assert uidls(sample) == before, "a refused message stays queued"
    reply = next(iter(refusal.values()))
    assert reply in result.stdout.decode()
    if reply.startswith("5"):
        assert reply in result.stderr.decode(), "a permanent failure is logged with the reply"
    # the next flush, to a willing receiver, delivers it
    with Receiver() as r:
        flush(sample, r)
    assert len(r.envelopes) == 1 and uidls(sample) == []


def test_flush_exit_codes_for_unreachable_and_unknown(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="waits"))
    result = flush(sample, f"127.0.0.1:{closed_port()}", expect=EX_UNAVAILABLE)
    assert b"cannot reach" in result.stderr
    assert len(uidls(sample)) == 1
    flush(sample, "127.0.0.1:25", host="nosuchhost", expect=EX_NOUSER)
    # no --to: the host's dialup address (here a single address, 127.0.0.2) port 25
    sample.sdps("flush", "sample", "--timeout", "5s", expect=EX_UNAVAILABLE)
    sample.sdps("flush", "sample", "--to", "mx.example.com:25", expect=64)


def test_flush_max_messages_leaves_the_rest(sample):
    for n in range(3):
        sample.deliver("fred@sample.demon.co.uk", data=message(subject=f"m{n}"))
    queued = uidls(sample)
    with Receiver() as r:
        flush(sample, r, "--max-messages", "2", expect=EX_TEMPFAIL)
    assert len(r.envelopes) == 2
    assert uidls(sample) == queued[2:]


def test_flush_during_a_pop3_session_gives_the_dummy_message(sample):
    data = message(subject="raced")
    sample.deliver("fred@sample.demon.co.uk", data=data)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    sizes, ids = c.list(), c.uidl()
    with Receiver() as r:
        flush(sample, r)
    assert r.envelopes[0][2] == stored(data)
    assert c.list() == sizes and c.uidl() == ids, "LIST and UIDL keep the original's size and unique-id"
    dummy = c.retr(1)
    assert b"Message already delivered by SMTP" in dummy
    assert b"Message-ID: <" in dummy and b"Subject: raced" not in dummy
    c.quit()


def test_a_message_deleted_by_pop3_during_the_flush_is_not_sent(sample):
    one, two = message(subject="one"), message(subject="two")
    sample.deliver("fred@sample.demon.co.uk", data=one)
    sample.deliver("fred@sample.demon.co.uk", data=two)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    c.ok("DELE 2")
    with Receiver(data_delay=1.0) as r:
        proc = popen_sdps(sample, "flush", "sample", "--to", r.address, "--timeout", "20s")
        assert r.data_started.wait(TIMEOUT), "flush did not reach DATA"
        c.quit()  # removes message 2 while flush is busy with message 1
        out, err = proc.communicate(timeout=6 * TIMEOUT)
    assert proc.returncode == EX_OK, err.decode()
    assert [e[2] for e in r.envelopes] == [stored(one)], "the deleted message is skipped, not sent"
    assert len(out.decode().splitlines()) == 1
    assert uidls(sample) == []


def test_two_flushes_at_once_send_each_message_once(sample):
    for n in range(4):
        sample.deliver("fred@sample.demon.co.uk", data=message(subject=f"m{n}"))
    with Receiver(data_delay=0.3) as r:
        procs = [popen_sdps(sample, "flush", "sample", "--to", r.address, "--timeout", "20s") for _ in range(2)]
        results = [(p.wait(6 * TIMEOUT), p.stderr.read().decode()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
    subjects = sorted(email.message_from_bytes(e[2])["Subject"] for e in r.envelopes)
    assert subjects == ["m0", "m1", "m2", "m3"], "each message exactly once"
    codes = sorted(code for code, _ in results)
    assert codes in ([EX_OK, EX_OK], [EX_OK, EX_TEMPFAIL]), results
    if codes[1] == EX_TEMPFAIL:
        assert any("already running" in err or "is running" in err for _, err in results)
    assert uidls(sample) == []


# ------------------------------------------------------------------ expire

def spool_setup_for_expiry(sample):
    """An unread message, a read one and a bounce (null sender)."""
    unread = message(subject="never fetched")
    sample.deliver("fred@sample.demon.co.uk", data=unread)
    sample.deliver("jim@sample.demon.co.uk", data=message(subject="fetched"))
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="a bounce"), sender="")
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    c.retr(2)  # sets the read flag
    c.quit()
    time.sleep(0.01)
    return unread


def test_expire_bounces_unread_mail_and_silently_removes_read_mail(sample):
    unread = spool_setup_for_expiry(sample)
    with Receiver() as relay:
        result = sample.sdps("expire", "--older-than", "1ms", "--relay", relay.address, "--timeout", "20s")
    out = result.stdout.decode()
    assert "expired with bounce: 1, expired silently: 2, kept: 0, failed: 0" in out
    assert uidls(sample) == []
    assert len(relay.envelopes) == 1, "one bounce: none for the read message, none for the bounce"
    mail_from, rcpts, data = relay.envelopes[0]
    assert mail_from == "<>" and rcpts == ["alice@example.com"]
    dsn = email.message_from_bytes(data, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                      "text/rfc822-headers"]
    status_blocks = parts[1].get_payload()
    per_recipient = status_blocks[1]
    assert per_recipient["Final-Recipient"] == "rfc822; fred@sample.demon.co.uk"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"].startswith(("4.", "5."))
    assert status_blocks[0]["Reporting-MTA"].startswith("dns;")
    quoted = parts[2].get_payload() if isinstance(parts[2].get_payload(), str) else parts[2].as_string()
    assert "Subject: never fetched" in quoted
    assert b"hello" not in data.split(b"text/rfc822-headers", 1)[1], "the header only, not the body"
    assert dsn["To"].addresses[0].addr_spec == "alice@example.com"
    assert "MAILER-DAEMON" in dsn["From"]


def test_expire_keeps_everything_when_the_relay_is_down(sample):
    spool_setup_for_expiry(sample)
    before = uidls(sample)
    result = sample.sdps("expire", "--older-than", "1ms", "--relay", f"127.0.0.1:{closed_port()}",
                         "--timeout", "5s", expect=EX_TEMPFAIL)
    assert uidls(sample) == before, "nothing removed, read mail included"
    assert b"relay" in result.stderr


def test_expire_keeps_a_message_whose_bounce_is_refused(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="unread"))
    before = uidls(sample)
    with Receiver(rcpt_reply="451 4.3.0 Later") as relay:
        result = sample.sdps("expire", "--older-than", "1ms", "--relay", relay.address, expect=EX_TEMPFAIL)
    assert uidls(sample) == before
    assert "failed: 1" in result.stdout.decode()


def test_expire_dry_run_and_young_mail(sample):
    spool_setup_for_expiry(sample)
    before = uidls(sample)
    result = sample.sdps("expire", "--older-than", "1ms", "--relay", f"127.0.0.1:{closed_port()}", "--dry-run")
    out = result.stdout.decode()
    assert out.count("would-bounce") == 1 and out.count("would-remove") == 2
    assert uidls(sample) == before
    result = sample.sdps("expire", "--older-than", "1h", "sample")
    assert "expired with bounce: 0, expired silently: 0, kept: 3, failed: 0" in result.stdout.decode()
    # read mail may go sooner than unread mail
    with Receiver() as relay:
        sample.sdps("expire", "--older-than", "1h", "--read-older-than", "1ms", "--relay", relay.address)
    assert relay.envelopes == [] and len(uidls(sample)) == 2


# ------------------------------------------------------------------ lmtp

def lmtp_transaction(port, sender, recipients, data: bytes):
    c = LineClient(port)
    assert c.reply()[0] == 220
    assert c.cmd("LHLO mta.test")[0] == 250
    replies = [c.cmd(f"MAIL FROM:<{sender}>")]
    replies += [c.cmd(f"RCPT TO:<{r}>") for r in recipients]
    code, _ = c.cmd("DATA")
    after = []
    if code == 354:
        body = crlf(data)
        body = b"".join(b"." + line if line.startswith(b".") else line for line in body.splitlines(keepends=True))
        c.send(body + b".\r\n")
        accepted = sum(1 for code, _ in replies[1:] if code == 250)
        after = [c.reply() for _ in range(accepted)]
    c.cmd("QUIT")
    c.close()
    return replies, code, after


def test_lmtp_one_reply_per_recipient_and_a_delivered_to_each(sample):
    lmtp = Lmtp(sample)
    try:
        data = message(subject="via lmtp", body=".dot line\nend\n")
        replies, data_code, after = lmtp_transaction(
            lmtp.port, "alice@example.com",
            ["fred@sample.demon.co.uk", "x@nosuchhost.demon.co.uk", "jim@sample.demon.co.uk"], data)
    finally:
        assert lmtp.stop() == 0
    assert [code for code, _ in replies] == [250, 250, 550, 250]
    assert data_code == 354
    assert [code for code, _ in after] == [250, 250], "one reply per accepted recipient"
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 2
    got = sorted(c.retr(n) for n in (1, 2))
    expected = sorted(b"Return-Path: <alice@example.com>\r\nDelivered-To: " + to.encode() + b"\r\n" + stored(data)
                      for to in ("fred@sample.demon.co.uk", "jim@sample.demon.co.uk"))
    assert got == expected
    c.quit()


@pytest.mark.site_options(top={"max_message_size": 2048})
def test_lmtp_refuses_a_message_over_max_message_size_with_552(sample):
    lmtp = Lmtp(sample)
    try:
        c = LineClient(lmtp.port)
        c.reply()
        c.cmd("LHLO mta.test")
        assert c.cmd("MAIL FROM:<a@example.com> SIZE=5000")[0] == 552
        c.close()
        replies, data_code, after = lmtp_transaction(
            lmtp.port, "a@example.com", ["fred@sample.demon.co.uk", "jim@sample.demon.co.uk"],
            message(subject="big", body="x" * 70 + "\n") * 1 + b"y" * 3000 + b"\n")
    finally:
        lmtp.stop()
    assert [code for code, _ in after] == [552, 552]
    assert sample.spool_list("sample") == ""


# ------------------------------------------------------------------ expire's cron edges (issue 18.8, 19.2)

def test_expire_of_an_unknown_host_exits_67_as_flush_does(sample):
    result = sample.sdps("expire", "--older-than", "1ms", "nosuchhost", expect=EX_NOUSER)
    assert b"nosuchhost" in result.stderr
    sample.sdps("expire", "--older-than", "1ms", "not_a_host", expect=EX_NOUSER)
    # A host deleted from the database whose mail is still queued expires as any other.
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="orphan"))
    sample.sdps("host", "del", "sample")
    result = sample.sdps("expire", "--older-than", "1h", "sample")
    assert "kept: 1" in result.stdout.decode()


def test_expire_removes_a_message_whose_bounce_is_refused_for_good_as_a_double_bounce(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="nobody wants it back"))
    with Receiver(rcpt_reply="550 5.1.1 No such sender here") as relay:
        result = sample.sdps("expire", "--older-than", "1ms", "--relay", relay.address)
    assert uidls(sample) == [], "kept, it would fail again at every run"
    out = result.stdout.decode()
    assert "\tdouble-bounce\t<alice@example.com>\t550 5.1.1 No such sender here" in out
    assert "expired with bounce: 0, expired silently: 0, kept: 0, failed: 0, double bounces: 1" in out
    assert "double bounce" in result.stderr.decode()


def test_a_message_expired_during_a_pop3_session_is_announced_as_returned_to_its_sender(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="too late"))
    c = sample.start().connect()
    c.login("sample", POP_PW)
    sizes, ids = c.list(), c.uidl()
    with Receiver() as relay:
        sample.sdps("expire", "--older-than", "1ms", "--relay", relay.address)
    assert len(relay.envelopes) == 1
    notice = c.retr(1)
    assert b"Subject: Message expired and returned to its sender" in notice
    assert b"delivered by SMTP" not in notice and b"too late" not in notice
    assert c.retr(1) == notice and c.top(1, 0) == notice.split(b"\r\n\r\n")[0] + b"\r\n\r\n", \
        "one notice, Message-ID and Date included, for the whole session"
    assert c.list() == sizes and c.uidl() == ids
    c.quit()


# ------------------------------------------------------------------ lmtp's syntax and time limits (issue 19.8)

def test_lmtp_refuses_a_space_after_the_bracket_and_binarymime(sample):
    lmtp = Lmtp(sample)
    try:
        c = LineClient(lmtp.port)
        c.reply()
        assert c.cmd("LHLO mta.test")[0] == 250
        assert c.cmd("MAIL FROM:<a@example.com> BODY=BINARYMIME")[0] == 555, "BINARYMIME is not offered"
        assert c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")[0] == 250
        assert c.cmd("RCPT TO:< x@sample.demon.co.uk>")[0] == 501, "not the user ' x'"
        assert c.cmd("RCPT TO:<x@sample.demon.co.uk>")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        c.close()
    finally:
        assert lmtp.stop() == 0
    assert sample.spool_list("sample") == ""


def test_lmtp_closes_a_client_idle_in_data_with_421(sample):
    lmtp = Lmtp(sample, "--timeout", "1s")
    try:
        c = LineClient(lmtp.port)
        c.reply()
        c.cmd("LHLO mta.test")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<fred@sample.demon.co.uk>")
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: half a message\r\n")
        code, lines = c.reply()           # then nothing more: the server's limit ends it
        assert code == 421 and lines[0].startswith("4.4.2 "), lines
        assert c.sock.recv(100) == b"", "closed after the 421"
        c.close()
    finally:
        assert lmtp.stop() == 0
    assert sample.spool_list("sample") == ""
    assert re.search(r"delivery client=\S+ from=<a@example.com> size=\d+ data=none "
                     r"recipients=\"<fred@sample.demon.co.uk> not delivered\"", lmtp.log()), lmtp.log()


def test_lmtp_logs_one_line_per_transaction_with_each_recipients_outcome(sample):
    lmtp = Lmtp(sample)
    try:
        lmtp_transaction(lmtp.port, "alice@example.com",
                         ["fred@sample.demon.co.uk", "x@nosuchhost.demon.co.uk"], message(subject="logged"))
    finally:
        assert lmtp.stop() == 0
    lines = [line for line in lmtp.log().splitlines() if " delivery " in line]
    assert len(lines) == 1, lmtp.log()
    line = lines[0]
    # As sdpsd logs: a time, a level, the program.
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info sdps lmtp: delivery client=127\.0\.0\.1:\d+ ", line)
    assert re.search(r"<fred@sample.demon.co.uk> stored \d{17}\.[0-9a-f]{16} on (finchley|docklands)", line)
    assert "<x@nosuchhost.demon.co.uk> refused: 550 5.1.1 " in line


@pytest.mark.site_options(top={"log_format": "json"})
def test_lmtp_follows_log_format(sample):
    lmtp = Lmtp(sample)
    try:
        lmtp_transaction(lmtp.port, "alice@example.com", ["fred@sample.demon.co.uk"], message(subject="json"))
    finally:
        assert lmtp.stop() == 0
    events = [json.loads(line) for line in lmtp.log().splitlines() if line.startswith("{")]
    assert events and len(events) == len(lmtp.log().splitlines()), lmtp.log()
    [delivery] = [e for e in events if e.get("event") == "delivery"]
    assert delivery["level"] == "info" and delivery["source"] == "sdps lmtp"
    assert delivery["from"] == "<alice@example.com>" and delivery["recipients"].startswith(
        "<fred@sample.demon.co.uk> stored ")
