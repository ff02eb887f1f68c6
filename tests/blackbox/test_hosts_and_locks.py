"""The hosts file's mode, owner and folder, equal-time refusals after a cost change, locks on
disk (no file per user, the user's byte of locks/host, two sdpsd on one
spool), and a full disk that stops no login (docs/operations.md,
docs/spool.md)."""

import fcntl
import hashlib
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from conftest import POP_PW
from sdps_harness import EX_CONFIG, EX_TEMPFAIL, SLOW, binary, message, returned


def check(site):
    return subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                          text=True, timeout=60 * SLOW)


def hosts_file(site) -> Path:
    return site.root / "var" / "hosts"


# ---------------------------------------------------------------- the hosts file's mode

def test_sdps_writes_the_hosts_file_0600(sample):
    assert hosts_file(sample).stat().st_mode & 0o7777 == 0o600


@pytest.mark.parametrize("mode,why", [(0o666, "writable by others"), (0o660, "writable by its group"),
                                      (0o644, "readable by others")])
def test_an_insecure_hosts_file_is_refused_by_check_sdpsd_and_sdps(sample, mode, why):
    hosts_file(sample).chmod(mode)
    result = check(sample)
    assert result.returncode == EX_CONFIG, result
    assert why in result.stderr
    with pytest.raises(AssertionError, match="exited with 78"):
        sample.start()
    listing = sample.sdps("host", "list", expect=None)
    assert listing.returncode != 0 and why in listing.stderr.decode()
    passwd = sample.sdps("host", "passwd", "sample", "--pop3", input="new\n", expect=None)
    assert passwd.returncode != 0
    assert hosts_file(sample).stat().st_mode & 0o7777 == mode   # not rewritten


@pytest.mark.parametrize("mode,fix", [(0o777, "chmod go-w"), (0o757, "chmod o-w"), (0o775, "chmod g-w")])
def test_a_hosts_file_in_a_folder_others_can_write_is_refused_naming_the_chmod(sample, mode, fix):
    folder = hosts_file(sample).parent
    folder.chmod(mode)
    try:
        result = check(sample)
        assert result.returncode == EX_CONFIG, result
        assert f"could replace the file by rename and read any host's mail; run  {fix} {folder}" in result.stderr
        with pytest.raises(AssertionError, match="exited with 78") as refused:
            sample.start()
        assert f"{fix} {folder}" in str(refused.value)
        listing = sample.sdps("host", "list", expect=None)
        assert listing.returncode != 0 and f"{fix} {folder}" in listing.stderr.decode()
        # The sticky bit: no one may rename over a file not theirs.
        folder.chmod(mode | 0o1000)
        assert check(sample).returncode == 0
    finally:
        folder.chmod(0o755)
    sample.start().session("sample", POP_PW).quit()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (giving the file to another user)")
def test_a_hosts_file_owned_by_another_user_is_refused_naming_the_chown(sample):
    path = hosts_file(sample)
    os.chown(path, 65534, 0)
    result = check(sample)
    assert result.returncode == EX_CONFIG, result
    assert f"{path} is owned by " in result.stderr and f"run  chown root: {path}" in result.stderr, result.stderr
    os.chown(path, 0, 0)
    assert check(sample).returncode == 0


def test_a_0640_hosts_file_is_accepted_and_kept(sample):
    hosts_file(sample).chmod(0o640)
    assert check(sample).returncode == 0
    sample.set_password("sample", "--pop3", "other")
    assert hosts_file(sample).stat().st_mode & 0o7777 == 0o640


