"""Real POP3 clients from Debian against a real sdpsd (DESIGN.md section 5;
CLIENTS.md says how each is driven): fetchmail in SDPS multidrop mode,
curl, mpop (pipelining), getmail6 (simple and SDPS multidrop) and Python's
poplib. A client that is not installed is skipped, saying so."""

import mailbox
import os
import poplib
import shutil
import subprocess

import pytest

from conftest import POP_PW
from sdps_harness import SLOW, TIMEOUT, crlf, message, returned

CLIENT_TIMEOUT = 60 * SLOW


def need(program):
    path = shutil.which(program)
    if not path:
        pytest.skip(f"{program} is not installed (scripts/install-deps --test installs it)")
    return path


def run(args, home, **kw):
    """Runs a client with its own HOME, bounded in time."""
    env = dict(os.environ, HOME=str(home), LC_ALL="C")
    result = subprocess.run(args, capture_output=True, timeout=CLIENT_TIMEOUT, env=env, **kw)
    return result


def show(result):
    return (f"exit {result.returncode}\nstdout: {result.stdout.decode('utf-8', 'replace')[-3000:]}\n"
            f"stderr: {result.stderr.decode('utf-8', 'replace')[-3000:]}")


@pytest.fixture
def home(sample):
    path = sample.root / "home"
    path.mkdir()
    return path


@pytest.fixture
def mail(sample):
    """Four messages for three users of sample, on both punts; by subject."""
    msgs = {}
    for subject, user, punt in (("for fred", "fred", "finchley"), ("for jim", "jim", "docklands"),
                                ("again fred", "fred", "docklands"), ("for sheila", "sheila", "finchley")):
        body = f"Hello {user}.\n.a line with a leading dot\n\nregards\n"
        # The To: header names nobody: only the envelope (*ENV) routes the message.
        data = message(subject=subject, body=body, to="undisclosed-recipients:;")
        sample.deliver(f"{user}@sample.demon.co.uk", data=data, punt=punt, sender="alice@example.com")
        msgs[subject] = data
    return msgs


def remaining(server):
    c = server.connect()
    c.login("sample", POP_PW)
    count = c.stat()[0]
    c.quit()
    return count


# ---------------------------------------------------------------- fetchmail

def fetchmail_rc(home, server, out, extra="", server_options=""):
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {server.port} protocol sdps {server_options} no dns "
        "localdomains sample.demon.co.uk:\n"
        f'  user "sample" there with password "{POP_PW}" is * here\n'
        f"  mda \"sh -c 'cat > {out}/%T.$$'\"\n"
        "  sslproto ''\n"
        f"{extra}")
    rc.chmod(0o600)
    return rc


def test_fetchmail_sdps_multidrop_delivers_by_envelope_recipient(sample, home, mail):
    fetchmail = need("fetchmail")
    server = sample.start()
    out = home / "out"
    out.mkdir()
    rc = fetchmail_rc(home, server, out)
    result = run([fetchmail, "-f", str(rc), "-d0", "--nosyslog", "-v", "-v"], home)
    assert result.returncode == 0, show(result)
    files = sorted(out.iterdir())
    by_user = {}
    for path in files:
        # OUT/%T.PID, where %T is the envelope recipient (fred or fred@sample.demon.co.uk)
        recipient = path.name.rsplit(".", 1)[0]
        assert recipient.split("@")[0] == recipient or recipient.endswith("@sample.demon.co.uk"), path.name
        by_user.setdefault(recipient.split("@")[0], []).append(path.read_bytes())
    assert sorted(by_user) == ["fred", "jim", "sheila"], f"files: {[p.name for p in files]}\n{show(result)}"
    assert len(by_user["fred"]) == 2 and len(by_user["jim"]) == 1 and len(by_user["sheila"]) == 1
    expected = {"fred": ["for fred", "again fred"], "jim": ["for jim"], "sheila": ["for sheila"]}
    for user, contents in by_user.items():
        got_subjects = set()
        for data in contents:
            text = crlf(data)
            subject = next(line[9:].decode() for line in text.split(b"\r\n") if line.startswith(b"Subject: "))
            got_subjects.add(subject)
            original = crlf(mail[subject])
            assert original.split(b"\r\n\r\n", 1)[1] in text, f"body of {subject!r} altered"
            assert b"\r\n.a line with a leading dot\r\n" in text
        assert got_subjects == set(expected[user])
    assert "*ENV" in result.stderr.decode("utf-8", "replace") + result.stdout.decode("utf-8", "replace")
    assert remaining(server) == 0, "fetchmail (no keep) should have deleted what it delivered"


