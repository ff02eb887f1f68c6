"""`sdps lmtp` as a service (issue 18): a unix socket with the mode and
group the MTA needs, bound before the switch to `user:`, stopped cleanly
by SIGTERM, and its systemd units (socket activation:
test_socket_activation.py)."""

import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from sdps_harness import BUILD_DIR, binary, message
from smtp_harness import LineClient, Lmtp

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="binding as root, then switching user, needs root")


def one_message(client: LineClient, recipient: str = "fred@sample.demon.co.uk") -> int:
    """A whole transaction; the reply to the final dot."""
    assert client.reply()[0] == 220
    assert client.cmd("LHLO mta.test")[0] == 250
    assert client.cmd("MAIL FROM:<alice@example.com>")[0] == 250
    assert client.cmd(f"RCPT TO:<{recipient}>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    client.send(message(subject="over lmtp").replace(b"\n", b"\r\n") + b".\r\n")
    code = client.reply()[0]
    client.cmd("QUIT")
    client.close()
    return code


def test_lmtp_serves_a_unix_socket_with_the_mode_and_group_given(sample):
    path = sample.root / "lmtp.sock"
    group = grp.getgrgid(os.getgid()).gr_name
    lmtp = Lmtp(sample, "--socket-mode", "0620", "--socket-group", group, listen=f"unix:{path}")
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o620
        assert st.st_gid == os.getgid()
        assert f"listening on unix:{path}" in lmtp.log()
        assert one_message(LineClient(path=str(path))) == 250
    finally:
        assert lmtp.stop() == 0
    assert len(sample.spool_list("sample").splitlines()) == 1
    assert not path.exists(), "the socket is removed when the service stops"


def test_lmtp_replaces_a_stale_socket_and_refuses_to_replace_a_file(sample):
    path = sample.root / "lmtp.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()                                    # left behind, nobody listening
    lmtp = Lmtp(sample, listen=f"unix:{path}")
    try:
        assert one_message(LineClient(path=str(path))) == 250
    finally:
        assert lmtp.stop() == 0
    path.write_text("not a socket")
    result = sample.sdps("lmtp", "--listen", f"unix:{path}", expect=69)
    assert b"exists and is not a socket" in result.stderr
    assert path.read_text() == "not a socket"


@root_only
def test_lmtp_binds_as_root_then_runs_as_the_configs_user(site):
    user = "nobody"
    who = pwd.getpwnam(user)
    os.chmod(site.root, 0o755)
    for dirpath, dirs, files in os.walk(site.root / "var"):
        for name in [*dirs, *files]:
            shutil.chown(Path(dirpath) / name, user)
    shutil.chown(site.root / "var", user)
    site.write_config(top={"user": user})
    site.add_host("sample", pop3="pw")
    private = site.root / "private"                  # only root may create a socket here
    private.mkdir(mode=0o755)
    path = private / "sdps"
    lmtp = Lmtp(site, "--listen", "127.0.0.1:0", "--socket-group", grp.getgrgid(who.pw_gid).gr_name,
                listen=f"unix:{path}")
    try:
        status = Path(f"/proc/{lmtp.process.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(who.pw_uid)] * 4, status
        assert f"running as user {user}" in lmtp.log()
        st = os.stat(path)
        assert st.st_uid == who.pw_uid and st.st_gid == who.pw_gid, "the socket belongs to the service's user"
        assert one_message(LineClient(path=str(path))) == 250
        assert one_message(LineClient(lmtp.port)) == 250
    finally:
        assert lmtp.stop() == 0
    listing = site.spool_list("sample").splitlines()
    assert len(listing) == 2
    for file in (site.root / "var" / "spool").rglob("0*"):
        assert file.stat().st_uid == who.pw_uid, "stored as the config's user"


@root_only
def test_lmtp_gives_its_unix_socket_to_the_socket_owner(sample):
    path = sample.root / "lmtp.sock"
    who = pwd.getpwnam("nobody")
    lmtp = Lmtp(sample, "--socket-owner", "nobody", listen=f"unix:{path}")
    try:
        st = os.stat(path)
        assert st.st_uid == who.pw_uid, "the socket belongs to --socket-owner"
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert one_message(LineClient(path=str(path))) == 250
    finally:
        assert lmtp.stop() == 0


def test_lmtp_refuses_a_socket_owner_or_group_that_does_not_exist(sample):
    path = sample.root / "lmtp.sock"
    result = sample.sdps("lmtp", "--listen", f"unix:{path}", "--socket-owner", "nosuchuser", expect=64)
    assert b"--socket-owner: no user" in result.stderr
    result = sample.sdps("lmtp", "--listen", f"unix:{path}", "--socket-group", "nosuchgroup", expect=64)
    assert b"--socket-group: no group" in result.stderr
    assert not path.exists()


def test_lmtp_without_a_socket_is_a_usage_error(sample):
    result = sample.sdps("lmtp", expect=64)
    assert b"--listen" in result.stderr.splitlines()[0]


def test_sigterm_lets_a_transaction_in_data_finish_and_says_421_to_an_idle_client(sample):
    lmtp = Lmtp(sample)
    try:
        idle = LineClient(lmtp.port)
        assert idle.reply()[0] == 220
        busy = LineClient(lmtp.port)
        assert busy.reply()[0] == 220
        busy.cmd("LHLO mta.test")
        busy.cmd("MAIL FROM:<alice@example.com>")
        busy.cmd("RCPT TO:<fred@sample.demon.co.uk>")
        assert busy.cmd("DATA")[0] == 354
        busy.send("Subject: finishing\r\n\r\n")
        lmtp.process.terminate()
        code, lines = idle.reply()
        assert code == 421 and "shutting down" in lines[0], lines
        busy.send("the rest\r\n.\r\n")
        assert busy.reply()[0] == 250, "the message in DATA is stored"
        assert busy.reply()[0] == 421
        lmtp.process.wait(30)
    finally:
        assert lmtp.stop() == 0
    assert len(sample.spool_list("sample").splitlines()) == 1


def test_the_lmtp_and_expiry_units_install_and_verify(tmp_path):
    """sdps-lmtp.service + .socket, sdps-expire.service + .timer, installed
    as the package installs them, and accepted by systemd-analyze."""
    stage = tmp_path / "stage"
    result = subprocess.run(["cmake", "--install", str(BUILD_DIR), "--prefix", "/usr"], capture_output=True,
                            text=True, env={**os.environ, "DESTDIR": str(stage)}, timeout=600)
    assert result.returncode == 0, result.stderr
    units = stage / "lib/systemd/system"
    texts = {name: (units / name).read_text() for name in
             ("sdps-lmtp.service", "sdps-lmtp.socket", "sdps-expire.service", "sdps-expire.timer")}
    assert "ExecStart=/usr/bin/sdps -c /etc/sdps/sdps.yaml lmtp\n" in texts["sdps-lmtp.service"]
    assert "Requires=sdps-lmtp.socket" in texts["sdps-lmtp.service"]
    assert "ListenStream=127.0.0.1:24" in texts["sdps-lmtp.socket"]
    assert "ExecStart=/usr/bin/sdps -c /etc/sdps/sdps.yaml expire --older-than 30d" in texts["sdps-expire.service"]
    assert "OnCalendar=" in texts["sdps-expire.timer"] and "Persistent=true" in texts["sdps-expire.timer"]
    for name in ("sdps-lmtp.service", "sdps-expire.service"):
        assert "User=sdps" in texts[name] and "NoNewPrivileges=yes" in texts[name]
        assert "ReadWritePaths=/var/spool/sdps" in texts[name]
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (scripts/install-deps --test)")
    local = tmp_path / "verify"
    local.mkdir()
    for name, text in texts.items():
        # Verified against the build's binary: the installed path may not exist here.
        (local / name).write_text(text.replace("/usr/bin/sdps", str(binary("sdps"))))
    for pair in (("sdps-lmtp.socket", "sdps-lmtp.service"), ("sdps-expire.timer", "sdps-expire.service")):
        result = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(local / n) for n in pair)],
                                capture_output=True, text=True, timeout=60)
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if line.strip() and "Failed to connect" not in line and "System has not been booted" not in line
                    and "bus" not in line.lower() and "User=sdps" not in line and "user sdps" not in line.lower()]
        assert result.returncode == 0 or not problems, result.stdout + result.stderr
        assert not problems, result.stdout + result.stderr
