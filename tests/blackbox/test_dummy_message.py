"""The dummy message for a message removed during the session
(DESIGN.md section 3; docs/spool.md "Removing a message by hand"): RETR's
"+OK N octets" counts what is really sent, while LIST keeps the original
size; *ENV still answers four lines (modules/extensions/README.md), in the
embedded default and through a front end alike."""

import re

import pytest

from conftest import POP_PW
from frontend_harness import FrontEndSite
from sdps_harness import Site, binary, message


def deliver(site, subject, to="fred"):
    data = message(subject=subject, body=f"body of {subject}\n" * 8, to=f"{to}@sample")
    site.deliver(f"{to}@sample.demon.co.uk", data=data)
    return data


def retr_with_status(c, n):
    """RETR n: the announced octet count and the octets sent before dot-stuffing."""
    status = c.ok(f"RETR {n}")
    m = re.fullmatch(r"\+OK (\d+) octets", status)
    assert m, f"RETR status {status!r} is not '+OK N octets'"
    return int(m.group(1)), b"".join(line + b"\r\n" for line in c.body_lines())


@pytest.fixture(params=["embedded", "front end"])
def served(request):
    assert binary("sdpsd").exists() and binary("sdps").exists(), "sdpsd and sdps are not built (set SDPS_BUILD_DIR)"
    site = Site()
    site.add_host("sample", pop3=POP_PW)
    fe = FrontEndSite(site) if request.param == "front end" else None
    yield site, (lambda: fe.start()) if fe else site.start
    if fe:
        fe.close()
    else:
        site.close()


def test_retr_of_a_message_smtp_removed_announces_the_octets_it_sends(served):
    site, start = served
    deliver(site, "kept")
    deliver(site, "gone")
    server = start()
    c = server.connect()
    c.login("sample", POP_PW)
    sizes, uids = c.list(), c.uidl()
    announced, sent = retr_with_status(c, 1)
    assert announced == len(sent) == sizes[1]        # an ordinary message: all three agree
    site.remove_message(uids[2])                       # by hand: no departure record says why
    announced, sent = retr_with_status(c, 2)
    assert b"Subject: Message removed from the spool" in sent
    assert announced == len(sent), f"RETR announced {announced} octets and sent {len(sent)}"
    assert c.list() == sizes, "LIST must keep the original size"
    lines = c.env(2)                                   # four lines, not -ERR
    assert len(lines) == 4 and lines[0] in ("OK", "RD") and lines[3] == "fred@sample.demon.co.uk", lines
    c.quit()
