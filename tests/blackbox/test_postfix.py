"""A real Postfix from Debian delivering into the spool, over LMTP (`sdps
lmtp`) and over the `sdps deliver` pipe, configured with the recipe lines
of docs/smtp.md as written (read from the doc by this test). Postfix runs
as a private instance: its own config and queue folders in the test's
temporary folder, smtpd on a loopback port only, stopped at the end."""

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from conftest import POP_PW
from sdps_harness import SOURCE_DIR, TIMEOUT, binary, message, wait_until
from smtp_harness import Lmtp, closed_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(POSTFIX), reason="postfix is not installed (scripts/install-deps --test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance needs root to start"),
]

MASTER_CF = """\
{port}      inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def recipe(name: str) -> str:
    """The fenced block after `<!-- recipe: NAME -->` in docs/smtp.md."""
    text = (SOURCE_DIR / "docs" / "smtp.md").read_text()
    m = re.search(r"<!-- recipe: " + re.escape(name) + r" -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert m, f"docs/smtp.md has no recipe {name}"
    return m.group(1)


class Postfix:
    def __init__(self, root: Path, main_extra: str, master_extra: str = ""):
        os.chmod(root, 0o755)  # Postfix's daemons (user postfix) reach their queue below it
        self.dir = root / "postfix"
        self.config = self.dir / "etc"
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        for d in (self.config, self.queue, self.data):
            d.mkdir(parents=True)
        shutil.chown(self.data, "postfix")
        self.port = closed_port()
        self.maillog = self.dir / "maillog"
        (self.config / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.test
mydomain = test
myorigin = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = error:no mail leaves this test
relay_transport = error:no mail leaves this test
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}
smtputf8_enable = no
biff = no
lmtp_connect_timeout = 10s
delay_warning_time = 0
{main_extra}""")
        (self.config / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}") + master_extra)
        env = dict(os.environ, MAIL_CONFIG=str(self.config))
        self.env = env
        result = subprocess.run([POSTFIX, "-c", str(self.config), "start"], capture_output=True, env=env,
                                timeout=TIMEOUT * 3)
        if result.returncode != 0:  # the reason went to syslog; `postfix check` says it on a terminal
            check = subprocess.run(["script", "-qc", f"{POSTFIX} -c {self.config} check", "/dev/null"],
                                   capture_output=True, timeout=TIMEOUT * 3)
            pytest.fail(f"postfix start failed: {result.stderr.decode()[-2000:]} {check.stdout.decode()[-2000:]}")
            pytest.fail(f"postfix start failed: {result.stderr.decode()[-2000:]}")
        wait_until(self.listening, what="Postfix smtpd listening")

    def listening(self) -> bool:
        try:
            smtplib.SMTP("127.0.0.1", self.port, timeout=2).quit()
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config), "stop"], capture_output=True, env=self.env,
                       timeout=TIMEOUT * 3)
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + TIMEOUT
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=TIMEOUT) as s:
            return s.sendmail(sender, recipients, data)


def status_of(log: str, recipient: str) -> str | None:
    m = re.findall(r"to=<" + re.escape(recipient) + r">.*? status=(\w+)", log)
    return m[-1] if m else None


def wait_for_statuses(postfix: Postfix, recipients: list[str]) -> dict:
    wait_until(lambda: all(status_of(postfix.log(), r) in ("sent", "bounced") for r in recipients),
               timeout=6 * TIMEOUT, what=f"Postfix delivery results:\n{postfix.log()[-3000:]}")
    return {r: status_of(postfix.log(), r) for r in recipients}


RECIPIENTS = ["fred@sample.demon.co.uk", "jim@sample.demon.co.uk", "x@nosuchhost.demon.co.uk"]


def check_spool(sample, data: bytes):
    c = sample.start().connect()
    c.login("sample", POP_PW)
    assert c.stat()[0] == 2
    got = {}
    for n in (1, 2):
        env = c.env(n)
        got[env[3]] = c.retr(n)
    c.quit()
    assert sorted(got) == RECIPIENTS[:2]
    for to, text in got.items():
        assert text.startswith(b"Return-Path: <alice@example.com>\r\nDelivered-To: " + to.encode() + b"\r\n")
        assert b"Subject: through postfix" in text and text.endswith(b"hello from postfix\r\n")
        assert b"\r\nFrom alice" not in text and not text.startswith(b"From ")