def test_fetchmail_keep_uidl_fetches_only_new_mail(sample, home, mail):
    fetchmail = need("fetchmail")
    server = sample.start()
    out = home / "out"
    out.mkdir()
    rc = fetchmail_rc(home, server, out, "  keep\n", server_options="uidl")
    ids = home / "fetchids"
    first = run([fetchmail, "-f", str(rc), "-d0", "--nosyslog", "-i", str(ids)], home)
    assert first.returncode == 0, show(first)
    assert len(list(out.iterdir())) == 4
    assert remaining(server) == 4
    second = run([fetchmail, "-f", str(rc), "-d0", "--nosyslog", "-i", str(ids)], home)
    assert second.returncode == 1, "fetchmail exits 1 when there is no new mail\n" + show(second)
    sample.deliver("jim@sample.demon.co.uk", data=message(subject="new for jim"))
    third = run([fetchmail, "-f", str(rc), "-d0", "--nosyslog", "-i", str(ids)], home)
    assert third.returncode == 0, show(third)
    assert len(list(out.iterdir())) == 5


def test_fetchmail_reports_a_locked_mailbox_as_busy(sample, home, mail):
    fetchmail = need("fetchmail")
    server = sample.start()
    out = home / "out"
    out.mkdir()
    holder = server.connect()
    holder.login("sample", POP_PW)
    rc = fetchmail_rc(home, server, out)
    result = run([fetchmail, "-f", str(rc), "-d0", "--nosyslog"], home)
    # fetchmail's PS_LOCKBUSY is 9; an authentication failure would be 3.
    assert result.returncode == 9, show(result)
    assert list(out.iterdir()) == []
    holder.quit()


# ---------------------------------------------------------------- curl

def curl(server, *args, path="", home=None):
    program = need("curl")
    return subprocess.run([program, "-s", "-S", "--max-time", str(int(CLIENT_TIMEOUT)), "--user",
                           f"sample:{POP_PW}", *args, f"pop3://127.0.0.1:{server.port}/{path}"],
                          capture_output=True, timeout=CLIENT_TIMEOUT + 5)


def test_curl_list_retrieve_uidl_top_dele(sample, mail):
    need("curl")
    server = sample.start()
    listing = curl(server)
    assert listing.returncode == 0, show(listing)
    sizes = [line.split() for line in listing.stdout.decode().splitlines()]
    assert [n for n, _ in sizes] == ["1", "2", "3", "4"]
    msgs = list(mail.values())
    for n in (1, 2, 3, 4):
        got = curl(server, path=str(n))
        assert got.returncode == 0, show(got)
        assert got.stdout == returned(msgs[n - 1]), f"curl RETR {n} differs"
        assert int(sizes[n - 1][1]) == len(got.stdout)
    uidl = curl(server, "-X", "UIDL")
    assert uidl.returncode == 0, show(uidl)
    uids = [line.split() for line in uidl.stdout.decode().splitlines()]
    assert [n for n, _ in uids] == ["1", "2", "3", "4"] and len({u for _, u in uids}) == 4
    top = curl(server, "-X", "TOP 1 0")
    assert top.returncode == 0, show(top)
    assert top.stdout == returned(msgs[0]).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    dele = curl(server, "-X", "DELE", "-I", path="1")
    assert dele.returncode == 0, show(dele)
    after = curl(server, "-X", "UIDL")
    assert [line.split()[1] for line in after.stdout.decode().splitlines()] == [u for _, u in uids[1:]]


def test_curl_wrong_password_fails(sample, mail):
    need("curl")
    server = sample.start()
    program = shutil.which("curl")
    result = subprocess.run([program, "-s", "--user", "sample:wrong", f"pop3://127.0.0.1:{server.port}/"],
                            capture_output=True, timeout=CLIENT_TIMEOUT)
    assert result.returncode == 67, show(result)       # CURLE_LOGIN_DENIED


# ---------------------------------------------------------------- mpop

def mpop_args(server, home, mbox, *extra):
    return [need("mpop"), "-C", str(home / "mpoprc"), "--host=127.0.0.1", f"--port={server.port}", "--tls=off",
            "--auth=user", "--user=sample", f"--passwordeval=echo '{POP_PW}'", f"--delivery=mbox,{mbox}",
            f"--uidls-file={home / 'uidls'}", *extra]


def mbox_subjects(path):
    box = mailbox.mbox(str(path), create=False)
    try:
        return [m["Subject"] for m in box]
    finally:
        box.close()


