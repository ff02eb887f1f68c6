"""The `sdps` admin tool (DESIGN.md section 2): `deliver` (sysexits, one copy
per recipient, punts, crash safety) and `spool list`."""

import signal
import subprocess
import time

import pytest

from conftest import POP_PW
from sdps_harness import EX_NOUSER, EX_OK, EX_TEMPFAIL, TIMEOUT, binary, message, returned


def test_deliver_stores_and_exits_0(sample):
    result = sample.deliver("fred@sample.demon.co.uk", data=message(subject="hello"))
    assert result.returncode == EX_OK


@pytest.mark.parametrize("recipient", ["fred@nosuchhost.demon.co.uk", "fred@sample.example.com",
                                       "fred@demon.co.uk", "fred@sub.sample.demon.co.uk"])
def test_deliver_unknown_host_or_foreign_domain_exits_67(sample, recipient):
    sample.deliver(recipient, data=message(subject="refused"), expect=EX_NOUSER)
    assert "alice@example.com" not in sample.spool_list("sample"), f"a message to {recipient} was stored"
    assert not any(sample.punt_dir(p).glob("*/0*") for p in ("finchley", "docklands") if sample.punt_dir(p).exists())


def test_deliver_host_name_is_case_insensitive(sample):
    sample.deliver("fred@SAMPLE.Demon.Co.UK", data=message(subject="caps"))
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 1


def test_deliver_several_recipients_stores_one_copy_each(sample):
    data = message(subject="to three")
    recipients = ["fred@sample.demon.co.uk", "jim@sample.demon.co.uk", "sheila@sample.demon.co.uk"]
    sample.deliver(*recipients, data=data)
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 3
    uids = c.uidl()
    assert len(set(uids.values())) == 3
    assert sorted(c.env(n)[3] for n in (1, 2, 3)) == sorted(recipients)
    for n in (1, 2, 3):
        assert c.retr(n) == returned(data)
    c.quit()
    for user in ("fred", "jim", "sheila"):
        c = sample.start().connect()
        c.login(f"{user}+sample", POP_PW)
        assert c.stat()[0] == 1
        c.quit()


def test_deliver_with_one_unknown_recipient_among_several(sample):
    sample.add_host("other", pop3="other pw")
    result = sample.deliver("fred@sample.demon.co.uk", "x@nosuchhost.demon.co.uk", "y@other.demon.co.uk",
                            data=message(subject="mixed"), expect=None)
    # An MTA reads the exit status for the whole call; a 67 must mean
    # "nothing useful stored" or it retries/bounces the stored copies too.
    c = sample.start().connect()
    c.login("sample", POP_PW)
    stored = c.stat()[0]
    c.quit()
    assert result.returncode in (EX_OK, EX_NOUSER)
    if result.returncode == EX_NOUSER:
        assert stored == 0, "exit 67 (not delivered) but a copy was stored: the MTA will deliver it twice"
    else:
        assert stored == 1


def test_deliver_to_a_named_punt(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="f"), punt="finchley")
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="d"), punt="docklands")
    listing = sample.spool_list("sample")
    lines = [line for line in listing.splitlines() if "fred@sample.demon.co.uk" in line]
    assert len(lines) == 2
    assert sum("finchley" in line for line in lines) == 1
    assert sum("docklands" in line for line in lines) == 1


def test_deliver_to_an_unknown_punt_fails(sample):
    result = sample.deliver("fred@sample.demon.co.uk", data=message(), punt="nowhere", expect=None)
    assert result.returncode != EX_OK
    assert b"nowhere" in result.stderr


def test_deliver_temporary_failure_exits_75(sample):
    for punt in ("finchley", "docklands"):
        folder = sample.punt_dir(punt)
        if folder.exists():
            folder.rmdir()
        folder.write_text("a file where the spool folder should be\n")   # unwritable even for root
    sample.deliver("fred@sample.demon.co.uk", data=message(), expect=EX_TEMPFAIL)
    for punt in ("finchley", "docklands"):
        sample.punt_dir(punt).unlink()


def test_deliver_null_sender(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="bounce"), sender="")
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.env(1)[2] == ""
    assert c.retr(1).startswith(b"Return-Path: <>\r\n")


def test_deliver_killed_mid_message_leaves_nothing_visible(sample):
    process = subprocess.Popen([str(binary("sdps")), "-c", str(sample.config), "deliver", "-f", "a@example.com",
                                "fred@sample.demon.co.uk"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    process.stdin.write(message(subject="partial") + b"x" * 1_000_000)
    process.stdin.flush()
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(TIMEOUT)
    process.stdin.close()
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat() == (0, 0), "a partly written message is visible"
    c.quit()
    assert "partial" not in sample.spool_list("sample")


def test_deliver_empty_message(sample):
    result = sample.deliver("fred@sample.demon.co.uk", data=b"", expect=None)
    if result.returncode == EX_OK:
        c = sample.start().connect()
        c.login("sample", POP_PW)
        c.retr(1)
        c.quit()


def test_spool_list_shows_punt_uidl_size_read_flag_envelope(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="one"), sender="alice@example.com",
                   punt="finchley")
    sample.deliver("jim@sample.demon.co.uk", data=message(subject="two"), sender="bob@example.org",
                   punt="docklands")
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uids, sizes = c.uidl(), c.list()
    c.quit()
    before = sample.spool_list("sample")
    for n, punt, sender, rcpt in ((1, "finchley", "alice@example.com", "fred@sample.demon.co.uk"),
                                  (2, "docklands", "bob@example.org", "jim@sample.demon.co.uk")):
        line = next((line for line in before.splitlines() if uids[n] in line), None)
        assert line is not None, f"UIDL {uids[n]} not in `sdps spool list`:\n{before}"
        for field in (punt, sender, rcpt, str(sizes[n])):
            assert field in line, f"{field!r} missing from the spool list line {line!r}"
    c = server.connect()
    c.login("sample", POP_PW)
    c.retr(1)
    c.quit()
    after = sample.spool_list("sample")
    line_before = next(line for line in before.splitlines() if uids[1] in line)
    line_after = next(line for line in after.splitlines() if uids[1] in line)
    assert line_before != line_after, "the read flag does not show in `sdps spool list`"
    assert next(line for line in before.splitlines() if uids[2] in line) == \
        next(line for line in after.splitlines() if uids[2] in line)


def test_spool_list_of_unknown_host_fails(sample):
    result = sample.sdps("spool", "list", "nosuchhost", expect=None)
    assert result.returncode != 0
    assert result.stderr


def test_host_del_removes_the_host(sample):
    sample.sdps("host", "del", "sample")
    assert "sample" not in sample.sdps("host", "list").stdout.decode()
    sample.deliver("fred@sample.demon.co.uk", data=message(), expect=EX_NOUSER)


def test_usage_errors(sample):
    assert sample.sdps("deliver", expect=None).returncode != 0                     # no recipient
    assert sample.sdps("frobnicate", expect=None).returncode != 0
    assert sample.sdps("host", "passwd", "sample", input="x\n", expect=None).returncode != 0   # neither flag