def test_postfix_delivers_over_lmtp_per_recipient(sample):
    lmtp = Lmtp(sample)
    main = recipe("postfix-main-lmtp").replace("127.0.0.1:24", f"127.0.0.1:{lmtp.port}")
    postfix = Postfix(sample.root, main)
    try:
        data = message(subject="through postfix", body="hello from postfix\n")
        postfix.send("alice@example.com", RECIPIENTS, data)
        statuses = wait_for_statuses(postfix, RECIPIENTS)
        assert statuses == {RECIPIENTS[0]: "sent", RECIPIENTS[1]: "sent", RECIPIENTS[2]: "bounced"}, postfix.log()
        assert re.search(r"to=<x@nosuchhost.demon.co.uk>.*said: 550 5\.1\.1", postfix.log())
        check_spool(sample, data)
    finally:
        postfix.stop()
        lmtp.stop()


def test_postfix_delivers_over_lmtp_on_a_unix_socket_in_its_private_folder(sample):
    postfix = Postfix(sample.root, recipe("postfix-main-lmtp-unix"))
    # lmtp:unix:private/sdps is relative to Postfix's queue folder; the
    # socket in Postfix's group, as docs/smtp.md says.
    lmtp = Lmtp(sample, "--socket-group", "postfix", listen=f"unix:{postfix.queue / 'private' / 'sdps'}")
    try:
        data = message(subject="through postfix", body="hello from postfix\n")
        postfix.send("alice@example.com", RECIPIENTS, data)
        statuses = wait_for_statuses(postfix, RECIPIENTS)
        assert statuses == {RECIPIENTS[0]: "sent", RECIPIENTS[1]: "sent", RECIPIENTS[2]: "bounced"}, postfix.log()
        check_spool(sample, data)
    finally:
        postfix.stop()
        lmtp.stop()


def test_postfix_delivers_over_the_sdps_deliver_pipe(sample):
    # The pipe runs as an unprivileged user (the recipe's user=sdps): here
    # `nobody`, owning the test's spool and host database.
    user = "nobody"
    pwd.getpwnam(user)
    os.chmod(sample.root, 0o755)
    for dirpath, dirs, files in os.walk(sample.root / "var"):
        for name in [*dirs, *files]:
            shutil.chown(Path(dirpath) / name, user)
    shutil.chown(sample.root / "var", user)
    # As the package configures it: sdpsd runs as the user that owns the
    # spool and the host database (it refuses a hosts file another user owns).
    sample.write_config(top={"user": user})
    master = recipe("postfix-master-pipe").replace("user=sdps", f"user={user}") \
        .replace("/usr/bin/sdps", str(binary("sdps"))).replace("/etc/sdps/sdps.yaml", str(sample.config))
    postfix = Postfix(sample.root, recipe("postfix-main-pipe"), master)
    try:
        data = message(subject="through postfix", body="hello from postfix\n")
        postfix.send("alice@example.com", RECIPIENTS, data)
        statuses = wait_for_statuses(postfix, RECIPIENTS)
        assert statuses == {RECIPIENTS[0]: "sent", RECIPIENTS[1]: "sent", RECIPIENTS[2]: "bounced"}, postfix.log()
        check_spool(sample, data)
        # A bounce keeps its null sender (null_sender=)
        postfix.send("", ["fred@sample.demon.co.uk"], message(subject="a bounce", sender="MAILER-DAEMON@x.test"))
        wait_until(lambda: len(re.findall(r"to=<fred@sample.demon.co.uk>.*status=sent", postfix.log())) == 2,
                   timeout=6 * TIMEOUT, what="the bounce's delivery")
        listing = sample.spool_list("sample")
        assert "\t<>\t<fred@sample.demon.co.uk>" in listing, listing
        assert "MAILER-DAEMON>" not in listing
    finally:
        postfix.stop()
