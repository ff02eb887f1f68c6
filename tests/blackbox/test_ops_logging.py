"""Where sdpsd's log lines go: journald's priority prefixes when
JOURNAL_STREAM names its standard error (or `log_target: journal`),
the syslog socket with `log_target: syslog`, plain lines otherwise; a
fatal start-up error with the error priority."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from sdps_harness import SANITIZE, TIMEOUT, Site, binary, sanitizer_report, wait_until

PW = "Corr3ct-Horse-Battery"


def journal_stream_of(path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def start_with_journal(site: Site, **kwargs):
    """sdpsd with JOURNAL_STREAM naming its standard error (the harness's
    log file, made first so that its inode is known)."""
    log = site.root / f"sdpsd.{len(site.servers)}.log"
    log.touch()
    env = {**os.environ, "JOURNAL_STREAM": journal_stream_of(log)}
    return site.start(env=env, **kwargs)


def test_journald_stream_gets_priority_prefixes_and_no_timestamps():
    with Site(top={"log_level": "debug"}) as site:
        site.add_host("sample", pop3=PW)
        server = start_with_journal(site)
        c = server.session("sample", PW)
        c.quit()
        wait_until(lambda: ": logout " in server.log(), what="the logout line")
        lines = [l for l in server.log().splitlines() if l.strip()]
        assert lines and all(re.match(r"<[3467]>sdpsd", l) for l in lines), server.log()
        assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", l) for l in lines), server.log()
        assert any(l.startswith("<6>sdpsd: listening on 127.0.0.1:") for l in lines)
        assert any(re.match(r"<7>sdpsd session \d+: connect from", l) for l in lines)
        assert any(l.startswith("<6>sdpsd: logout login=sample ") for l in lines)


def test_a_warning_is_priority_4_and_an_error_3():
    with Site() as site:
        # No hosts file yet: auth warns at start-up.
        server = start_with_journal(site)
        assert re.search(r"^<4>sdpsd auth: .*hosts does not exist", server.log(), re.M), server.log()
        (site.root / "var" / "hosts").write_text("")
        os.chmod(site.root / "var" / "hosts", 0o666)  # unsafe: refused at SIGHUP, an error
        server.send_signal(signal.SIGHUP)
        wait_until(lambda: re.search(r"^<3>sdpsd auth: host store .*: down: ", server.log(), re.M), what="the error line")


def test_journald_detection_needs_the_very_same_file():
    """A JOURNAL_STREAM inherited by a process whose stderr was redirected
    elsewhere names another file: plain lines with their time."""
    with Site() as site:
        other = site.root / "other"
        other.write_text("")
        server = site.start(env={**os.environ, "JOURNAL_STREAM": journal_stream_of(other)})
        assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z info sdpsd: listening on ", server.log(), re.M), server.log()


def test_log_target_journal_and_json_without_time():
    with Site(top={"log_target": "journal", "log_format": "json"}) as site:
        site.add_host("sample", pop3=PW)
        server = site.start()
        server.session("sample", PW).quit()
        wait_until(lambda: '"event":"logout"' in server.log(), what="the logout event")
        lines = [l for l in server.log().splitlines() if l.strip()]
        assert all(re.match(r"<[3467]>\{", l) for l in lines), server.log()
        events = [json.loads(l[3:]) for l in lines]
        assert all("time" not in e and {"level", "source"} <= set(e) for e in events)
        [logout] = [e for e in events if e.get("event") == "logout"]
        assert logout["dele"] == 0 and isinstance(logout["duration"], float)


def test_syslog_target_sends_datagrams_to_the_configured_socket(tmp_path):
    path = tmp_path / "log"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(str(path))
    daemon.settimeout(TIMEOUT)
    with Site(top={"log_target": "syslog", "syslog_socket": str(path), "syslog_facility": "local2"}) as site:
        site.add_host("sample", pop3=PW)
        proc = subprocess.Popen([str(binary("sdpsd")), "-c", str(site.config), "--listen", "127.0.0.1:0"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            port, seen = None, []
            deadline = time.monotonic() + TIMEOUT
            while port is None and time.monotonic() < deadline:
                datagram = daemon.recv(65536).decode()
                seen.append(datagram)
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", datagram)
                if m:
                    port = int(m.group(1))
            assert port, seen
            # local2 (18) * 8 + info (6); syslog(3)'s framing.
            assert re.match(rf"<150>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d sdpsd\[{proc.pid}\]: sdpsd: listening on ",
                            seen[-1]), seen
            from sdps_harness import Pop3
            c = Pop3(port)
            c.login("sample", PW)
            c.quit()
            while True:
                datagram = daemon.recv(65536).decode()
                if ": logout " in datagram:
                    break
            assert "login=sample" in datagram and datagram.startswith("<150>")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=TIMEOUT)
            daemon.close()
        assert proc.returncode == 0
        assert b"listening" not in err, err  # nothing went to stderr but the sanitizer's own words
        if SANITIZE:
            assert sanitizer_report(err.decode("utf-8", "replace")) is None, err


def test_syslog_socket_missing_falls_back_to_stderr(tmp_path):
    with Site(top={"log_target": "syslog", "syslog_socket": str(tmp_path / "nobody-listens")}) as site:
        server = site.start()
        assert "cannot reach the syslog socket" in server.log()
        assert re.search(r" info sdpsd: listening on ", server.log())


def test_a_config_error_at_start_is_an_error_priority_line_under_journald():
    with Site(top={"log_level": "loud"}) as site:
        log = site.root / "stderr.log"
        with open(log, "wb") as out:
            env = {**os.environ, "JOURNAL_STREAM": journal_stream_of(log)}
            result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config)], stdout=out, stderr=out, env=env,
                                    timeout=6 * TIMEOUT)
        assert result.returncode == 78
        assert re.match(r"<3>sdpsd: sdps\.yaml:\d+: 'log_level' must be debug", log.read_text()), log.read_text()