def test_mpop_pipelines_and_retrieves_into_an_mbox(sample, home, mail):
    need("mpop")
    server = sample.start()
    (home / "mpoprc").write_text("")
    (home / "mpoprc").chmod(0o600)
    mbox = home / "out.mbox"
    mbox.touch()
    result = run(mpop_args(server, home, mbox, "--keep=off", "--only-new=off"), home)
    assert result.returncode == 0, show(result)
    assert sorted(mbox_subjects(mbox)) == sorted(mail), show(result)
    box = mailbox.mbox(str(mbox), create=False)
    for m in box:
        body = m.get_payload(decode=False)
        assert ".a line with a leading dot" in body
    box.close()
    assert remaining(server) == 0


def test_mpop_only_new_uses_uidls(sample, home, mail):
    need("mpop")
    server = sample.start()
    (home / "mpoprc").write_text("")
    (home / "mpoprc").chmod(0o600)
    mbox = home / "out.mbox"
    mbox.touch()
    first = run(mpop_args(server, home, mbox, "--keep=on", "--only-new=on"), home)
    assert first.returncode == 0, show(first)
    assert len(mbox_subjects(mbox)) == 4
    second = run(mpop_args(server, home, mbox, "--keep=on", "--only-new=on"), home)
    assert second.returncode == 0, show(second)
    assert len(mbox_subjects(mbox)) == 4, "mpop fetched again what its UIDL file says it has"
    assert remaining(server) == 4


# ---------------------------------------------------------------- getmail6

def getmail_rc(home, server, out, retriever, name_pattern):
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        f"type = {retriever}\n"
        "server = 127.0.0.1\n"
        f"port = {server.port}\n"
        "username = sample\n"
        f"password = {POP_PW}\n"
        "\n[destination]\n"
        "type = MDA_external\n"
        "path = /bin/sh\n"
        f"arguments = (\"-c\", \"cat > {out}/{name_pattern}.$$\")\n"
        "allow_root_commands = true\n"
        "\n[options]\n"
        "delete = true\n"
        "read_all = true\n"
        "verbose = 2\n")
    return rc


def test_getmail_simple_pop3_with_delete(sample, home, mail):
    getmail = need("getmail")
    server = sample.start()
    out = home / "out"
    out.mkdir()
    gdir = home / "getmaildir"
    gdir.mkdir()
    rc = getmail_rc(home, server, out, "SimplePOP3Retriever", "msg")
    result = run([getmail, f"--getmaildir={gdir}", f"--rcfile={rc}"], home)
    assert result.returncode == 0, show(result)
    files = list(out.iterdir())
    assert len(files) == 4, show(result)
    got = sorted(next(line[9:] for line in crlf(p.read_bytes()).decode("latin-1").split("\r\n")
                      if line.startswith("Subject: ")) for p in files)
    assert got == sorted(mail)
    assert remaining(server) == 0


# getmail6's MultidropSDPSRetriever (6.18) is not tested: under Python 3 it
# keeps the *ENV lines as bytes and then fails in its own get_msginfo()
# ("a bytes-like object is required, not 'str'") before delivering anything.


# ---------------------------------------------------------------- poplib

def test_poplib_full_session(sample, mail):
    server = sample.start()
    msgs = list(mail.values())
    pop = poplib.POP3("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        assert pop.getwelcome().startswith(b"+OK")
        caps = pop.capa()
        assert "UIDL" in caps and "TOP" in caps and "USER" in caps
        pop.user("sample")
        pop.pass_(POP_PW)
        count, size = pop.stat()
        assert count == 4 and size == sum(len(returned(m)) for m in msgs)
        _resp, listing, _octets = pop.list()
        assert [int(x.split()[0]) for x in listing] == [1, 2, 3, 4]
        _resp, uids, _octets = pop.uidl()
        assert len({x.split()[1] for x in uids}) == 4
        for n in (1, 2, 3, 4):
            _resp, lines, octets = pop.retr(n)
            assert b"".join(line + b"\r\n" for line in lines) == returned(msgs[n - 1])
        _resp, lines, _octets = pop.top(2, 1)
        assert lines[0] == b"Return-Path: <alice@example.com>"
        assert pop.noop().startswith(b"+OK")
        pop.dele(1)
        pop.dele(2)
        assert pop.stat()[0] == 2
        pop.rset()
        assert pop.stat()[0] == 4
        pop.dele(4)
        with pytest.raises(poplib.error_proto):
            pop.retr(4)
        with pytest.raises(poplib.error_proto):
            pop.retr(9)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    assert remaining(server) == 3


def test_poplib_wrong_password_then_right(sample, mail):
    server = sample.start()
    pop = poplib.POP3("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        pop.user("sample")
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
        pop.user("fred@sample.demon.co.uk")
        pop.pass_(POP_PW)
        assert pop.stat()[0] == 2
        pop.quit()
    finally:
        pop.close()
