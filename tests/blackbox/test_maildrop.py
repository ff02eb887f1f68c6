"""The maildrop over the punts (DESIGN.md section 3, "Sessions and locks";
issue 3 lock, merge, spool): locks and their release, the login snapshot,
the dummy message, UPDATE, merge order, a punt that is down, persistence
across restarts, UIDL uniqueness."""

import random
import time

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, in_flight_bound, lines_longer_than, message, returned, wait_until


def deliver(site, subject, to="fred", punt=None, sender="alice@example.com", body=None):
    data = message(subject=subject, body=body or f"body of {subject}\n", to=f"{to}@sample")
    site.deliver(f"{to}@sample.demon.co.uk", data=data, punt=punt, sender=sender)
    return data


def subjects(c):
    """The Subject of every message in the maildrop, in message-number order."""
    out = []
    for n in sorted(c.list()):
        head = c.top(n, 0).decode("latin-1")
        out.append(next(line[9:] for line in head.split("\r\n") if line.startswith("Subject: ")))
    return out


# ---------------------------------------------------------------- locks

def in_use(reply):
    return reply.startswith("-ERR") and "[IN-USE]" in reply


LOCK_CASES = [
    ("sample", "sample", False),                       # host / host
    ("sample", "fred+sample", False),                  # host / user
    ("fred+sample", "sample", False),                  # user / host
    ("fred+sample", "fred@sample.demon.co.uk", False),  # user / same user
    ("fred+sample", "jim+sample", True),               # user / other user: allowed
]


@pytest.mark.parametrize("first,second,allowed", LOCK_CASES)
def test_lock_combinations(server, first, second, allowed):
    a = server.connect()
    a.login(first, POP_PW)
    b = server.connect()
    b.ok(f"USER {second}")
    reply = b.cmd("PASS " + POP_PW)
    if allowed:
        assert reply.startswith("+OK"), f"{second} refused while {first} is logged in: {reply}"
        b.quit()
    else:
        assert in_use(reply), f"{second} while {first} is logged in: expected -ERR [IN-USE], got {reply!r}"
        b.ok("USER " + second)             # the connection stays open
    a.quit()


def test_lock_of_one_host_does_not_affect_another(sample):
    sample.add_host("other", pop3="other pw")
    server = sample.start()
    a = server.connect()
    a.login("sample", POP_PW)
    b = server.connect()
    b.login("other", "other pw")
    b.quit()
    a.quit()


def test_lock_released_after_quit(server):
    a = server.connect()
    a.login("sample", POP_PW)
    b = server.connect()
    b.ok("USER sample")
    assert in_use(b.cmd("PASS " + POP_PW))
    a.quit()
    b.ok("USER sample")                    # retry on the same connection
    b.ok("PASS " + POP_PW)
    b.quit()


def test_lock_is_free_the_moment_quit_says_ok(server, sample):
    # The locks go before the QUIT reply, so a client that logs in again as
    # soon as it reads +OK is never told [IN-USE]; repeated to catch a race.
    for round in range(10):
        deliver(sample, f"round {round}")
        a = server.connect()
        a.login("sample", POP_PW)
        a.ok("DELE 1")
        b = server.connect()
        b.ok("USER sample")
        a.quit()
        reply = b.cmd("PASS " + POP_PW)
        assert reply.startswith("+OK"), f"round {round}: {reply}"
        b.quit()


@pytest.mark.parametrize("how", ["reset", "close"])
def test_lock_released_after_a_dropped_connection(server, how):
    a = server.connect()
    a.login("sample", POP_PW)
    a.ok("NOOP")
    a.abort() if how == "reset" else a.close()

    def retry():
        b = server.connect()
        b.ok("USER sample")
        ok = b.cmd("PASS " + POP_PW).startswith("+OK")
        b.close()
        return ok
    wait_until(retry, 5 * SLOW, 0.1, "the lock of a dropped connection to be released")


def test_lock_released_after_a_failed_login_attempt_elsewhere(server):
    # A refused (IN-USE) attempt must not leave a lock behind when the holder quits.
    a = server.connect()
    a.login("sample", POP_PW)
    for _ in range(3):
        b = server.connect()
        b.ok("USER fred+sample")
        assert in_use(b.cmd("PASS " + POP_PW))
        b.close()
    a.quit()
    c = server.connect()
    c.login("fred+sample", POP_PW)
    c.quit()


