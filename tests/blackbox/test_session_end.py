"""How sessions end (issue 7): a closed session executes nothing more,
whatever closed it (server shutdown, the idle timer, the client leaving, a
module call past its time limit); a PASS refused after `lock` took the locks
gives them back at once."""

import signal
import socket
import time

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, TIMEOUT, Pop3, ProtocolError, binary, message, slow_chain, wait_until


def fill(site, count):
    for i in range(count):
        site.deliver("fred@sample.demon.co.uk", data=message(subject=f"message {i + 1}"))


def after(log: str, marker: str) -> str:
    """The part of a server log after the first line containing `marker`."""
    at = log.find(marker)
    assert at >= 0, f"{marker!r} not in the log:\n{log[-3000:]}"
    return log[at:]


def drain(c: Pop3) -> bytes:
    """Everything the server still sends until it closes the connection."""
    c.expect_closed()
    return c.buffer


# ---------------------------------------------------------------- shutdown, idle timer

@pytest.mark.site_options(fail_delay="1s")
def test_sigterm_while_commands_are_queued_removes_nothing(sample):
    # The failed PASS holds the pipeline up for its delay; SIGTERM comes
    # meanwhile. The login, the DELEs and the QUIT behind it were read but
    # must not run: the client never hears about them.
    fill(sample, 3)
    server = sample.start()
    c = server.connect()
    c.send_raw(("USER sample\r\nPASS wrong\r\nUSER sample\r\nPASS " + POP_PW +
                "\r\nDELE 1\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n").encode())
    time.sleep(0.3)
    assert server.stop(signal.SIGTERM) == 0
    assert b"+OK 3" not in drain(c) and b"signing off" not in c.buffer
    late = after(server.log(), "SIGTERM")
    assert " logged in:" not in late and "UPDATE:" not in late, late
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 3, "messages were removed by a session closed at shutdown"
    c.quit()


@pytest.mark.site_options(idle_timeout="2s", fail_delay="4s")
def test_idle_timer_closing_a_busy_session_stops_its_queued_commands(sample):
    # The autologout timer fires during the failed PASS's delay: what the
    # client queued behind it must not log in, let alone delete.
    fill(sample, 2)
    server = sample.start()
    c = server.connect()
    c.send_raw(("USER sample\r\nPASS wrong\r\nUSER sample\r\nPASS " + POP_PW +
                "\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n").encode())
    drain(c)
    wait_until(lambda: "idle for" in server.log(), what="the idle timer")
    time.sleep(4.5)                                # the failed PASS has ended by now
    late = after(server.log(), "idle for")
    assert " logged in:" not in late and "UPDATE:" not in late, late
    c = server.connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 2, "messages were removed by a session the idle timer closed"
    c.quit()


# ---------------------------------------------------------------- the client leaving

@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.site_options(top={"max_sessions": 1})
def test_client_that_queued_many_failed_logins_and_left_is_forgotten_at_once(sample, how):
    # 100 failed logins at 200ms each would hold the only session slot (and
    # hash 100 passwords) for 20s after the client has gone.
    server = sample.start()
    c = server.connect()
    c.send_raw(b"USER sample\r\nPASS wrong\r\n" * 100)
    time.sleep(0.1)
    if how == "reset":
        c.abort()
    else:
        c.close()
    started = time.monotonic()

    def slot_free():
        try:
            other = server.connect()
        except (ProtocolError, OSError):
            return False
        if other.greeting.startswith("+OK"):
            return other
        other.close()
        return False

    other = wait_until(slot_free, timeout=2 + 2 * SLOW, interval=0.1, what="the session slot to be freed")
    assert time.monotonic() - started < 2 + 2 * SLOW
    other.login("sample", POP_PW)
    other.quit()
    assert server.log().count("login failed") <= 3, server.log()[-3000:]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_pipeline_then_leaving_without_reading_deletes_nothing(sample, how):
    # A client that pipelined RETR/DELE/QUIT (as mpop does) and left before
    # reading a reply never got the messages: they must stay.
    fill(sample, 3)
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    # sdpsd is stopped until the client's FIN or reset has reached its end
    # of the connection, so the client has left before a line is read, for
    # certain. (Running, a fast sdpsd can take the QUIT before the FIN
    # arrives, and then UPDATE is right.)
    port = c.sock.getsockname()[1]
    server.pause()
    try:
        c.send_raw(b"RETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nRETR 3\r\nDELE 3\r\nQUIT\r\n")
        if how == "reset":
            c.abort()
        else:
            c.close()
        wait_until(lambda: server.connection_state(port) != "01", what="the client's FIN or reset at sdpsd")
    finally:
        server.send_signal(signal.SIGCONT)
    time.sleep(0.5 * SLOW)

    def logged_in():
        c = server.connect()
        if c.cmd("USER sample").startswith("+OK") and c.cmd("PASS " + POP_PW).startswith("+OK"):
            return c
        c.close()
        return None

    c = wait_until(logged_in, what="the maildrop to be free")
    assert c.stat()[0] == 3, "messages were removed for a client that left without reading"
    c.quit()


# ---------------------------------------------------------------- a PASS refused after locking

@pytest.mark.site_options(module_settings={"lock": {"punts": "[finchley]"}, "merge": {"punts": "[docklands]"}})
def test_pass_refused_after_lock_releases_the_locks_at_once(sample):
    # lock locks finchley only, merge reads docklands only, whose maildrop
    # is then not locked by this session: merge refuses every PASS after
    # lock took its lock. That lock must not outlive the refused PASS.
    fill(sample, 1)
    server = sample.start()
    first = server.connect()
    first.ok("USER sample")
    assert first.err("PASS " + POP_PW).startswith("-ERR [SYS/TEMP]")
    second = server.connect()
    second.ok("USER sample")
    got = second.err("PASS " + POP_PW)
    assert "[IN-USE]" not in got, "a refused PASS kept its locks: " + got
    first.ok("USER sample")                        # the first session is still open
    first.close()
    second.close()


# ---------------------------------------------------------------- a module call past its time limit

@pytest.mark.site_options(chain=slow_chain("300ms", "2s"),
                          top={"module_path": f"[{binary('').parent / 'tests' / 'fixtures'}]"})
def test_module_call_past_its_time_limit_ends_the_session(sample):
    server = sample.start()
    c = server.connect()
    c.login("sample", POP_PW)
    started = time.monotonic()
    c.send_raw(b"XSLOW\r\nNOOP\r\n")
    assert c.reply().startswith("-ERR [SYS/TEMP]")
    c.expect_closed(within=1 + SLOW)               # NOOP is never answered
    assert time.monotonic() - started < 1.5 * SLOW
    # The disconnect event waits for the late call: the module never sees
    # two calls for one session at once.
    log = wait_until(lambda: "fixture_slow: disconnect" in server.log() and server.log(),
                     what="the disconnect event")
    assert log.find("fixture_slow: XSLOW finished") < log.find("fixture_slow: disconnect"), log[-3000:]
    assert "fixture_slow: overlap" not in log
    # Its locks are free once the session is over.
    c = server.connect()
    c.login("sample", POP_PW)
    c.quit()
