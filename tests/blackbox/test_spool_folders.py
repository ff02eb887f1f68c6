"""Who creates the spool folders (docs/spool.md, "Who creates the
folders"): on a fresh site no punt folder exists until the first login or
delivery makes it, so a host that was added and never sent mail logs in to
an empty maildrop; a punt folder that vanishes once the server has seen it
(an unmounted file system) makes that punt unavailable, not empty."""

import shutil

from conftest import POP_PW
from sdps_harness import message


def deliver(site, subject, punt, to="fred"):
    data = message(subject=subject, to=f"{to}@sample")
    site.deliver(f"{to}@sample.demon.co.uk", data=data, punt=punt)
    return data


def test_a_host_added_on_a_fresh_site_logs_in_to_an_empty_maildrop(site):
    # A fresh clone: nothing under var/ but what `sdps host add` writes.
    shutil.rmtree(site.root / "var" / "spool")
    site.add_host("newhost", pop3=POP_PW)
    server = site.start()
    assert "does not exist yet" in server.log()
    c = server.connect()
    c.ok("USER newhost")
    assert c.ok(f"PASS {POP_PW}").startswith("+OK"), server.log()
    assert c.stat() == (0, 0)
    assert c.list() == {}
    c.quit()
    c = server.connect()
    c.login("fred+newhost", POP_PW)              # a user login too
    assert c.stat() == (0, 0)
    c.quit()
    for punt in site.punts:                      # made by the first login, as start-up said
        assert site.punt_dir(punt).is_dir()
    # Mail that comes later is seen by the next session.
    site.deliver("fred@newhost.demon.co.uk", data=message(subject="first", to="fred@newhost"))
    c = server.connect()
    c.login("newhost", POP_PW)
    assert c.stat()[0] == 1
    c.quit()


def test_a_punt_folder_that_vanishes_after_start_up_is_unavailable_not_empty(sample):
    deliver(sample, "on finchley", "finchley")
    deliver(sample, "on docklands", "docklands")
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 2
    c.quit()
    # Both punts unmounted: their mount point (var/spool) stays.
    aside = sample.root / "unmounted"
    aside.mkdir()
    for punt in sample.punts:
        sample.punt_dir(punt).rename(aside / punt)
    c = server.connect()
    c.ok("USER sample")
    reply = c.cmd(f"PASS {POP_PW}")
    assert reply.startswith("-ERR [SYS/TEMP]"), f"a login over two vanished punts got {reply!r}"
    c.quit()
    assert "punt folder is missing" in server.log()
    for punt in sample.punts:
        assert not sample.punt_dir(punt).exists(), f"the vanished punt folder {punt} was created again"
    # One comes back: its mail is there, the other punt is left out.
    (aside / "finchley").rename(sample.punt_dir("finchley"))
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 1
    c.quit()
    assert not sample.punt_dir("docklands").exists()
