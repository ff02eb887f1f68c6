"""USER and PASS (DESIGN.md section 3; issue 3, auth): every USER form, the
two passwords and where each is accepted, failures that look alike, the
failure delay, APOP, reloading the host database, secrets kept out of logs."""

import base64
import re
import select
import signal
import time

import pytest

from conftest import DIALUP_IP, DIALUP_PW, OTHER_IP, POP_PW
from sdps_harness import SLOW, message, wait_until


def deliver_to(site, *locals_, host="sample"):
    for i, local in enumerate(locals_):
        site.deliver(f"{local}@{host}.demon.co.uk", data=message(subject=f"{local} {i}", to=f"{local}@{host}"))


# ---------------------------------------------------------------- USER forms

HOST_FORMS = ["sample", "sample.demon.co.uk", "SAMPLE", "Sample.Demon.Co.Uk"]
USER_FORMS = ["fred+sample", "fred@sample", "fred+sample.demon.co.uk", "fred@sample.demon.co.uk",
              "fred+SAMPLE", "fred@Sample.DEMON.co.uk"]


def test_user_host_forms_see_all_mail_of_the_host(sample):
    deliver_to(sample, "fred", "fred", "jim")
    server = sample.start()
    for user in HOST_FORMS:
        c = server.connect()
        c.chat(f"""
            C: USER {user}
            S: +OK
            C: PASS {POP_PW}
            S: +OK
        """)
        assert c.stat()[0] == 3, user
        c.quit()


def test_user_forms_see_only_that_users_mail(sample):
    deliver_to(sample, "fred", "jim", "fred")
    server = sample.start()
    for user in USER_FORMS:
        c = server.connect()
        c.login(user, POP_PW)
        assert c.stat()[0] == 2, user
        for n in (1, 2):
            assert c.env(n)[3] == "fred@sample.demon.co.uk"
            assert b"Subject: fred " in c.retr(n)
        c.quit()


def test_user_login_on_a_user_with_no_mail_is_an_empty_maildrop(sample):
    deliver_to(sample, "fred")
    c = sample.start().connect()
    c.login("nobody+sample", POP_PW)
    assert c.stat() == (0, 0)
    assert c.multi("LIST") == []
    c.quit()


# ---------------------------------------------------------------- PASS

def test_pass_reply_gives_count_and_size(sample):
    deliver_to(sample, "fred", "jim")
    c = sample.start().connect()
    c.ok("USER sample")
    reply = c.ok("PASS " + POP_PW)
    count, octets = c.stat()
    numbers = re.findall(r"\d+", reply)
    assert str(count) in numbers and str(octets) in numbers, reply
    # Net::POP3 reads the count from "(\d+)\s+message"
    assert re.search(rf"\b{count}\s+message", reply), reply


def test_password_is_the_rest_of_the_line_spaces_included(sample):
    spaced = "a  b   c d"
    sample.add_host("spacey", pop3=spaced)
    server = sample.start()
    c = server.connect()
    c.ok("USER spacey")
    c.err("PASS a b c d")                 # spaces collapsed: wrong
    c.ok("USER spacey")
    c.err("PASS a")                       # first word only: wrong
    c.ok("USER spacey")
    c.ok("PASS " + spaced)
    c.quit()


def test_failed_pass_keeps_the_connection_and_a_retry_works(server):
    c = server.connect()
    c.chat(f"""
        C: USER sample
        S: +OK
        C: PASS wrong
        S: -ERR
        C: NOOP
        S: -ERR
        C: USER sample
        S: +OK
        C: PASS POP SECRET
        S: -ERR
        C: USER sample
        S: +OK
        C: PASS {POP_PW}
        S: +OK
        C: NOOP
        S: +OK
        C: QUIT
        S: +OK
    """)


