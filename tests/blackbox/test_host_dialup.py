"""`sdps host dialup HOST [--clear] [--add P]... [--remove P]...`
(modules/auth/README.md): an admin changes a host's dialup addresses without
deleting the host; the passwords stay, and a running sdpsd applies the new
addresses from the next PASS."""

import threading

from conftest import DIALUP_IP, DIALUP_PW, OTHER_IP, POP_PW
from sdps_harness import EX_NOUSER

EX_USAGE, EX_DATAERR = 64, 65


def dialup(site, *args, expect=0):
    result = site.sdps("host", "dialup", *args, expect=expect)
    return result.stdout.decode(), result.stderr.decode()


def listed(site, host="sample"):
    for line in site.sdps("host", "list").stdout.decode().splitlines():
        fields = line.split()
        if fields[0] == host:
            return fields[1], fields[2]
    raise AssertionError(f"{host} is not listed")


def dialup_login(server, source):
    c = server.connect(source=source)
    c.ok("USER sample")
    ok = c.cmd(f"PASS {DIALUP_PW}").startswith("+OK")
    c.close()
    return ok


def test_show_add_remove_and_clear_dialup_addresses(sample):
    assert dialup(sample, "sample")[0] == f"{DIALUP_IP}\n"          # one address, shown bare
    out, _ = dialup(sample, "sample.demon.co.uk", "--add", "192.0.2.7", "--add=2001:db8:7::1/48")
    assert "now: 127.0.0.2,192.0.2.7,2001:db8:7::/48" in out
    assert listed(sample) == ("127.0.0.2,192.0.2.7,2001:db8:7::/48", "dialup,pop3")
    # Adding one it has is a no-op; canonical forms compare equal.
    out, _ = dialup(sample, "sample", "--add", "2001:db8:7::ffff/48", "--add", "192.0.2.7/32")
    assert "unchanged" in out
    dialup(sample, "sample", "--remove", "192.0.2.7", "--remove", DIALUP_IP)
    assert dialup(sample, "sample")[0] == "2001:db8:7::/48\n"
    # --clear comes first, whatever the order on the command line: a replacement.
    dialup(sample, "sample", "--add", "198.51.100.0/24", "--clear")
    assert dialup(sample, "sample")[0] == "198.51.100.0/24\n"
    _, err = dialup(sample, "sample", "--clear")
    assert "accepted from nowhere" in err         # the dialup password is set, no address is left
    assert dialup(sample, "sample")[0] == ""
    assert listed(sample) == ("-", "dialup,pop3")   # the passwords are kept


def test_bad_dialup_edits_change_nothing(sample):
    dialup(sample, "sample", "--add", "192.0.2.7")
    before = (sample.root / "var" / "hosts").read_bytes()
    # Removing an address the host does not have fails, and the whole edit with it.
    _, err = dialup(sample, "sample", "--add", "192.0.2.8", "--remove", "192.0.2.99", expect=EX_DATAERR)
    assert "192.0.2.99" in err
    dialup(sample, "sample", "--add", "not-an-address", expect=EX_DATAERR)
    dialup(sample, "sample", "--add", "192.0.2.1/33", expect=EX_DATAERR)
    dialup(sample, "nosuchhost", "--add", "192.0.2.1", expect=EX_NOUSER)
    dialup(sample, "nosuchhost", expect=EX_NOUSER)
    dialup(sample, "sample", "--add", expect=EX_USAGE)
    dialup(sample, "sample", "--frobnicate", expect=EX_USAGE)
    dialup(sample, "sample", "other", "--clear", expect=EX_USAGE)
    dialup(sample, expect=EX_USAGE)
    dialup(sample, "not_a host", expect=EX_DATAERR)
    assert (sample.root / "var" / "hosts").read_bytes() == before


def test_concurrent_dialup_edits_lose_nothing(sample):
    addresses = [f"192.0.2.{i}" for i in range(1, 9)]
    threads = [threading.Thread(target=dialup, args=(sample, "sample", "--add", a)) for a in addresses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(dialup(sample, "sample")[0].split()) == {DIALUP_IP, *addresses}


def test_a_running_server_uses_the_new_dialup_addresses_at_the_next_pass(server, sample):
    assert dialup_login(server, DIALUP_IP)
    assert not dialup_login(server, OTHER_IP)
    dialup(sample, "sample", "--remove", DIALUP_IP, "--add", OTHER_IP)
    assert dialup_login(server, OTHER_IP)
    assert not dialup_login(server, DIALUP_IP)
    c = server.connect(source=DIALUP_IP)          # the POP3 password still works from anywhere
    c.login("sample", POP_PW)
    c.quit()
