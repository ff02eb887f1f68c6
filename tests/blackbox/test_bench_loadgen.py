"""The benchmarks' load generator (bench/loadgen, `sdps-loadgen`): it runs
every workload against a real sdpsd with every size verified, over TLS too
(implicit and STLS, resumption on and off), and it fails when a server lies
about sizes or counts. Not a timing test: the figures it prints are not
checked, only that it completed and verified."""

import json
import re
import socket
import subprocess
import threading

import pytest

from sdps_harness import SLOW, SOURCE_DIR, TIMEOUT, binary, message, wait_until

LOADGEN = binary("sdps-loadgen")


def loadgen(port, workload, *args, users=(("sample", "pw"),), stdin=None):
    """Runs sdps-loadgen; returns (exit status, RESULT object, stdout)."""
    assert LOADGEN.exists(), f"sdps-loadgen not built in {LOADGEN.parent}"
    cmd = [str(LOADGEN), "--port", str(port), "--workload", workload, "--timeout", str(TIMEOUT)]
    for user, password in users:
        cmd += ["--user", f"{user}:{password}"]
    r = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, timeout=60 * SLOW)
    results = [json.loads(line[7:]) for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, f"no RESULT line (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.returncode, results[0], r.stdout


def stuffed_body(n):
    """A message body with lines that need byte-stuffing, of varying size."""
    return "line one\n.\n.starts with a dot\n..two dots\n" + "x" * (100 * n) + "\nend\n"


@pytest.fixture
def busy_site(site):
    """Hosts with maildrops for every workload: f1, f2 (5 messages each),
    big (one message of 300 KiB with dot lines), drop (20 messages), and
    hosts h1, h2 for user logins."""
    for host in ("f1", "f2", "big", "drop", "h1", "h2"):
        site.add_host(host, pop3=f"pw-{host}")
    for i in range(5):
        site.deliver("fred@f1.demon.co.uk", "fred@f2.demon.co.uk",
                     data=message(subject=f"m{i}", body=stuffed_body(i)), punt=("finchley", "docklands")[i % 2])
    site.deliver("fred@big.demon.co.uk", data=message(subject="big", body=(".dot\n" + "y" * 70 + "\n") * 4000))
    for i in range(20):
        site.deliver("fred@drop.demon.co.uk", data=message(subject=f"d{i}"), punt=("finchley", "docklands")[i % 2])
    return site


def test_every_workload_completes_verified_against_sdpsd(busy_site):
    server = busy_site.start()
    port = server.port

    status, r, out = loadgen(port, "full", "--clients", "2", "--seconds", "0.5", "--warmup", "0.1",
                             "--expect-messages", "5", users=[("f1", "pw-f1"), ("f2", "pw-f2")])
    assert status == 0, out
    assert r["verify_errors"] == 0 and r["other_errors"] == 0, out
    # messages and sessions are counted as they end in the window: a session
    # that straddles its edge has counted some of its messages
    assert r["sessions"] > 0 and abs(r["messages"] - 5 * r["sessions"]) <= 5 * 2, out
    assert r["p50_ms"] is not None

    status, r, out = loadgen(port, "login", "--clients", "2", "--seconds", "0.3", "--warmup", "0",
                             users=[("f1", "pw-f1"), ("f2", "pw-f2")])
    assert status == 0 and r["sessions"] > 0, out

    status, r, out = loadgen(port, "retr", "--seconds", "0.5", "--warmup", "0.1", users=[("big", "pw-big")])
    assert status == 0 and r["messages"] > 0, out
    size = busy_site.sdps("spool", "list", "big").stdout.decode()
    assert r["octets"] % r["messages"] == 0, out          # every RETR the same, verified size
    assert str(r["octets"] // r["messages"]) in size, (out, size)
    assert r["wire_octets"] > r["octets"], out             # the stuffed dots and terminators

    status, r, out = loadgen(port, "bigdrop", "--runs", "2", "--expect-messages", "20", users=[("drop", "pw-drop")])
    assert status == 0 and r["runs"] == 2 and r["messages"] == 20, out

    users = [(f"u{i}@h{1 + i % 2}", f"pw-h{1 + i % 2}") for i in range(10)]
    status, r, out = loadgen(port, "idle", "--steps", "4,10", "--clients", "3", users=users, stdin="\n\n")
    assert status == 0, out
    assert [json.loads(line[5:])["held"] for line in out.splitlines() if line.startswith("HELD ")] == [4, 10], out
    assert r["held"] == 10 and r["quit_ok"] == 10, out
    assert server.alive()


def tls_site(site, tmp_path):
    """Starts sdpsd with a test certificate (scripts/make-test-cert): its
    plain listener offers STLS, a second one is implicit TLS. Returns
    (server, plain port, TLS port, the CA file)."""
    pki = tmp_path / "pki"
    subprocess.run([str(SOURCE_DIR / "scripts" / "make-test-cert"), str(pki)], check=True, capture_output=True)
    site.write_config(top={"tls": f"{{certificate: {pki / 'cert.pem'}, key: {pki / 'key.pem'}}}"})
    server = site.start(extra_args=["--listen-tls", "127.0.0.1:0"])
    wait_until(lambda: "(implicit TLS)" in server.log(), what="the implicit-TLS listener")
    plain = re.search(r"listening on 127\.0\.0\.1:(\d+) \(STLS offered\)", server.log())
    secure = re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", server.log())
    return server, int(plain.group(1)), int(secure.group(1)), pki / "ca.pem"


FULL_USERS = [("f1", "pw-f1"), ("f2", "pw-f2")]


@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_full_sessions_over_tls_verify_with_and_without_resumption(busy_site, tmp_path, mode):
    server, plain, secure, ca = tls_site(busy_site, tmp_path)
    port = secure if mode == "implicit" else plain
    for resume in ("off", "on"):
        status, r, out = loadgen(port, "full", "--clients", "2", "--seconds", "0.5", "--warmup", "0.1",
                                 "--expect-messages", "5", "--tls", mode, "--resume", resume, "--ca", str(ca),
                                 users=FULL_USERS)
        assert status == 0 and r["verify_errors"] == 0 and r["other_errors"] == 0, out
        assert r["sessions"] > 0 and abs(r["messages"] - 5 * r["sessions"]) <= 5 * 2, out
        assert r["tls"] == mode and r["protocol"].startswith("TLSv1.3 "), out
        # one handshake per session (those that straddle the window's edges aside)
        assert abs(r["handshakes"] - r["sessions"]) <= 2, out
        if resume == "on":
            # every session but each client's first offers the ticket the one before left it
            assert r["resumed"] >= r["handshakes"] - 2 and r["resumed"] > 0, out
        else:
            assert r["resumed"] == 0, out
    assert server.alive()


def test_tls_1_2_resumption_retr_and_handshakes_over_tls(busy_site, tmp_path):
    server, plain, secure, ca = tls_site(busy_site, tmp_path)
    status, r, out = loadgen(secure, "login", "--clients", "2", "--seconds", "0.3", "--warmup", "0.1",
                             "--tls", "implicit", "--tls-max", "1.2", "--resume", "on", users=FULL_USERS)
    assert status == 0 and r["protocol"].startswith("TLSv1.2 "), out
    assert r["resumed"] >= r["handshakes"] - 2 and r["resumed"] > 0, out

    # RETR over TLS: the same octets, message after message, as in plaintext
    status, clear, out = loadgen(plain, "retr", "--seconds", "0.3", "--warmup", "0", users=[("big", "pw-big")])
    assert status == 0 and clear["messages"] > 0, out
    status, r, out = loadgen(secure, "retr", "--seconds", "0.3", "--warmup", "0", "--tls", "implicit",
                             users=[("big", "pw-big")])
    assert status == 0 and r["messages"] > 0 and r["handshakes"] <= 1, out
    assert r["octets"] // r["messages"] == clear["octets"] // clear["messages"], out
    assert r["wire_octets"] // r["messages"] == clear["wire_octets"] // clear["messages"], out

    # greeting + QUIT: one handshake a session, exactly --sessions of them
    for mode, port in (("implicit", secure), ("stls", plain)):
        status, r, out = loadgen(port, "handshake", "--clients", "3", "--sessions", "12", "--tls", mode,
                                 "--resume", "on", users=FULL_USERS)
        assert status == 0 and r["sessions"] == 12 and r["handshakes"] == 12, out
        assert r["resumed"] >= 12 - 3, out      # each client's first handshake is a new one

    # sessions held over TLS, then QUIT on each
    users = [(f"u{i}@h{1 + i % 2}", f"pw-h{1 + i % 2}") for i in range(4)]
    status, r, out = loadgen(secure, "idle", "--steps", "4", "--clients", "2", "--tls", "implicit", users=users,
                             stdin="\n")
    assert status == 0 and r["held"] == 4 and r["quit_ok"] == 4, out
    assert server.alive()


def test_a_wrong_count_from_the_server_is_a_verification_error(busy_site):
    server = busy_site.start()
    status, r, out = loadgen(server.port, "bigdrop", "--runs", "1", "--expect-messages", "21",
                             users=[("drop", "pw-drop")])
    assert status == 1 and r["verify_errors"] == 1, out
    assert "STAT says 20 messages, expected 21" in r["errors"][0], out


def test_a_refused_login_is_a_failure_but_not_a_verification_error(busy_site):
    server = busy_site.start()
    status, r, out = loadgen(server.port, "login", "--seconds", "0.3", "--warmup", "0",
                             users=[("f1", "wrong password")])
    assert status == 4 and r["verify_errors"] == 0 and r["other_errors"] > 0, out
    assert "PASS -> -ERR" in r["errors"][0], out


@pytest.mark.site_options(top={"max_sessions_per_address": 2})
def test_sources_spread_the_clients_over_loopback_addresses(busy_site):
    users = [(f"u{i}@h1", "pw-h1") for i in range(6)]
    # a fresh server for each run: one that has just seen sessions end may
    # still count them against their address for a moment
    server = busy_site.start()
    status, r, out = loadgen(server.port, "idle", "--steps", "6", users=users, stdin="\n")
    assert status == 4 and r["held"] == 2 and r["other_errors"] == 4, out   # one address: the server's limit
    server.stop()
    server = busy_site.start()
    status, r, out = loadgen(server.port, "idle", "--steps", "6", "--give-up", "1", users=users, stdin="\n")
    assert status == 4 and r["held"] == 2 and r["other_errors"] == 1, out   # stopped at the first refusal
    server.stop()
    server = busy_site.start()
    status, r, out = loadgen(server.port, "idle", "--steps", "6", "--sources", "3", users=users, stdin="\n")
    assert status == 0 and r["held"] == 6, out


# ---------------------------------------------------------------- a server that lies

MESSAGES = [b"Subject: one\r\n\r\nhello\r\n", b"Subject: two\r\n\r\n.dotted\r\nline\r\n", b"Subject: three\r\n\r\nbye\r\n"]


class LyingServer:
    """A small POP3 server over MESSAGES that tells one lie: `lie` is
    'list' (message 2's LIST size one too big, STAT agreeing), 'stat' (STAT's octets one
    too many), 'uidl' (UIDL leaves out message 3), 'stuffing' (RETR 2 sends
    its dot line unstuffed) or 'none'."""

    def __init__(self, lie):
        self.lie = lie
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        try:
            self._converse(conn)
        except OSError:          # the client hung up on a lie
            pass
        finally:
            conn.close()

    def _converse(self, conn):
        sizes = [len(m) for m in MESSAGES]
        listed = [s + (self.lie == "list" and i == 1) for i, s in enumerate(sizes)]
        with conn.makefile("rb") as lines:
            conn.sendall(b"+OK ready\r\n")
            for raw in lines:
                cmd = raw.strip().split(b" ")
                verb = cmd[0].upper()
                if verb in (b"USER", b"PASS"):
                    conn.sendall(b"+OK\r\n")
                elif verb == b"STAT":
                    conn.sendall(b"+OK %d %d\r\n" % (len(MESSAGES), sum(listed) + (self.lie == "stat")))
                elif verb == b"LIST":
                    conn.sendall(b"+OK\r\n" + b"".join(b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(listed)) + b".\r\n")
                elif verb == b"UIDL":
                    count = 2 if self.lie == "uidl" else 3
                    conn.sendall(b"+OK\r\n" + b"".join(b"%d uid-%d\r\n" % (i, i) for i in range(1, count + 1)) + b".\r\n")
                elif verb == b"RETR":
                    n = int(cmd[1])
                    body = MESSAGES[n - 1]
                    if not (self.lie == "stuffing" and n == 2):
                        body = body.replace(b"\r\n.", b"\r\n..")
                    conn.sendall(b"+OK\r\n" + body + b".\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"+OK bye\r\n")
                    return
                else:
                    conn.sendall(b"-ERR\r\n")

    def close(self):
        self.sock.close()


@pytest.fixture
def liar(request):
    server = LyingServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("liar", ["none"], indirect=True)
def test_an_honest_fake_server_passes(liar):
    status, r, out = loadgen(liar.port, "full", "--seconds", "0.3", "--warmup", "0", "--expect-messages", "3")
    assert status == 0 and r["sessions"] > 0 and abs(r["messages"] - 3 * r["sessions"]) <= 3, out


@pytest.mark.parametrize("liar,complaint", [
    ("list", "RETR 2 sent 31 octets, LIST said 32"),
    ("stat", "LIST sizes add up to 77, STAT said 78"),
    ("uidl", "UIDL listed 2 messages, STAT said 3"),
    ("stuffing", "RETR 2 sent 30 octets, LIST said 31"),
], indirect=["liar"])
def test_a_server_that_lies_about_sizes_fails_the_run(liar, complaint):
    status, r, out = loadgen(liar.port, "full", "--seconds", "0.3", "--warmup", "0")
    assert status == 1, out
    assert r["verify_errors"] > 0, out
    assert complaint in r["errors"][0], out


def test_the_limit_serves_sdps_spool_as_sdpsd_does(busy_site):
    """sdps-bound (bench/bound), the benchmarks' yardstick, reads sdps's
    spool itself: the generator verifies its full sessions, and one RETR
    sends exactly the octets sdpsd's does."""
    bound = binary("sdps-bound")
    assert bound.exists(), f"sdps-bound not built in {bound.parent}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(bound), "--port", str(port), "--threads", "2"]
    for punt in busy_site.punts:
        cmd += ["--punt", str(busy_site.punt_dir(punt))]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        greeting = b""
        for _ in range(int(100 * SLOW)):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
                    greeting = c.recv(64)
                    break
            except OSError:
                threading.Event().wait(0.05)
        assert greeting.startswith(b"+OK"), process.stderr
        status, r, out = loadgen(port, "full", "--clients", "2", "--seconds", "0.5", "--warmup", "0.1",
                                 "--expect-messages", "5", users=[("f1", "any"), ("f2", "any")])
        assert status == 0 and r["verify_errors"] == 0 and r["sessions"] > 0, out
        status, limit, out = loadgen(port, "retr", "--seconds", "0.3", "--warmup", "0", users=[("big", "any")])
        assert status == 0 and limit["messages"] > 0, out
    finally:
        process.terminate()
        process.wait(TIMEOUT)
    server = busy_site.start()
    status, r, out = loadgen(server.port, "retr", "--seconds", "0.3", "--warmup", "0", users=[("big", "pw-big")])
    assert status == 0 and r["messages"] > 0, out
    assert limit["octets"] // limit["messages"] == r["octets"] // r["messages"]
    assert limit["wire_octets"] // limit["messages"] == r["wire_octets"] // r["messages"]
