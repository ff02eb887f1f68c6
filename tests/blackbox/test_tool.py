"""The admin tool's command line (issue 21.5) and its side of issues 18
and 19: one parser, `--help` on every subcommand without a config, usage
errors, one listing format, max_message_size in `deliver`, and symlinked
host folders refused by every writer and by sdpsd."""

import os
import re
import subprocess

import pytest

from sdps_harness import EX_OK, EX_TEMPFAIL, SOURCE_DIR, TIMEOUT, binary, message
from smtp_harness import LineClient, Lmtp, closed_port

EX_USAGE, EX_DATAERR = 64, 65

# Every subcommand DESIGN.md and sdps(1) name (the control-socket ones
# join this list when they come).
SUBCOMMANDS = ["host add", "host passwd", "host dialup", "host del", "host list", "host init", "host import",
               "host export", "deliver", "spool list",
               "flush", "expire", "lmtp", "who", "kick", "status"]
GROUPS = ["host", "spool"]


def tool(*args: str, input: bytes = b"") -> subprocess.CompletedProcess:
    """`sdps ARGS...` without -c."""
    return subprocess.run([str(binary("sdps")), *args], input=input, capture_output=True, timeout=6 * TIMEOUT)


def test_sdps_help_lists_every_subcommand_and_each_has_its_help_without_a_config():
    result = tool("--help")
    assert result.returncode == EX_OK and result.stderr == b""
    text = result.stdout.decode()
    listed = {" ".join(line.split()[:2]) if line.split()[0] in GROUPS else line.split()[0]
              for line in text.split("Commands:\n", 1)[1].split("Options:", 1)[0].splitlines()
              if line.startswith("  ") and not line.startswith("   ")}
    assert listed == set(SUBCOMMANDS), text
    for sub in SUBCOMMANDS + GROUPS:
        for flag in ("--help", "-h"):
            result = tool(*sub.split(), flag)
            assert result.returncode == EX_OK, (sub, result.stderr)
            assert result.stdout.startswith(f"usage: sdps -c FILE {sub}".encode()), (sub, result.stdout[:200])
            assert result.stderr == b"", sub
    assert tool("--version").returncode == EX_OK


def test_sdps_1_names_every_subcommand_option_and_exit_status():
    page = (SOURCE_DIR / "man" / "sdps.1").read_text()
    for sub in SUBCOMMANDS:
        assert re.search(r"\.Cm " + re.escape(sub) + r"\b", page), sub
        usage = tool(*sub.split(), "--help").stdout.decode()
        for option in re.findall(r"^  (?:-\w \[ )?(--[\w-]+)", usage, re.M):
            if option != "--help":
                assert f"Fl {option[1:]}" in page or f"Fl -{option[2:]}" in page, (sub, option)
    for status in ("64", "65", "66", "67", "69", "74", "75", "77", "78"):
        assert re.search(r"\b" + status + r"\b", page.split(".Sh EXIT STATUS", 1)[1].split(".Sh", 1)[0]), status


@pytest.mark.parametrize("args", [
    ["deliver", "--bogus", "-f", "a@b", "x@sample.demon.co.uk"],
    ["deliver", "x@sample.demon.co.uk"],
    ["flush"],
    ["flush", "sample", "--max-messages", "-1"],
    ["expire"],
    ["expire", "--older-than", "soon"],
    ["expire", "--read", "1d", "--older-than", "1d"],
    ["lmtp", "--listen", "127.0.0.1:0", "--max-connections", "0"],
    ["lmtp", "--listen", "unix:"],
    ["lmtp", "--listen", "127.0.0.1:0", "--socket-mode", "999"],
    ["host"],
    ["host", "frob"],
    ["host", "add"],
    ["spool", "list"],
])
def test_bad_arguments_exit_64_with_one_line_then_the_usage(site, args):
    result = site.sdps(*args, expect=EX_USAGE)
    err = result.stderr.decode().splitlines()
    assert err[0].startswith("sdps: ") and not err[0].startswith("sdps: usage"), err
    assert err[1].startswith("usage: sdps -c FILE "), err