def test_an_unreadable_hosts_file_fails_check_and_logins_answer_sys_temp(sample):
    server = sample.start()
    path = hosts_file(sample)
    saved = path.read_bytes()
    path.unlink()
    path.mkdir()                      # unreadable as a file, even for root
    try:
        result = check(sample)
        assert result.returncode == EX_CONFIG and "not a file" in result.stderr, result
        c = server.connect()
        c.ok("USER sample")
        assert c.err("PASS " + POP_PW).startswith("-ERR [SYS/TEMP]")
        c.close()
    finally:
        path.rmdir()
        path.write_bytes(saved)
        path.chmod(0o600)
    server.session("sample", POP_PW).quit()
    # An insecure mode at run time fails closed the same way.
    path.chmod(0o666)
    c = server.connect()
    c.ok("USER sample")
    assert c.err("PASS " + POP_PW).startswith("-ERR [SYS/TEMP]")
    path.chmod(0o600)
    c.ok("USER sample")
    c.ok("PASS " + POP_PW)
    c.quit()


# ---------------------------------------------------------------- equal-time refusals

@pytest.mark.site_options(top={"password_cost": "interactive"}, fail_delay="0s")
def test_unknown_hosts_take_as_long_as_wrong_passwords_after_a_cost_change(site):
    site.add_host("sample", pop3=POP_PW)              # an interactive-cost hash
    site.write_config(top={"password_cost": "min"}, fail_delay="0s")
    server = site.start()
    c = server.connect()

    def refusal(user):
        c.ok(f"USER {user}")
        started = time.monotonic()
        c.err("PASS wrong")
        return time.monotonic() - started

    known, unknown = [], []
    for _ in range(3):
        known.append(refusal("sample"))
        unknown.append(refusal("nosuchhost"))
    k, u = statistics.median(known), statistics.median(unknown)
    assert abs(k - u) < 0.35 * max(k, u), f"wrong password {k:.3f}s, unknown host {u:.3f}s"
    c.close()


# ---------------------------------------------------------------- locks on disk

def user_lock_byte(encoded_user: str) -> int:
    """The byte of locks/host a user login write-locks (docs/spool.md, Locks)."""
    digest = hashlib.blake2b(encoded_user.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") & (2**62 - 1)


def in_use(server, user):
    c = server.connect()
    c.ok(f"USER {user}")
    reply = c.cmd(f"PASS {POP_PW}")
    if reply.startswith("+OK"):
        c.quit()                                         # its locks go before the +OK
        return False
    c.close()
    assert reply.startswith("-ERR [IN-USE]"), f"{user}: {reply!r}"
    return True


def test_user_logins_leave_no_lock_files(sample):
    sample.deliver("fred@sample.demon.co.uk", data=message(), punt="finchley")
    server = sample.start()
    for i in range(30):
        server.session(f"junk{i}+sample", POP_PW).quit()
    held = server.session("fred+sample", POP_PW)
    for i in range(5):                                   # dropped, not quit
        server.session(f"gone{i}+sample", POP_PW).abort()
    time.sleep(0.5 * SLOW)
    for punt in sample.punts:
        locks = sample.punt_dir(punt) / "sample" / "locks"
        assert sorted(p.name for p in locks.iterdir()) == ["host"]
    held.quit()
    for punt in sample.punts:
        assert sorted(p.name for p in (sample.punt_dir(punt) / "sample" / "locks").iterdir()) == ["host"]


def test_a_users_lock_is_the_documented_byte_of_the_hosts_lock_file(sample):
    server = sample.start()
    server.session("fred+sample", POP_PW).quit()         # makes locks/host on every punt
    host_file = sample.punt_dir("docklands") / "sample" / "locks" / "host"
    fd = os.open(host_file, os.O_RDWR)
    try:
        # A record lock of this process on fred's byte, as another sdpsd's
        # session of fred would hold it.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, user_lock_byte("fred"))
        assert in_use(server, "fred+sample")
        assert in_use(server, "FRED@sample.demon.co.uk")
        assert not in_use(server, "jim+sample")
        with server.session("jim+sample", POP_PW) as jim:
            with pytest.raises(OSError):                 # jim's byte is held by sdpsd
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, user_lock_byte("jim"))
            jim.quit()
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, user_lock_byte("fred"))
        assert not in_use(server, "fred+sample")
    finally:
        os.close(fd)