def test_unknown_host_looks_like_a_wrong_password(server):
    def attempt(user):
        c = server.connect()
        user_reply = c.cmd(f"USER {user}")
        started = time.monotonic()
        pass_reply = c.cmd("PASS " + POP_PW + "x")
        elapsed = time.monotonic() - started
        c.close()
        return user_reply, pass_reply, elapsed

    known = attempt("sample")
    unknown = attempt("nosuchhost")
    foreign = attempt("sample.example.com")
    for user_reply, pass_reply, _ in (known, unknown):
        assert user_reply.startswith("+OK"), "USER must not reveal whether a host exists"
        assert pass_reply.startswith("-ERR")
    assert unknown[0] == known[0], "USER replies differ for a known and an unknown host"
    assert unknown[1] == known[1], "PASS replies differ for a known and an unknown host"
    # A name outside customer_domain is not a USER form at all: USER may
    # refuse it outright (that reveals nothing about our hosts), but it
    # never logs in.
    assert foreign[1].startswith("-ERR")
    if foreign[0].startswith("+OK"):
        assert foreign[1] == known[1]
    assert abs(unknown[2] - known[2]) < 0.3 * SLOW, f"timings differ: known {known[2]:.2f}s, unknown {unknown[2]:.2f}s"


def test_failed_pass_is_delayed_by_fail_delay(server):
    # The test site uses fail_delay: 200ms.
    c = server.connect()
    c.ok("USER sample")
    started = time.monotonic()
    c.err("PASS wrong")
    assert time.monotonic() - started >= 0.18


@pytest.mark.site_options(fail_delay=None)
def test_default_fail_delay_is_about_a_second_and_blocks_no_one_else(server):
    slow = server.connect()
    slow.ok("USER sample")
    started = time.monotonic()
    slow.send("PASS wrong")
    # While that failure waits, another session is served at once.
    other = server.connect()
    other.login("sample", POP_PW)
    other.ok("NOOP")
    other.quit()
    assert time.monotonic() - started < 0.9, "another session waited for a failing PASS"
    assert slow.reply().startswith("-ERR")
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed <= 1.0 + 2 * SLOW, f"failed PASS answered after {elapsed:.2f}s, expected about 1s"


@pytest.mark.site_options(fail_delay="600ms")
def test_concurrent_failed_logins_are_delayed_in_parallel(server):
    clients = [server.connect() for _ in range(5)]
    for c in clients:
        c.ok("USER sample")
    started = time.monotonic()
    for c in clients:
        c.send("PASS wrong")
    for c in clients:
        assert c.reply().startswith("-ERR")
    # Five 600 ms delays in parallel (about 0.6 s), not in series (3 s).
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < 1.2 + 0.4 * SLOW, f"five failed logins took {elapsed:.2f}s"


def test_pass_without_user_is_refused(server):
    c = server.connect()
    c.err("PASS " + POP_PW)
    c.err("NOOP")                     # still not logged in
    c.login("sample", POP_PW)


def test_user_and_pass_are_refused_in_transaction(server):
    c = server.connect()
    c.login("sample", POP_PW)
    c.err("USER sample")
    c.err("PASS " + POP_PW)
    c.err("APOP sample c4c9334bac560ecc979e58001b3e22fb")
    c.ok("NOOP")
    c.quit()


def test_apop_is_not_implemented(server):
    c = server.connect()
    c.err("APOP sample c4c9334bac560ecc979e58001b3e22fb")
    c.err("APOP")
    c.login("sample", POP_PW)          # the connection is still usable
    c.quit()


def test_quit_in_authorization_closes_without_login(server):
    c = server.connect()
    c.ok("USER sample")
    c.quit()


def test_empty_password_never_matches(sample):
    sample.add_host("nopop", dialup="only dialup", dialup_ips=[DIALUP_IP])     # no POP3 password set
    server = sample.start()
    for pw in ("", " "):
        c = server.connect(source=OTHER_IP)
        c.ok("USER nopop")
        c.err("PASS " + pw)
        c.close()
    c = server.connect(source=OTHER_IP)
    c.ok("USER nopop")
    c.err("PASS only dialup")          # dialup password from a non-dialup address
    c = server.connect(source=DIALUP_IP)
    c.ok("USER nopop")
    c.ok("PASS only dialup")
    c.quit()


# ---------------------------------------------------------------- the two passwords

def test_dialup_password_from_the_dialup_address(server):
    c = server.connect(source=DIALUP_IP)
    c.login("sample", DIALUP_PW)
    c.quit()


