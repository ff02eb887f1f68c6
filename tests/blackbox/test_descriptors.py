"""Connections at scale: the open files an idle logged-in session costs,
and the open-file limit sdpsd runs under (raised to the hard limit at
start, with a warning when max_sessions cannot be met)."""

import os
import resource

import pytest

from conftest import POP_PW
from sdps_harness import wait_until

SESSIONS = 200


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_nofile(pid: int) -> tuple[str, str]:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            fields = line.split()
            return fields[3], fields[4]
    raise AssertionError("no 'Max open files' line")


@pytest.mark.site_options(top={"max_sessions": "1000", "max_sessions_per_address": "0"})
def test_idle_logged_in_sessions_hold_at_most_three_descriptors_each(sample):
    sample.add_host("other", pop3="other pw")
    sample.deliver("fred@sample.demon.co.uk", data=b"Subject: one\r\n\r\nhello\r\n")
    server = sample.start()
    # Every punt's lock files exist once a first session has come and gone.
    first = server.connect()
    first.login("other", "other pw")
    first.quit()
    with server.connect() as c:
        c.login("fred+sample", POP_PW)
        c.quit()
    before = open_files(server.pid)
    sessions = []
    try:
        # User logins of one host: each holds its socket and its own lock
        # file on each of the two punts; the host's shared lock file on each
        # punt is one for all of them.
        for i in range(SESSIONS):
            c = server.connect()
            c.login(f"user{i}+sample", POP_PW)
            sessions.append(c)
        user_growth = open_files(server.pid) - before
        assert user_growth <= 3 * SESSIONS + 2, f"{SESSIONS} user sessions hold {user_growth} descriptors"
        # A host login: its socket and one lock file per punt.
        for c in sessions:
            c.quit()
        wait_until(lambda: open_files(server.pid) <= before, what="the sessions' descriptors to be closed")
        host = server.connect()
        host.login("other", "other pw")
        assert open_files(server.pid) - before <= 3
        host.quit()
    finally:
        for c in sessions:
            c.close()


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(sample):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(hard, 256) if hard != resource.RLIM_INFINITY else 256
    server = sample.start(preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, low)))
    assert soft_nofile(server.pid) == (str(low), str(low))


@pytest.mark.site_options(top={"max_sessions": "5000"})
def test_a_warning_when_max_sessions_cannot_be_met_under_the_open_file_limit(sample):
    server = sample.start(preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    log = wait_until(lambda: "open-file limit" in server.log() and server.log(), what="the warning")
    assert "max_sessions 5000" in log and "the open-file limit is 256" in log, log[-2000:]
    # It serves all the same, as far as the limit goes.
    with server.connect() as c:
        c.login("sample", POP_PW)
        c.quit()
