"""SDPS's own commands (DESIGN.md section 3; spec "Additional commands"):
LAST (RFC 1460) and *ENV."""

import pytest

from conftest import POP_PW
from sdps_harness import message


@pytest.fixture
def srv(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="one"), sender="alice@example.com")
    sample.deliver("jim@sample.demon.co.uk", data=message(subject="two"), sender="")
    sample.deliver("Fred.Bloggs@Sample.demon.co.uk", data=message(subject="three"), sender="<bob@example.org>")
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="four"), sender="<>")
    return sample.start()


@pytest.fixture
def c(srv):
    client = srv.connect()
    client.login("sample", POP_PW)
    yield client
    client.close()


# ---------------------------------------------------------------- LAST

def last(c):
    reply = c.ok("LAST")
    words = reply.split()
    assert len(words) >= 2 and words[1].isdigit(), f"LAST reply is not '+OK n': {reply!r}"
    return int(words[1])


def test_last_is_zero_after_pass(c):
    assert last(c) == 0


def test_last_follows_retr_and_dele(c):
    c.retr(2)
    assert last(c) == 2
    c.ok("DELE 1")
    assert last(c) == 2                      # the highest, not the latest
    c.ok("DELE 3")
    assert last(c) == 3
    c.retr(4)
    assert last(c) == 4
    c.retr(2)
    assert last(c) == 4


def test_last_ignores_top_list_uidl_and_failed_commands(c):
    c.top(3, 0)
    c.multi("LIST")
    c.ok("LIST 4")
    c.ok("UIDL 4")
    c.env(4)
    c.err("RETR 9")
    c.err("DELE 0")
    assert last(c) == 0


def test_rset_sets_last_to_zero(c):
    c.retr(3)
    c.ok("DELE 2")
    assert last(c) == 3
    c.ok("RSET")
    assert last(c) == 0


def test_last_starts_at_zero_in_each_session(srv, c):
    c.retr(4)
    c.quit()
    c = srv.connect()
    c.login("sample", POP_PW)
    assert last(c) == 0
    c.quit()


def test_last_refused_before_login(srv):
    c = srv.connect()
    c.err("LAST")


# ---------------------------------------------------------------- *ENV

def test_env_reports_ok_then_rd_after_retr(c):
    lines = c.env(1)
    assert len(lines) >= 4, lines
    assert lines[0][:2].upper() == "OK"
    assert lines[2] == "alice@example.com"
    assert lines[3] == "fred@sample.demon.co.uk"
    c.retr(1)
    assert c.env(1)[0][:2].upper() == "RD"
    assert c.env(2)[0][:2].upper() == "OK"


def test_env_top_does_not_mark_read(c):
    c.top(1, 0)
    c.top(1, 99999999)
    assert c.env(1)[0][:2].upper() == "OK"


def test_env_null_sender_is_an_empty_line_3(c):
    for n in (2, 4):                         # -f '' and -f '<>'
        lines = c.env(n)
        assert len(lines) >= 4, lines
        assert lines[2] == "", f"*ENV {n} line 3 for a null sender: {lines[2]!r}"


def test_env_sender_without_angle_brackets(c):
    assert c.env(3)[2] == "bob@example.org"


def test_env_recipient_is_line_4(c):
    assert c.env(2)[3] == "jim@sample.demon.co.uk"
    assert c.env(3)[3].lower() == "fred.bloggs@sample.demon.co.uk"


@pytest.mark.parametrize("arg", ["", "0", "-1", "x", "5", "99"])
def test_env_refuses_missing_or_nonexistent(c, arg):
    c.err(f"*ENV {arg}".strip())
    c.ok("NOOP")


def test_env_refuses_deleted_and_works_again_after_rset(c):
    c.ok("DELE 2")
    c.err("*ENV 2")
    c.ok("RSET")
    assert len(c.env(2)) >= 4


def test_env_is_case_insensitive_like_other_verbs(c):
    assert c.text("*env 1")[2] == "alice@example.com"


def test_env_on_user_login(srv):
    c = srv.connect()
    c.login("fred+sample", POP_PW)
    assert [c.env(n)[3] for n in (1, 2)] == ["fred@sample.demon.co.uk"] * 2
    c.quit()