def test_lock_holds_across_processes_and_dies_with_its_holder(sample):
    one = sample.start()
    two = sample.start()
    a = one.connect()
    a.login("sample", POP_PW)
    b = two.connect()
    b.ok("USER fred+sample")
    assert in_use(b.cmd("PASS " + POP_PW)), "the lock did not hold across two sdpsd processes"
    one.kill()                              # SIGKILL: no chance to unlock politely

    def retry():
        c = two.connect()
        c.ok("USER sample")
        ok = c.cmd("PASS " + POP_PW).startswith("+OK")
        c.close()
        return ok
    wait_until(retry, 5 * SLOW, 0.2, "the lock of a killed process to be released")


# ---------------------------------------------------------------- snapshot

def test_mail_delivered_during_a_session_appears_in_the_next(server, sample):
    deliver(sample, "before 1")
    deliver(sample, "before 2")
    a = server.connect()
    a.login("sample", POP_PW)
    count, octets = a.stat()
    uids = a.uidl()
    deliver(sample, "during", punt="finchley")
    deliver(sample, "during", punt="docklands")
    assert a.stat() == (count, octets)
    assert a.uidl() == uids
    a.err("RETR 3")
    a.ok("DELE 1")
    a.ok("DELE 2")
    a.quit()
    b = server.connect()
    b.login("sample", POP_PW)
    assert subjects(b) == ["during", "during"]
    b.quit()


# ---------------------------------------------------------------- the dummy message

def test_message_removed_by_smtp_mid_session_gives_a_dummy(server, sample):
    first = deliver(sample, "first")
    gone = deliver(sample, "gone")
    deliver(sample, "third")
    c = server.connect()
    c.login("sample", POP_PW)
    sizes, uids = c.list(), c.uidl()
    sample.remove_message(uids[2])           # as SMTP would after delivering it
    dummy = c.retr(2)
    assert dummy != returned(gone)
    headers = dummy.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nmessage-id: <" in b"\r\n" + headers, f"the dummy has no Message-ID: {dummy[:500]!r}"
    original_id = [line for line in gone.split(b"\r\n") if line.lower().startswith(b"message-id:")][0]
    assert original_id not in dummy, "the dummy's Message-ID must be synthesised, not the original"
    assert c.top(2, 0).lower().find(b"message-id: <") >= 0
    assert c.list() == sizes, "LIST changed after the message left the spool"
    assert c.uidl() == uids, "UIDL changed after the message left the spool"
    assert c.retr(1) == returned(first)      # the others are untouched
    c.ok("DELE 2")                            # harmless
    c.quit()
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["first", "third"]
    c.quit()


def test_env_of_a_message_smtp_removed_still_answers_multi_line(server, sample):
    # fetchmail does not check *ENV for -ERR: it would wait for a "." line.
    deliver(sample, "gone", to="fred")
    c = server.connect()
    c.login("sample", POP_PW)
    sample.remove_message(c.uidl()[1])
    lines = c.env(1)
    assert len(lines) == 4, lines
    assert lines[0] == "OK"
    assert lines[2] == ""                       # the sender is not known any more
    assert lines[3] == "fred@sample.demon.co.uk"  # the recipient, from the file name
    c.quit()


def test_dummy_message_ids_differ_between_messages(server, sample):
    deliver(sample, "one")
    deliver(sample, "two")
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    for uid in uids.values():
        sample.remove_message(uid)

    def message_id(data):
        return [line for line in data.split(b"\r\n") if line.lower().startswith(b"message-id:")][0]
    assert message_id(c.retr(1)) != message_id(c.retr(2))
    c.ok("DELE 1")
    c.quit()


# ---------------------------------------------------------------- UPDATE

def test_quit_removes_deleted_messages(server, sample):
    for s in ("one", "two", "three"):
        deliver(sample, s)
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    c.ok("DELE 1")
    c.ok("DELE 3")
    c.quit()
    for n in (1, 3):
        assert sample.message_files(uids[n]) == [], "a deleted message is still in the spool after QUIT"
        assert uids[n] not in sample.spool_list("sample")
    c = server.connect()
    c.login("sample", POP_PW)
    assert list(c.uidl().values()) == [uids[2]]
    assert subjects(c) == ["two"]
    c.quit()