def test_two_sdpsd_on_one_spool_exclude_each_other(sample):
    a, b = sample.start(), sample.start()
    fred = a.session("fred+sample", POP_PW)
    assert in_use(b, "fred+sample")
    assert in_use(b, "Fred@sample.demon.co.uk")
    assert in_use(b, "sample")
    jim = b.session("jim+sample", POP_PW)                # other users: no conflict
    assert in_use(a, "jim+sample")
    assert in_use(a, "sample")
    fred.quit()
    assert in_use(b, "sample")                           # jim still in
    fred = b.session("fred+sample", POP_PW)
    assert in_use(a, "fred+sample")
    fred.quit()
    jim.quit()
    host = b.session("sample", POP_PW)
    assert in_use(a, "fred+sample")
    assert in_use(a, "sample")
    host.quit()
    a.session("fred+sample", POP_PW).quit()
    # A killed sdpsd's locks die with it.
    fred = a.session("fred+sample", POP_PW)
    a.kill()
    assert not in_use(b, "fred+sample")
    fred.close()


def test_a_host_with_no_folder_logs_in_to_an_empty_maildrop(sample):
    server = sample.start()
    c = server.session("sample", POP_PW)
    assert c.stat() == (0, 0)
    c.quit()
    server.session("fred+sample", POP_PW).quit()
    # Its folder is made at the first login, so its locks work as any host's.
    for punt in sample.punts:
        assert (sample.punt_dir(punt) / "sample").is_dir()


# ---------------------------------------------------------------- a full disk

def _mount(kind, target: Path, scratch: Path):
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=200,mode=0700", "sdps-test", str(target)]
    else:
        image = scratch / "punt.img"
        with open(image, "wb") as f:
            f.truncate(4 * 1024 * 1024)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "128", str(image)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {made.stderr.decode()[:200]}")
        cmd = ["mount", "-o", "loop", str(image), str(target)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {kind} here: {done.stderr.decode().strip()[:200]}")


def _fill(folder: Path):
    """Takes every free block and inode of the file system under folder."""
    junk = folder / "junk"
    junk.mkdir()
    fd = os.open(junk / "blocks", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    for i in range(100000):
        try:
            (junk / f"i{i}").touch()
        except OSError:
            break


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_a_full_disk_stops_no_login_and_delivery_is_all_or_nothing(sample, kind, tmp_path):
    punt = sample.punt_dir("finchley")
    shutil.rmtree(punt, ignore_errors=True)
    _mount(kind, punt, tmp_path)
    try:
        sample.add_host("empty", pop3="pw")
        for subject in ("before", "before 2"):
            sample.deliver("fred@sample.demon.co.uk", data=message(subject=subject), punt="finchley")
        _fill(punt)
        # Delivery fails whole: exit 75, nothing visible, tmp/ empty.
        result = sample.deliver("fred@sample.demon.co.uk", data=message(body="y" * 300000), punt="finchley",
                                expect=None)
        assert result.returncode == EX_TEMPFAIL, result
        assert sample.spool_list("sample").count("\n") == 2
        assert list((punt / "sample" / "tmp").iterdir()) == []
        server = sample.start()
        # A first login of a host whose folder has no locks/ yet.
        assert not (punt / "sample" / "locks").exists()
        c = server.session("sample", POP_PW)
        assert c.stat()[0] == 2
        for n in (1, 2):
            c.retr(n)
            c.ok(f"DELE {n}")
        c.quit()
        assert sample.spool_list("sample") == ""
        # Downloading and deleting freed space: the next delivery is stored
        # (two messages' worth: on tmpfs a link takes an inode too).
        after = message(subject="after")
        sample.deliver("fred@sample.demon.co.uk", data=after, punt="finchley")
        # A host with no folder: an empty maildrop (its folder is made
        # when there is room; without it, nothing is locked or created).
        c = server.session("empty", "pw")
        assert c.stat() == (0, 0)
        c.quit()
        c = server.session("fred+sample", POP_PW)
        assert c.stat()[0] == 1
        assert c.retr(1) == returned(after)
        c.quit()
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(punt)], capture_output=True)