def test_dialup_password_from_another_address_is_refused(server):
    c = server.connect(source=OTHER_IP)
    c.ok("USER sample")
    c.err("PASS " + DIALUP_PW)
    c = server.connect()               # 127.0.0.1
    c.ok("USER sample")
    c.err("PASS " + DIALUP_PW)


@pytest.mark.parametrize("source", [DIALUP_IP, OTHER_IP, "127.0.0.1"])
def test_pop3_password_from_any_address(server, source):
    c = server.connect(source=source)
    c.login("sample", POP_PW)
    c.quit()


def test_dialup_password_works_for_user_logins_too(server):
    c = server.connect(source=DIALUP_IP)
    c.login("fred+sample", DIALUP_PW)
    c.quit()
    c = server.connect(source=OTHER_IP)
    c.ok("USER fred@sample.demon.co.uk")
    c.err("PASS " + DIALUP_PW)


def test_dialup_prefixes_and_several_addresses(sample):
    sample.add_host("pfx", dialup="pfx dial", dialup_ips=["127.0.0.0/30", "127.0.0.9"])
    server = sample.start()
    for source, ok in (("127.0.0.2", True), ("127.0.0.3", True), ("127.0.0.9", True),
                       ("127.0.0.5", False), ("127.0.0.8", False)):
        c = server.connect(source=source)
        c.ok("USER pfx")
        reply = c.cmd("PASS pfx dial")
        assert reply.startswith("+OK" if ok else "-ERR"), f"dialup password from {source}: {reply}"
        # QUIT frees the lock before its +OK; a bare close frees it only when
        # the server has seen the close, which can come after the next login.
        if ok:
            c.quit()
        else:
            c.close()


def test_dialup_password_over_ipv6(sample):
    import socket as socket_module
    try:
        with socket_module.socket(socket_module.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this machine")
    sample.add_host("six", dialup="six dial", pop3="six pop", dialup_ips=["::1"])
    server = sample.start(listen=("[::1]:0",))
    c = server.connect()
    c.login("six", "six dial")
    c.quit()
    c = server.connect()
    c.login("sample", POP_PW)          # POP3 password over IPv6
    c.quit()
    c = server.connect()
    c.ok("USER sample")
    c.err("PASS " + DIALUP_PW)         # sample's dialup address is 127.0.0.2 only


# ---------------------------------------------------------------- host database changes

def login_works(server, user, password):
    c = server.connect()
    try:
        c.ok(f"USER {user}")
        ok = c.cmd(f"PASS {password}").startswith("+OK")
        if ok:
            c.quit()
        return ok
    finally:
        c.close()


def test_sighup_reloads_the_host_database(server, sample):
    assert not login_works(server, "late", "late pw")
    sample.add_host("late", pop3="late pw")
    sample.set_password("sample", "--pop3", "new pop pw")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: login_works(server, "late", "late pw"), 5 * SLOW, 0.2, "the new host to log in")
    assert login_works(server, "sample", "new pop pw")
    assert not login_works(server, "sample", POP_PW), "the old password still works after a change"
    sample.sdps("host", "del", "late")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: not login_works(server, "late", "late pw"), 5 * SLOW, 0.2, "the deleted host to be refused")
    assert server.alive()


def test_host_database_change_is_noticed_without_sighup(server, sample):
    sample.add_host("later", pop3="later pw")
    wait_until(lambda: login_works(server, "later", "later pw"), 10 * SLOW, 0.3,
               "a host added with `sdps host add` to log in without SIGHUP")


def test_host_list_shows_hosts_and_dialup_addresses_not_hashes(sample):
    out = sample.sdps("host", "list").stdout.decode()
    assert "sample" in out
    assert DIALUP_IP in out
    assert "$argon2" not in out


def test_host_add_refuses_bad_input(sample):
    assert sample.sdps("host", "add", "bad host!", expect=None).returncode != 0
    assert sample.sdps("host", "add", "bad_host!", expect=None).returncode != 0
    assert sample.sdps("host", "add", "ok", "--dialup-ip", "300.1.2.3", expect=None).returncode != 0
    assert sample.sdps("host", "add", "ok2", "--dialup-ip", "127.0.0.1/33", expect=None).returncode != 0
    assert sample.sdps("host", "passwd", "nosuchhost", "--pop3", input="x\n", expect=None).returncode != 0