@pytest.mark.parametrize("how", ["reset", "close"])
def test_dropped_connection_removes_nothing(server, sample, how):
    for s in ("one", "two"):
        deliver(sample, s)
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    c.ok("DELE 1")
    c.ok("DELE 2")
    c.abort() if how == "reset" else c.close()

    def login():
        d = server.connect()
        d.ok("USER sample")
        if d.cmd("PASS " + POP_PW).startswith("+OK"):
            return d
        d.close()
        return None
    d = wait_until(login, 5 * SLOW, 0.1, "a new session")
    assert d.uidl() == uids
    d.quit()


def test_quit_reports_err_when_a_deleted_message_cannot_be_removed(server, sample):
    deliver(sample, "stuck", punt="finchley")
    deliver(sample, "fine", punt="docklands")
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    stuck = sample.message_files(uids[1])
    assert stuck
    if not sample.make_immutable(stuck[0].parent):
        pytest.skip("chattr +i is not available here (needed to make an unlink fail as root)")
    try:
        c.ok("DELE 1")
        c.ok("DELE 2")
        c.send("QUIT")
        reply = c.reply()
        assert reply.startswith("-ERR"), f"QUIT when a message could not be removed: {reply!r}"
    finally:
        sample.make_mutable()
    c = server.connect()
    wait_until(lambda: c.cmd("USER sample") and c.cmd("PASS " + POP_PW).startswith("+OK"), 5 * SLOW, 0.2,
               "a new session")
    assert list(c.uidl().values()) == [uids[1]], "the removable message should be gone, the stuck one kept"
    c.quit()


# ---------------------------------------------------------------- merge

def test_merge_numbers_oldest_first_across_both_punts(server, sample):
    order = [("a", "docklands"), ("b", "finchley"), ("c", "docklands"), ("d", "docklands"), ("e", "finchley")]
    for subject, punt in order:
        deliver(sample, subject, punt=punt)
        time.sleep(0.01)
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["a", "b", "c", "d", "e"]
    c.quit()


