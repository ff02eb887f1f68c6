"""SIGHUP re-reads sdps.yaml: the settings that can change live do (for
the sessions that begin afterwards; open ones keep theirs), each change is
logged, a change that needs a restart is logged as such, and a broken file
(a syntax error, a bad value, a key set twice, an unknown key) is refused
with its error while the configuration in force stays. systemd hears
RELOADING=1 and READY=1 around it."""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest

from sdps_harness import DOMAIN, TIMEOUT, Site, message, wait_until

PW = "Corr3ct-Horse-Battery"


class Manager:
    """A stand-in for systemd: the NOTIFY_SOCKET sdpsd reports to."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(TIMEOUT)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def close(self):
        self.sock.close()


class Reloading:
    """A site, its server under a NOTIFY_SOCKET, and SIGHUPs that wait for
    sdpsd to say it is ready again."""

    def __init__(self, tmp_path, **settings):
        self.settings = settings
        self.site = Site(**settings)
        self.site.add_host("sample", pop3=PW)
        self.manager = Manager(tmp_path / "notify")
        self.server = self.site.start(env={**os.environ, "NOTIFY_SOCKET": str(self.manager.path)})
        assert self.manager.next().startswith("READY=1")

    def rewrite(self, **changes) -> None:
        """The config as the harness writes it, with `changes` (top: ... merged)."""
        settings = {**self.settings, **changes}
        if "top" in self.settings and "top" in changes:
            settings["top"] = {**self.settings["top"], **changes["top"]}
        self.site.write_config(**settings)

    def hup(self) -> str:
        """SIGHUP; returns what it logged, once sdpsd is ready again."""
        before = len(self.server.log())
        self.server.send_signal(signal.SIGHUP)
        assert self.manager.next().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert self.manager.next().startswith("READY=1")
        return self.server.log()[before:]

    def close(self):
        self.site.close()
        self.manager.close()


@pytest.fixture
def reloading(tmp_path):
    made = []

    def make(**settings) -> Reloading:
        r = Reloading(tmp_path / str(len(made)) if made else tmp_path, **settings)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_banner_and_log_level_change_live_and_each_change_is_logged(reloading):
    r = reloading(top={"banner": "Old banner"})
    before = r.server.connect()
    assert "Old banner" in before.greeting
    r.rewrite(top={"banner": "New banner", "log_level": "debug"})
    said = r.hup()
    assert re.search(r"info sdpsd: reload: applied banner: Old banner -> New banner", said), said
    assert re.search(r"reload: applied log_level: \(default\) -> debug", said), said
    after = r.server.connect()
    assert "New banner" in after.greeting
    wait_until(lambda: re.search(r"debug sdpsd session \d+: connect from", r.server.log()), what="a debug line")
    # The session from before goes on.
    before.ok("USER sample")
    before.ok(f"PASS {PW}")
    before.quit()
    after.quit()


def test_an_unchanged_file_says_so(reloading):
    r = reloading()
    assert "reload: no setting changed" in r.hup()


def test_idle_timeout_applies_to_new_sessions_and_open_ones_keep_theirs(reloading):
    r = reloading()
    old = r.server.session("fred+sample", PW)
    r.rewrite(idle_timeout="1s")
    assert "reload: applied idle_timeout: 30m -> 1s" in r.hup()
    new = r.server.session("jim+sample", PW)
    new.expect_closed(within=TIMEOUT)
    wait_until(lambda: "end=\"idle autologout\"" in r.server.log(), what="the new session's autologout")
    assert old.stat() == (0, 0)  # still served: it keeps the 30m it began with
    old.quit()


def test_max_sessions_and_the_per_address_limit_change_live(reloading):
    r = reloading()
    r.rewrite(top={"max_sessions": 1})
    assert "reload: applied max_sessions: (default) -> 1" in r.hup()
    first = r.server.connect()
    refused = r.server.connect(greeting=False)
    assert refused.reply().startswith("-ERR [SYS/TEMP] too many connections")
    first.quit()
    r.rewrite(top={"max_sessions": 10, "max_sessions_per_address": 1})
    said = r.hup()
    assert "max_sessions: 1 -> 10" in said and "max_sessions_per_address: (default) -> 1" in said
    wait_until(lambda: ": logout " in r.server.log(), what="the first session's end")
    one = r.server.connect()
    other = r.server.connect(greeting=False)
    assert other.reply().startswith("-ERR [SYS/TEMP] too many connections from your address")
    one.quit()


def test_trusted_networks_and_the_plaintext_policy_change_live(reloading):
    r = reloading()
    r.server.session("sample", PW).quit()
    r.rewrite(top={"trusted_networks": "[10.0.0.0/8]"})
    assert "reload: applied trusted_networks: (default) -> [10.0.0.0/8]" in r.hup()
    c = r.server.connect()
    assert c.err("USER sample").startswith("-ERR [AUTH] plaintext login is not allowed here")
    c.quit()
    r.rewrite(top={"trusted_networks": "[10.0.0.0/8]", "plaintext_auth": "always"})
    assert "reload: applied plaintext_auth: (default) -> always" in r.hup()
    r.server.session("sample", PW).quit()


def test_auth_settings_and_its_per_address_limits_change_live(reloading):
    r = reloading()
    r.rewrite(module_settings={"auth": {"auth_cache_ttl": "0s"}}, top={"max_login_failures_per_address": 1})
    said = r.hup()
    assert "reload: applied module instance 'auth': auth_cache_ttl, max_login_failures_per_address" in said, said
    assert "auth cache: new settings" in said
    c = r.server.connect()
    c.ok("USER sample")
    c.err("PASS wrong")
    c.ok("USER sample")
    assert c.err(f"PASS {PW}").startswith("-ERR [AUTH] too many failed logins from your address")
    c.quit()


def test_what_needs_a_restart_is_logged_and_not_applied(reloading):
    r = reloading(top={"threads": 1})
    r.rewrite(top={"threads": 2, "customer_domain": "example.net", "banner": "Now"},
              module_settings={"finchley": {"locking": "false"}})
    said = r.hup()
    assert re.search(r"warning sdpsd: reload: threads changed: takes effect at the next restart", said), said
    assert "reload: customer_domain changed: takes effect at the next restart" in said
    assert ("reload: module instance 'finchley': locking changed: takes effect at the next restart "
            "(sdpsd --check checks the new settings)") in said
    assert "reload: applied banner" in said  # the rest applies
    assert "Now" in r.server.connect().greeting
    # Still not applied: the next SIGHUP names them again.
    assert "threads changed" in r.hup()
    # The chain itself: another module, or another order.
    chain_changed = r.site.config.read_text().replace("  - module: extensions\n", "")
    r.site.config.write_text(chain_changed)
    assert "reload: modules: the chain's instances or their order changed" in r.hup()


@pytest.mark.parametrize("breakage, error", [
    ("banner: [unclosed\n", r"sdps\.yaml:\d+: "),
    ("idle_timeout: soon\n", r"sdps\.yaml:\d+: 'idle_timeout' "),
    ("banner: Second\n", r"sdps\.yaml:\d+: 'banner' is set twice \(first at line \d+\)"),
    ("bannner: typo\n", r"sdps\.yaml:\d+: unknown top-level setting 'bannner'"),
])
def test_a_broken_file_is_refused_with_its_error_and_nothing_changes(reloading, breakage, error):
    r = reloading(top={"banner": "First"})
    text = r.site.config.read_text().replace("banner: First\n", "banner: Changed\nlog_level: debug\n")
    r.site.config.write_text(text + breakage)
    said = r.hup()
    assert re.search(r"error sdpsd: reload: " + error + r".*; keeping the configuration in force", said), said
    assert "applied" not in said
    c = r.server.connect()
    assert "First" in c.greeting
    c.quit()
    assert not re.search(r"debug sdpsd", r.server.log())


def test_a_module_setting_refused_by_its_module_refuses_the_whole_file(reloading):
    r = reloading(top={"banner": "First"})
    r.rewrite(top={"banner": "Second"}, module_settings={"auth": {"auth_cache_ttl": "30d"}})
    said = r.hup()
    assert re.search(r"error sdpsd: reload: sdps\.yaml:\d+: module instance 'auth': 'auth_cache_ttl' must be", said), said
    assert "First" in r.server.connect().greeting


def test_an_unknown_module_setting_is_refused_for_a_module_that_reloads(reloading):
    r = reloading()
    r.rewrite(module_settings={"auth": {"auth_cache_ttl": "5m", "auth_cache_tll": "5m"}})
    said = r.hup()
    assert re.search(r"reload: sdps\.yaml:\d+: module instance 'auth': unknown setting 'auth_cache_tll'", said), said


def test_the_host_database_is_still_reloaded_with_the_config(reloading):
    r = reloading()
    r.site.add_host("other", pop3=PW)
    r.site.deliver(f"fred@other.{DOMAIN}", data=message())
    said = r.hup()
    assert "loaded 2 host(s)" in said or "reload:" in said
    assert r.server.session("other", PW).stat()[0] == 1
