"""User logins whose envelope local part is UTF-8 (SMTPUTF8, RFC 6531):
`sdps deliver` stores mail for frédé@sample.demon.co.uk, so `USER
frédé+sample` must log in and see exactly that mail, in the embedded
default and through a front end (backend_auth parses USER as auth does)."""

import pytest

from conftest import POP_PW
from frontend_harness import FrontEndSite
from sdps_harness import Site, binary, message

FREDE = "fr\u00e9d\u00e9"                  # frédé


def deliver(site, subject, local):
    data = message(subject=subject, body=f"body of {subject}\n", to=f"{local}@sample")
    site.deliver(f"{local}@sample.demon.co.uk", data=data)
    return data


def subjects(c):
    out = []
    for n in sorted(c.list()):
        head = c.top(n, 0).decode("utf-8")
        out.append(next(line[9:] for line in head.split("\r\n") if line.startswith("Subject: ")))
    return out


@pytest.fixture(params=["embedded", "front end"])
def served(request):
    assert binary("sdpsd").exists() and binary("sdps").exists(), "sdpsd and sdps are not built (set SDPS_BUILD_DIR)"
    site = Site()
    site.add_host("sample", pop3=POP_PW)
    deliver(site, "for frede 1", FREDE)
    deliver(site, "for fred", "fred")
    deliver(site, "for Emile", "\u00c9mile")
    deliver(site, "for frede 2", FREDE)
    if request.param == "front end":
        fe = FrontEndSite(site)
        yield site, fe.start()
        fe.close()
    else:
        yield site, site.start()
        site.close()


def test_a_utf8_user_logs_in_and_sees_only_its_own_mail(served):
    _site, server = served
    c = server.connect()
    c.ok(f"USER {FREDE}+sample".encode())
    assert c.ok(f"PASS {POP_PW}").startswith("+OK")
    assert subjects(c) == ["for frede 1", "for frede 2"]
    assert c.env(1)[3].encode("latin-1").decode("utf-8") == f"{FREDE}@sample.demon.co.uk"
    c.ok("DELE 1")
    c.quit()
    # ASCII letters fold, as everywhere in user names; the full domain works.
    c = server.connect()
    c.ok(f"USER Fr\u00e9d\u00e9@sample.demon.co.uk".encode())
    c.ok(f"PASS {POP_PW}")
    assert subjects(c) == ["for frede 2"]
    c.quit()
    c = server.connect()
    c.ok("USER \u00c9mile+sample".encode())
    c.ok(f"PASS {POP_PW}")
    assert subjects(c) == ["for Emile"]
    c.quit()
    c = server.connect()                       # the host login still sees everything left
    c.login("sample", POP_PW)
    assert subjects(c) == ["for fred", "for Emile", "for frede 2"]
    c.quit()


BAD_NAMES = [b"fr\xc3+sample", b"fr\xa9d+sample", b"fr\xc0\xafx+sample", b"fr\xed\xa0\x80+sample",
             b"fr\xc2\x85+sample", b"fr\xe9d\xe9+sample", b"fred+sampl\xc3\xa9", b"\xc3\xa9/..+sample"]


def test_invalid_utf8_and_controls_in_user_names_are_refused(served):
    _site, server = served
    c = server.connect()
    for name in BAD_NAMES:
        assert "invalid" in c.err(b"USER " + name), name
        c.err(f"PASS {POP_PW}")                # no login pending
    c.quit()