def write_spool_file(folder, uidl: str, user: str, stored: bytes, sender: str = "alice@example.com") -> int:
    """A message file as docs/spool.md describes it (what an MTA writing
    the spool itself makes); returns the size LIST must report."""
    arrival = int(uidl[:17])
    secs, micros = divmod(arrival, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"
    header = (f"SDPS-Spool: 1\r\nEnvelope-From: <{sender}>\r\nEnvelope-To: <{user}@sample.demon.co.uk>\r\n"
              f"Arrival: {stamp}\r\n\r\n").encode()
    size = len(returned(stored, sender))
    path = folder / f"{uidl},s={size},u={user}"
    path.write_bytes(header + stored)
    path.chmod(0o600)
    return size


def test_a_big_maildrop_lists_in_order_with_its_sizes(server, sample):
    # 5,000 messages over both punts, written in an order unlike their
    # arrival, some arriving in the same microsecond on both punts (those
    # go by UIDL), plus two delivered by `sdps deliver` (the newest).
    rng = random.Random(5000)
    start = int(time.time() * 1_000_000) - 10_000_000
    folders = {punt: sample.punt_dir(punt) / "sample" for punt in ("finchley", "docklands")}
    for folder in folders.values():
        (folder / "tmp").mkdir(parents=True, mode=0o700, exist_ok=True)
    messages = []   # (uidl, user, size, stored)
    for i in rng.sample(range(5000), 5000):
        arrival = start + (i // 2 if i % 10 < 4 else i) * 7
        uidl = f"{arrival:017d}.{rng.getrandbits(64):016x}"
        user = "jim" if i % 3 == 0 else "fred"
        stored = message(subject=f"m{i}", body="x" * rng.randrange(0, 3000) + "\n", to=f"{user}@sample")
        stored = stored.replace(b"Message-ID: <", b"Message-ID: <%d." % i)
        size = write_spool_file(folders["finchley" if i % 2 else "docklands"], uidl, user, stored)
        messages.append((uidl, user, size, stored))
    for punt in ("docklands", "finchley"):
        before = {p.name for p in folders[punt].iterdir()}
        data = deliver(sample, f"delivered on {punt}", punt=punt)
        (name,) = {p.name for p in folders[punt].iterdir()} - before
        messages.append((name.split(",")[0], "fred", len(returned(data)), data))
    messages.sort(key=lambda m: m[0])   # UIDL order is arrival order

    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat() == (5002, sum(m[2] for m in messages))
    assert c.uidl() == {n: m[0] for n, m in enumerate(messages, 1)}
    assert c.list() == {n: m[2] for n, m in enumerate(messages, 1)}
    for n in (1, 2, 2500, 4999, 5001, 5002):
        assert c.retr(n) == returned(messages[n - 1][3]), n
    c.quit()

    jims = [m for m in messages if m[1] == "jim"]
    c = server.connect()
    c.login("jim+sample", POP_PW)
    assert c.uidl() == {n: m[0] for n, m in enumerate(jims, 1)}
    assert c.list() == {n: m[2] for n, m in enumerate(jims, 1)}
    c.quit()


def test_delivery_without_punt_uses_both_punts_at_random(sample):
    for i in range(24):
        deliver(sample, f"m{i}")
    listing = sample.spool_list("sample")
    assert "finchley" in listing and "docklands" in listing, "24 deliveries all went to one punt"


def test_a_punt_whose_spool_is_unreadable_is_left_out(server, sample):
    deliver(sample, "finchley 1", punt="finchley")
    deliver(sample, "docklands 1", punt="docklands")
    deliver(sample, "finchley 2", punt="finchley")
    docklands = sample.punt_dir("docklands")
    moved = docklands.with_name("docklands.away")
    docklands.rename(moved)
    docklands.write_text("not a folder\n")    # unreadable as a spool, even for root
    try:
        c = server.connect()
        c.login("sample", POP_PW)
        assert subjects(c) == ["finchley 1", "finchley 2"]
        assert c.retr(1).startswith(b"Return-Path: ")
        c.ok("DELE 2")
        c.quit()
        # Delivery falls back to the punt that works.
        for i in range(4):
            deliver(sample, f"fallback {i}")
    finally:
        docklands.unlink()
        moved.rename(docklands)
    assert server.alive()
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["finchley 1", "docklands 1"] + [f"fallback {i}" for i in range(4)]
    c.quit()


@pytest.mark.site_options(punts={"finchley": "../var/spool/finchley", "docklands": "../var/missing/nowhere"})
def test_a_punt_whose_folder_is_missing_is_left_out(server, sample):
    deliver(sample, "kept", punt="finchley")
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["kept"]
    c.quit()


# ---------------------------------------------------------------- user logins

def test_user_login_sees_and_deletes_only_its_own_mail(server, sample):
    deliver(sample, "fred 1", to="fred")
    deliver(sample, "jim 1", to="jim")
    deliver(sample, "fred 2", to="fred")
    deliver(sample, "postmaster 1", to="postmaster")
    c = server.connect()
    c.login("fred+sample", POP_PW)
    assert subjects(c) == ["fred 1", "fred 2"]
    c.ok("DELE 1")
    c.ok("DELE 2")
    c.err("RETR 3")
    c.quit()
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["jim 1", "postmaster 1"]
    c.quit()


# ---------------------------------------------------------------- persistence

def test_read_flag_and_uidls_survive_a_restart(sample):
    for s in ("one", "two", "three"):
        deliver(sample, s)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uids = c.uidl()
    c.retr(2)
    c.quit()
    c = server.connect()
    c.login("sample", POP_PW)
    c.retr(3)
    c.abort()                                # the read flag is set at RETR, not at QUIT
    server.stop()
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.uidl() == uids
    assert [c.env(n)[0][:2].upper() for n in (1, 2, 3)] == ["OK", "RD", "RD"]
    c.quit()


def test_uidls_unique_for_identical_messages_on_both_punts(sample):
    data = b"From: a@example.com\r\nSubject: same\r\nMessage-ID: <same@example.com>\r\n\r\nidentical\r\n"
    for punt in ("finchley", "docklands", "finchley", "docklands", "finchley", "docklands"):
        sample.deliver("fred@sample.demon.co.uk", data=data, punt=punt)
    sample.deliver("fred@sample.demon.co.uk", "jim@sample.demon.co.uk", data=data)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    uids = list(c.uidl().values())
    assert len(uids) == 8 and len(set(uids)) == 8, uids
    for n in range(1, 9):
        c.ok(f"DELE {n}")
    c.quit()
    # Never reused: the same message delivered again gets new UIDLs.
    for punt in ("finchley", "docklands"):
        sample.deliver("fred@sample.demon.co.uk", data=data, punt=punt)
    c = server.connect()
    c.login("sample", POP_PW)
    again = list(c.uidl().values())
    assert len(again) == 2 and not set(again) & set(uids), (uids, again)
    c.quit()


def test_spool_file_names_begin_with_the_uidl(server, sample):
    deliver(sample, "one", punt="finchley")
    deliver(sample, "two", punt="docklands")
    c = server.connect()
    c.login("sample", POP_PW)
    for uid in c.uidl().values():
        assert sample.message_files(uid), f"no spool file name begins with UIDL {uid}"
    c.quit()


def test_retr_sets_the_read_flag_without_renaming_the_message(server, sample):
    # SMTP delivery removes a message by the name it listed: marking it read
    # must not move it from under a concurrent SMTP delivery.
    deliver(sample, "one")
    c = server.connect()
    c.login("sample", POP_PW)
    uid = c.uidl()[1]
    before = sample.message_files(uid)
    assert c.env(1)[0][:2].upper() == "OK"
    c.retr(1)
    assert c.env(1)[0][:2].upper() == "RD"
    assert sample.message_files(uid) == before, "RETR renamed the spool file"
    for path in before:
        assert path.exists()
    c.quit()


def test_client_dropping_mid_retr_keeps_the_message_and_releases_the_lock(server, sample):
    # Longer than all that can be in flight: the client certainly drops
    # while the server is still sending, however fast the build.
    big = deliver(sample, "big", body=lines_longer_than(in_flight_bound(8192)))
    c = server.connect(rcvbuf=8192)
    c.login("sample", POP_PW)
    c.send("RETR 1")
    assert c.reply().startswith("+OK")
    c.line_bytes()                       # read a little, then vanish
    c.abort()

    def login():
        d = server.connect()
        d.ok("USER sample")
        if d.cmd("PASS " + POP_PW).startswith("+OK"):
            return d
        d.close()
        return None
    d = wait_until(login, 5 * SLOW, 0.1, "the lock of a client that dropped mid-RETR")
    assert d.retr(1) == returned(big)
    d.quit()
    assert server.alive()


def test_a_lock_refused_on_one_punt_is_released_on_the_others(server, sample):
    # Locks are taken punt by punt (docklands, then finchley). Make fred's
    # lock exist on finchley only (docklands down at his login), so that a
    # host login gets docklands and is refused on finchley: it must give
    # docklands back, or jim (no conflict with fred) is locked out.
    deliver(sample, "for fred", to="fred", punt="finchley")
    docklands = sample.punt_dir("docklands")
    docklands.mkdir(exist_ok=True)
    moved = docklands.with_name("docklands.away")
    docklands.rename(moved)
    docklands.write_text("down\n")
    try:
        fred = server.connect()
        fred.login("fred+sample", POP_PW)
    finally:
        docklands.unlink()
        moved.rename(docklands)
    host = server.connect()
    host.ok("USER sample")
    assert in_use(host.cmd("PASS " + POP_PW))
    jim = server.connect()                   # host's connection is still open
    jim.ok("USER jim+sample")
    reply = jim.cmd("PASS " + POP_PW)
    assert reply.startswith("+OK"), f"a refused host login kept a lock on another punt: {reply!r}"
    jim.quit()
    fred.quit()
    host.ok("USER sample")
    host.ok("PASS " + POP_PW)
    host.quit()


def test_a_punt_going_down_mid_session_fails_only_its_messages(server, sample):
    deliver(sample, "on finchley", punt="finchley")
    on_docklands = deliver(sample, "on docklands", punt="docklands")
    c = server.connect()
    c.login("sample", POP_PW)
    docklands = sample.punt_dir("docklands")
    moved = docklands.with_name("docklands.away")
    docklands.rename(moved)
    docklands.write_text("down\n")
    try:
        reply = c.cmd("RETR 2")
        assert reply.startswith("-ERR"), f"RETR from a punt that is down: {reply!r}"
        assert c.retr(1).startswith(b"Return-Path: ")      # the other punt still serves
        c.ok("NOOP")
        c.ok("DELE 1")
        c.ok("DELE 2")
        reply = c.cmd("QUIT")
        assert reply.startswith("-ERR"), f"QUIT could not remove message 2, yet answered {reply!r}"
    finally:
        docklands.unlink()
        moved.rename(docklands)
    c = server.connect()
    c.login("sample", POP_PW)
    assert subjects(c) == ["on docklands"]
    assert c.retr(1) == returned(on_docklands)
    c.quit()