def test_host_list_separates_its_fields_with_tabs(sample):
    sample.add_host("nopw")
    assert sample.sdps("host", "list").stdout.decode().splitlines() == [
        "nopw\t-\tnone", "sample\t127.0.0.2\tdialup,pop3"]


@pytest.mark.site_options(top={"max_message_size": 2048})
def test_deliver_refuses_a_message_over_max_message_size_with_65(sample):
    big = message(subject="big") + b"y" * 3000 + b"\n"
    result = sample.deliver("fred@sample.demon.co.uk", "jim@sample.demon.co.uk", data=big, expect=EX_DATAERR)
    assert b"max_message_size (2048 octets)" in result.stderr
    assert sample.spool_list("sample") == "", "nothing stored"
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="small"))
    assert len(sample.spool_list("sample").splitlines()) == 1


def link_host(site, host: str, to_host: str = "sample") -> list:
    """PUNT/HOST -> (absolute) finchley/TO_HOST in every punt."""
    target = (site.punt_dir("finchley") / to_host).resolve()
    links = []
    for punt in ("finchley", "docklands"):
        site.punt_dir(punt).mkdir(parents=True, exist_ok=True)
        link = site.punt_dir(punt) / host
        link.symlink_to(target, target_is_directory=True)
        links.append(link)
    return links


def test_a_symlinked_host_folder_is_refused_by_every_writer_and_by_sdpsd(sample):
    sample.add_host("evil", pop3="evil pw")
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="sample's own"), punt="finchley")
    before = sample.spool_list("sample")
    link = link_host(sample, "evil")[1]

    # deliver --punt docklands -f a@b u@evil: it used to land in sample's folder.
    result = sample.deliver("u@evil.demon.co.uk", data=message(subject="through the link"), punt="docklands",
                            expect=EX_TEMPFAIL)
    assert f"{link} is a symbolic link".encode() in result.stderr, result.stderr
    sample.deliver("u@evil.demon.co.uk", data=message(subject="any punt"), expect=EX_TEMPFAIL)
    assert sample.spool_list("sample") == before, "nothing reached sample's folder"

    lmtp = Lmtp(sample)
    try:
        c = LineClient(lmtp.port)
        c.reply()
        c.cmd("LHLO mta.test")
        c.cmd("MAIL FROM:<a@example.com>")
        assert c.cmd("RCPT TO:<u@evil.demon.co.uk>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: over lmtp\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 451
        c.close()
    finally:
        lmtp.stop()
    assert "evil is a symbolic link" in lmtp.log()
    assert sample.spool_list("sample") == before

    result = sample.sdps("flush", "evil", "--to", f"127.0.0.1:{closed_port()}", expect=EX_TEMPFAIL)
    assert b"evil is a symbolic link" in result.stderr
    result = sample.sdps("expire", "--older-than", "1ms", "evil", expect=EX_TEMPFAIL)
    assert b"evil is a symbolic link" in result.stderr
    assert sample.spool_list("sample") == before

    server = sample.start()
    c = server.connect()
    c.ok("USER evil")
    assert c.cmd("PASS evil pw").startswith("-ERR")
    c.quit()
    assert "evil is a symbolic link" in server.log() and "Not a directory" not in server.log(), server.log()


def test_a_symlinked_tmp_folder_is_refused(sample):
    sample.add_host("other", pop3="other pw")
    sample.deliver("fred@sample.demon.co.uk", data=message(subject="sample's own"), punt="finchley")
    folder = sample.punt_dir("docklands") / "other"
    folder.mkdir(parents=True)
    (folder / "tmp").symlink_to((sample.punt_dir("finchley") / "sample").resolve(), target_is_directory=True)
    before = sorted(os.listdir(sample.punt_dir("finchley") / "sample"))
    result = sample.deliver("u@other.demon.co.uk", data=message(subject="via tmp"), punt="docklands",
                            expect=EX_TEMPFAIL)
    assert b"other/tmp is a symbolic link" in result.stderr, result.stderr
    assert sorted(os.listdir(sample.punt_dir("finchley") / "sample")) == before, "nothing written through tmp/"