@pytest.mark.site_options(top={"log_level": "debug"})
def test_passwords_never_appear_in_logs(server, sample):
    wrong = "Wr0ng-Secret-xyzzy"
    c = server.connect()
    c.ok("USER sample")
    c.err("PASS " + wrong)
    c.login("sample", POP_PW)
    c.quit()
    c = server.connect(source=DIALUP_IP)
    c.login("sample", DIALUP_PW)
    c.quit()
    c = server.connect()
    c.send("USER sample\r\nPASS " + wrong)          # pipelined, then dropped
    c.reply()
    c.abort()
    time.sleep(0.5)
    server.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    log = server.log()
    for secret in (POP_PW, DIALUP_PW, wrong):
        assert secret not in log, f"a password ({secret!r}) appears in the server log"
    result = sample.sdps("host", "passwd", "sample", "--pop3", input=POP_PW + "\n")
    assert POP_PW.encode() not in result.stdout + result.stderr


@pytest.mark.site_options(top={"log_level": "debug"})
def test_the_debug_log_names_known_verbs_only(server):
    """What a client sends is logged only as a verb a module declared: a
    PASS written with a tab, or a PLAIN response pipelined behind a refused
    AUTH, is the start of a password."""
    response = base64.b64encode(b"\0sample\0PlainSecret7").decode()
    c = server.connect()
    c.ok("USER sample")
    assert c.err("PASS\tTabSecret1") == "-ERR unknown command"
    c.send(f"AUTH PLAIN x y\r\n{response}")         # refused, and its response pipelined behind it
    assert c.reply().startswith("-ERR syntax")
    assert c.reply() == "-ERR unknown command"
    c.err("NOOP")                                      # a known verb (not valid before login)
    c.quit()
    wait_until(lambda: "logout" in server.log(), what="the logout line")
    log = server.log()
    assert "command NOOP" in log and "command (not a known verb)" in log
    for secret in ("TabSecret1", "TABSECRET1", "TABSECRE", response, response.upper(), response[:16].upper()):
        assert secret not in log, f"{secret!r} appears in the debug log"


def test_an_auth_continuation_over_the_line_limit_is_refused_like_any_long_line(server, sample):
    c = server.connect()
    c.send("AUTH PLAIN")
    assert c.line() == "+ "
    assert c.err("A" * 600) == "-ERR line too long (the limit is 512 octets)"
    c.login("sample", POP_PW)                          # the session goes on
    c.quit()
    assert "a continuation line over 512 octets was refused" in server.log()


@pytest.mark.site_options(top={"password_cost": "moderate"})
def test_real_argon2_runs_off_the_event_loop_and_timing_does_not_tell_hosts_apart(site):
    # With a real Argon2id cost (about a second per check here) a login
    # hashes long enough to see whether other sessions wait for it.
    site.add_host("slow", pop3="slow pw")
    server = site.start()
    a = server.connect()
    a.ok("USER slow")
    started = time.monotonic()
    a.send("PASS slow pw")
    b = server.connect()
    worst = 0.0
    while True:
        t = time.monotonic()
        b.ok("USER somebody")
        worst = max(worst, time.monotonic() - t)
        ready, _, _ = select.select([a.sock], [], [], 0.05)
        if ready:
            break
        assert time.monotonic() - started < 30 * SLOW, "a login with a moderate hash took over 30s"
    assert a.reply().startswith("+OK")
    hashing = time.monotonic() - started
    assert hashing > 0.25, f"the hash took only {hashing:.2f}s: too cheap to tell anything"
    assert worst < min(0.2 * SLOW, hashing / 3), f"another session waited {worst:.2f}s while a login hashed for {hashing:.2f}s"
    a.quit()

    def failure(user):
        c = server.connect()
        c.ok(f"USER {user}")
        t = time.monotonic()
        reply = c.err("PASS not the password")
        c.close()
        return reply, time.monotonic() - t
    known_reply, known = failure("slow")
    unknown_reply, unknown = failure("nosuchhost")
    assert known_reply == unknown_reply
    assert abs(known - unknown) < 0.3 * max(known, unknown), \
        f"a wrong password took {known:.2f}s, an unknown host {unknown:.2f}s"
