"""Connections at scale: the open files an idle logged-in session costs,
and the open-file limit sdpsd runs under (raised to the hard limit at
start, with a warning when max_sessions cannot be met)."""

import os
import resource

import pytest

from conftest import POP_PW
from sdps_harness import wait_until

SESSIONS = 200
HOSTS = 5


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_nofile(pid: int) -> tuple[str, str]:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            fields = line.split()
            return fields[3], fields[4]
    raise AssertionError("no 'Max open files' line")


@pytest.mark.site_options(top={"max_sessions": "1000", "max_sessions_per_address": "0"})
def test_an_idle_user_session_holds_one_descriptor_plus_one_per_host_and_punt(sample):
    hosts = ["sample"] + [f"other{i}" for i in range(HOSTS - 1)]
    for host in hosts[1:]:
        sample.add_host(host, pop3=POP_PW)
    sample.deliver("fred@sample.demon.co.uk", data=b"Subject: one\r\n\r\nhello\r\n")
    server = sample.start()
    # Every host's folder and lock file exist once a first session has come
    # and gone; then nothing is held.
    for host in hosts:
        server.session(f"fred+{host}", POP_PW).quit()
    before = open_files(server.pid)
    sessions = []
    try:
        # User logins spread over the hosts: each holds its socket only; on
        # each punt, the host's lock file is one open file for all of that
        # host's user sessions (they lock a byte of it each).
        for i in range(SESSIONS):
            sessions.append(server.session(f"user{i}+{hosts[i % HOSTS]}", POP_PW))
        user_growth = open_files(server.pid) - before
        shared = len(sample.punts) * HOSTS
        assert user_growth <= SESSIONS + shared + 2, \
            f"{SESSIONS} user sessions of {HOSTS} hosts hold {user_growth} descriptors"
        for c in sessions:
            c.quit()
        wait_until(lambda: open_files(server.pid) <= before, what="the sessions' descriptors to be closed")
        # A host login: its socket and one lock file per punt.
        host = server.session("sample", POP_PW)
        assert open_files(server.pid) - before <= 1 + len(sample.punts)
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
