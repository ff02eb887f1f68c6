"""Running sdps as a service: --version, the logout line, JSON logs,
metrics, no password in any log, the configured user's ownership checks,
and an installed prefix (GNUInstallDirs, DESTDIR, relocation, an
out-of-tree module built with find_package(sdps))."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sdps_harness import (BUILD_DIR, DOMAIN, SANITIZE, SOURCE_DIR, TIMEOUT, Site, binary, message, returned,
                          wait_until)

PW = "Corr3ct-Horse-Battery"
BAD_PW = "Wr0ng-Staple-Zebra"


def logout_lines(server) -> list[dict[str, str]]:
    """The fields of every text-format logout line so far."""
    out = []
    for line in server.log().splitlines():
        m = re.search(r": logout (.*)$", line)
        if m:
            out.append({k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(1))})
    return out


def wait_logouts(server, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(logout_lines(server)) >= count, what=f"{count} logout line(s)")
    return logout_lines(server)


@pytest.fixture
def site():
    with Site() as s:
        s.add_host("sample", pop3=PW)
        yield s


# ---------------------------------------------------------------- --version

@pytest.mark.parametrize("program", ["sdpsd", "sdps"])
def test_version_names_version_commit_abi_and_libraries(program):
    result = subprocess.run([str(binary(program)), "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.match(rf"{program} \d+\.\d+\.\d+ \(commit [0-9a-f]{{7,}}(-dirty)?|unknown\)", text), text
    abi = re.search(r"#define SDPS_ABI_VERSION (\d+)", (SOURCE_DIR / "include/sdps/abi.hpp").read_text()).group(1)
    assert f"module ABI {abi}" in text
    assert re.search(r"Boost 1\.\d+\.\d+", text) and re.search(r"yaml-cpp \d+\.\d+", text)
    assert re.search(r"libsodium \d+\.\d+\.\d+", text)


# ---------------------------------------------------------------- the logout line

def test_logout_line_after_quit_counts_commands(site):
    first, second = message(subject="one", body="a\n" * 50), message(subject="two")
    site.deliver(f"fred@sample.{DOMAIN}", data=first, punt="finchley")
    site.deliver(f"fred@sample.{DOMAIN}", data=second, punt="finchley")
    server = site.start()
    c = server.session("sample", PW)
    retrieved = c.retr(1)
    c.top(2, 0)
    c.ok("DELE 2")
    c.err("RETR 9")
    c.quit()
    [line] = wait_logouts(server, 1)
    assert line["login"] == "sample" and line["host"] == "sample" and line["user"] == "-"
    assert line["rip"] == "127.0.0.1" and line["tls"] == "no"
    assert line["retr"] == f"1/{len(retrieved)}"
    assert line["top"].startswith("1/") and line["dele"] == "1"
    assert line["end"] == "QUIT"
    assert re.fullmatch(r"\d+\.\d{3}s", line["duration"])
    assert " info " in [l for l in server.log().splitlines() if ": logout " in l][0]


def test_logout_line_after_a_dropped_connection(site):
    site.deliver(f"fred@sample.{DOMAIN}", data=message())
    server = site.start()
    c = server.session(f"fred+sample", PW)
    c.ok("DELE 1")
    c.abort()
    [line] = wait_logouts(server, 1)
    assert line["login"] == "fred+sample" and line["user"] == "fred" and line["host"] == "sample"
    assert line["dele"] == "1" and line["end"] == "client gone"
    assert "1 message" in site.spool_list("sample") or site.spool_list("sample").count("\n") >= 1


def test_logout_line_after_the_idle_timeout():
    with Site(idle_timeout="1s") as site:
        site.add_host("sample", pop3=PW)
        server = site.start()
        c = server.session("sample", PW)
        [line] = wait_logouts(server, 1)
        assert line["end"] == "idle autologout" and line["login"] == "sample"
        c.close()


def test_logout_line_at_shutdown_and_before_login(site):
    server = site.start()
    anonymous = server.connect()
    anonymous.ok("USER sample")
    c = server.session("sample", PW)
    server.stop()
    lines = logout_lines(server)
    assert sorted(l["end"] for l in lines) == ["server shutdown", "server shutdown"]
    assert sorted(l["login"] for l in lines) == ["-", "sample"]
    c.close()
    anonymous.close()


def test_login_failure_keeps_its_reason(site):
    server = site.start()
    c = server.connect()
    c.ok("USER sample")
    c.err(f"PASS {BAD_PW}")
    c.ok("USER nosuchhost")
    c.err(f"PASS {BAD_PW}")
    c.quit()
    wait_logouts(server, 1)
    log = server.log()
    assert re.search(r"login failed: host sample from 127\.0\.0\.1.*: wrong password", log)
    assert re.search(r"login failed: host nosuchhost from 127\.0\.0\.1.*: unknown host", log)


def test_json_log_lines():
    with Site(top={"log_format": "json"}) as site:
        site.add_host("sample", pop3=PW)
        server = site.start()
        c = server.session("sample", PW)
        c.quit()
        wait_until(lambda: '"event":"logout"' in server.log(), what="a JSON logout line")
        events = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        assert events and all({"time", "level", "source"} <= set(e) for e in events)
        assert len(events) == len([l for l in server.log().splitlines() if l.strip()]), server.log()
        [logout] = [e for e in events if e.get("event") == "logout"]
        assert logout["level"] == "info" and logout["login"] == "sample" and logout["end"] == "QUIT"
        assert logout["tls"] == "no"
        # Numbers as numbers: the counters, and the duration in seconds.
        assert logout["retr"] == 0 and logout["retr_octets"] == 0 and logout["dele"] == 0
        assert isinstance(logout["duration"], float) and logout["duration"] >= 0


def test_no_password_in_any_log():
    with Site(top={"log_level": "debug"}) as site:
        result = site.sdps("host", "add", "sample")
        passwd = site.sdps("host", "passwd", "sample", "--pop3", input=PW + "\n")
        server = site.start()
        c = server.connect()
        c.ok("USER sample")
        c.err(f"PASS {BAD_PW}")
        c.ok("USER sample")
        c.ok(f"PASS {PW}")
        c.quit()
        wait_logouts(server, 1)
        logs = [server.log(), result.stderr.decode(), passwd.stderr.decode(), passwd.stdout.decode()]
        hosts = (site.root / "var" / "hosts").read_text()
        for text in logs + [hosts]:
            assert PW not in text and BAD_PW not in text


# ---------------------------------------------------------------- metrics

def scrape(server, path="/metrics") -> tuple[int, str]:
    m = re.search(r"metrics on http://([0-9.]+):(\d+)/metrics", server.log())
    assert m, server.log()
    try:
        with urllib.request.urlopen(f"http://{m.group(1)}:{m.group(2)}{path}", timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def sample(text: str, series: str) -> float:
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert m, f"no {series} in\n{text}"
    return float(m.group(1))


def test_metrics_scrape_after_a_session():
    with Site(top={"metrics_listen": "127.0.0.1:0"}) as site:
        site.add_host("sample", pop3=PW)
        site.deliver(f"fred@sample.{DOMAIN}", data=message(), punt="docklands")
        server = site.start()
        bad = server.connect()
        bad.ok("USER sample")
        bad.err(f"PASS {BAD_PW}")
        bad.quit()
        c = server.session("sample", PW)
        c.retr(1)
        c.quit()
        wait_logouts(server, 2)
        status, text = scrape(server)
        assert status == 200
        assert sample(text, 'sdps_sessions_total{role="embedded"}') == 2
        assert sample(text, 'sdps_sessions_current{role="embedded"}') == 0
        assert sample(text, 'sdps_logins_total{result="ok"}') == 1
        assert sample(text, 'sdps_logins_total{result="failed"}') == 1
        assert sample(text, 'sdps_login_failures_total{reason="wrong password"}') == 1
        assert sample(text, 'sdps_commands_total{verb="RETR"}') == 1
        assert sample(text, 'sdps_commands_total{verb="QUIT"}') == 2
        assert sample(text, "sdps_sent_bytes_total") > 100
        assert sample(text, 'sdps_punt_up{punt="finchley"}') == 1
        assert sample(text, 'sdps_punt_up{punt="docklands"}') == 1
        assert sample(text, 'sdps_session_ends_total{end="QUIT"}') == 2
        # Neither password had passed a check before: both missed the cache.
        assert sample(text, "sdps_auth_cache_hits_total") == 0
        assert sample(text, "sdps_auth_cache_misses_total") == 2
        assert "# TYPE sdps_module_timeouts_total counter" in text
        # A family comes with the module that feeds it: no back end here.
        assert "sdps_backend_request_seconds" not in text
        assert re.search(r'^sdps_build_info\{version="[^"]+",commit="[^"]+",abi="\d+"\} 1$', text, re.M)
        assert PW not in text
        assert scrape(server, "/other")[0] == 404


def test_every_refused_login_is_counted_with_its_reason():
    """The logins the per-address limit refuses count as failures too,
    under a reason of their own."""
    with Site(top={"metrics_listen": "127.0.0.1:0", "max_login_failures_per_address": 2},
              fail_delay="50ms") as site:
        site.add_host("sample", pop3=PW)
        server = site.start()
        c = server.connect()
        for _ in range(2):
            c.ok("USER sample")
            c.err(f"PASS {BAD_PW}")
        for _ in range(3):
            c.ok("USER sample")
            assert c.err(f"PASS {PW}").startswith("-ERR [AUTH] too many failed logins")
        c.quit()
        wait_logouts(server, 1)
        _, text = scrape(server)
        assert sample(text, 'sdps_login_failures_total{reason="wrong password"}') == 2
        assert sample(text, 'sdps_login_failures_total{reason="too many failures"}') == 3
        assert sample(text, 'sdps_logins_total{result="failed"}') == 5
        assert sample(text, 'sdps_logins_total{result="ok"}') == 0


def test_unknown_verbs_do_not_grow_the_scrape():
    with Site(top={"metrics_listen": "127.0.0.1:0"}) as site:
        server = site.start()
        c = server.connect()
        for i in range(3):
            c.err(f"XYZZY{i}")
        c.quit()
        wait_logouts(server, 1)
        _, text = scrape(server)
        assert "XYZZY" not in text
        assert sample(text, 'sdps_commands_total{verb="OTHER"}') == 3


def sdpsd_check(site: Site) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True, text=True,
                          timeout=6 * TIMEOUT)


@pytest.mark.parametrize("where", ["0.0.0.0:9110", '"[::]:9110"'])
def test_a_metrics_endpoint_on_every_address_is_warned_about(where):
    # --check binds nothing: the warning comes from the config alone.
    with Site(top={"metrics_listen": where}) as site:
        result = sdpsd_check(site)
        assert result.returncode == 0, result.stderr
        assert re.search(r"sdpsd: warning: metrics_listen \S+ is not a loopback address: .*without authentication"
                         r".*only loopback clients are answered \(others get 403\).*metrics_allow", result.stderr), \
            result.stderr


def test_a_loopback_metrics_endpoint_is_not_warned_about():
    with Site(top={"metrics_listen": "127.0.0.1:0"}) as site:
        result = sdpsd_check(site)
        assert result.returncode == 0, result.stderr
        assert "metrics" not in result.stderr, result.stderr
        server = site.start()
        assert scrape(server)[0] == 200
        assert "not a loopback address" not in server.log()


def test_metrics_allow_refuses_other_clients_with_403_and_changes_at_sighup():
    with Site(top={"metrics_listen": "127.0.0.1:0", "metrics_allow": "[10.1.0.0/16]"}) as site:
        server = site.start()
        assert scrape(server) == (403, "")
        assert scrape(server)[0] == 403
        # One warning for the list, not one per scrape.
        assert len(re.findall(r"warning sdpsd: metrics: refused 127\.0\.0\.1: not in metrics_allow",
                              server.log())) == 1, server.log()
        site.write_config(top={"metrics_listen": "127.0.0.1:0", "metrics_allow": "[10.1.0.0/16, 127.0.0.1]"})
        server.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload: applied metrics_allow" in server.log(), what="the reload")
        status, text = scrape(server)
        assert status == 200 and "sdps_build_info" in text


def test_a_malformed_metrics_allow_entry_stops_sdpsd_with_file_and_line():
    with Site(top={"metrics_listen": "127.0.0.1:0", "metrics_allow": "[10.1.0.0/16, prometheus.example]"}) as site:
        result = subprocess.run([str(binary("sdpsd")), "-c", str(site.config)], capture_output=True, text=True,
                                timeout=6 * TIMEOUT)
        assert result.returncode == 78, result.stderr
        line = next(i for i, text in enumerate(site.config.read_text().splitlines(), 1)
                    if text.startswith("metrics_allow:"))
        assert f"sdps.yaml:{line}: 'metrics_allow': 'prometheus.example' is not an address" in result.stderr, \
            result.stderr


# ---------------------------------------------------------------- ownership

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (switching users)")


def owned_site(user: str) -> Site:
    site = Site(top={"user": user})
    # The temporary folder is root's 0700: let the user in, as /var/lib is.
    os.chmod(site.root, 0o755)
    return site


@needs_root
def test_sdps_as_root_refuses_when_the_user_cannot_write_and_says_what_to_run():
    with owned_site("nobody") as site:
        result = site.sdps("host", "add", "sample", expect=None)
        assert result.returncode != 0
        err = result.stderr.decode()
        assert "nobody" in err and "chown" in err, err
        assert not (site.root / "var" / "hosts").exists()


@needs_root
def test_sdps_as_root_writes_files_owned_by_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    with owned_site("nobody") as site:
        for path in [site.root / "var", *[(site.root / "var" / "spool" / p) for p in site.punts]]:
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        os.chown(site.root / "var" / "spool", nobody.pw_uid, nobody.pw_gid)
        site.add_host("sample", pop3=PW)
        assert (site.root / "var" / "hosts").stat().st_uid == nobody.pw_uid
        site.deliver(f"fred@sample.{DOMAIN}", data=message(), punt="finchley")
        files = [Path(d) / f for d, _, fs in os.walk(site.root / "var" / "spool") for f in fs]
        assert files and all(f.stat().st_uid == nobody.pw_uid for f in files)
        check = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                               text=True, timeout=6 * TIMEOUT)
        assert check.returncode == 0, check.stderr
        # sdpsd starts as root, switches to nobody and serves the mail.
        server = site.start()
        wait_until(lambda: "running as user nobody" in server.log(), what="the switch to nobody")
        c = server.session("sample", PW)
        assert c.stat()[0] == 1
        c.quit()


@needs_root
def test_sdpsd_says_when_the_user_cannot_read_the_hosts_file_or_the_spool():
    nobody = pwd.getpwnam("nobody")
    with owned_site("nobody") as site:
        (site.root / "var" / "hosts").write_text("")
        os.chmod(site.root / "var" / "hosts", 0o600)  # root's, unreadable to nobody
        (site.root / "var" / "spool" / "finchley").mkdir()
        os.chown(site.root / "var" / "spool" / "finchley", nobody.pw_uid, nobody.pw_gid)
        (site.root / "var" / "spool" / "docklands").mkdir(mode=0o755)  # root's: not writable
        check = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                               text=True, timeout=6 * TIMEOUT)
        assert check.returncode == 78, check.stdout + check.stderr
        assert re.search(r"user 'nobody' cannot read the host database .*hosts \(root:root 0600\)", check.stderr)
        assert re.search(r"user 'nobody' cannot write .*docklands .*chown -R nobody: ", check.stderr)
        assert "finchley" not in check.stderr
        server = site.start()
        # A starting server says so too (each line names the instance whose check found it).
        assert re.search(r" error sdpsd: auth: user 'nobody' cannot read the host database", server.log())


# ---------------------------------------------------------------- installed layouts

def run(*args, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 60 * TIMEOUT)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def cmake_var(name: str) -> str:
    for line in (BUILD_DIR / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split("=", 1)[1]
    return ""


def test_install_for_prefix_usr_follows_debian_conventions(tmp_path):
    stage = tmp_path / "stage"
    run("cmake", "--install", BUILD_DIR, "--prefix", "/usr", env={**os.environ, "DESTDIR": str(stage)})
    multiarch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True,
                               text=True).stdout.strip() or "x86_64-linux-gnu"
    libdir = stage / "usr/lib" / multiarch
    if not libdir.exists():
        libdir = stage / "usr/lib"
    for path in ["usr/sbin/sdpsd", "usr/bin/sdps", "etc/sdps/sdps.yaml", "etc/sdps/frontend.yaml",
                 "usr/include/sdps/module.hpp", "usr/include/sdps/metrics.hpp",
                 "usr/share/man/man8/sdpsd.8", "usr/share/man/man1/sdps.1", "usr/share/man/man5/sdps.yaml.5",
                 "lib/systemd/system/sdpsd.service", "lib/systemd/system/sdpsd@.service"]:
        assert (stage / path).exists(), path
    assert not (stage / "usr/etc").exists()
    assert (libdir / "sdps/modules/auth.so").exists()
    assert (libdir / "cmake/sdps/sdpsConfig.cmake").exists()
    config = (stage / "etc/sdps/sdps.yaml").read_text()
    assert "hosts: /var/lib/sdps/hosts" in config and "finchley: /var/spool/sdps/finchley" in config
    unit = (stage / "lib/systemd/system/sdpsd@.service").read_text()
    assert "ExecStart=/usr/sbin/sdpsd -c /etc/sdps/%i.yaml" in unit
    # The staged binary finds the staged modules, relative to itself.
    with Site() as site:
        result = run(stage / "usr/sbin/sdpsd", "-c", site.config, "--check")
        assert "configuration OK" in result.stdout


def test_installed_custom_prefix_serves_a_session_and_can_be_moved(tmp_path):
    prefix = tmp_path / "opt" / "sdps"
    run("cmake", "--install", BUILD_DIR, "--prefix", prefix)
    config = prefix / "etc/sdps/sdps.yaml"
    text = config.read_text()
    assert f"hosts: {prefix}/var/lib/sdps/hosts" in text
    config.write_text(text.replace("listen: [127.0.0.1:1110]", "listen: [127.0.0.1:0]") + "password_cost: min\n")
    sdps = prefix / "bin/sdps"
    run(sdps, "-c", config, "host", "add", "sample")
    run(sdps, "-c", config, "host", "passwd", "sample", "--pop3", input=PW + "\n")
    run(sdps, "-c", config, "deliver", "-f", "alice@example.com", f"fred@sample.{DOMAIN}",
        input=message(subject="installed").decode())
    assert "module ABI" in run(prefix / "sbin/sdpsd", "--version").stdout
    proc = subprocess.Popen([str(prefix / "sbin/sdpsd"), "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + TIMEOUT
        seen = ""
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen += line
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, seen
        from sdps_harness import Pop3
        c = Pop3(port)
        c.login("sample", PW)
        assert c.stat()[0] == 1
        assert b"Subject: installed" in c.retr(1)
        c.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    # A moved prefix still finds its modules.
    moved = tmp_path / "elsewhere"
    shutil.move(str(prefix), str(moved))
    with Site() as site:
        assert "configuration OK" in run(moved / "sbin/sdpsd", "-c", site.config, "--check").stdout


def test_example_module_builds_against_an_installed_sdps(tmp_path):
    prefix = tmp_path / "usr"
    run("cmake", "--install", BUILD_DIR, "--prefix", prefix)
    build = tmp_path / "xhello"
    run("cmake", "-S", SOURCE_DIR / "examples/xhello", "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}")
    run("cmake", "--build", build)
    assert (build / "xhello.so").exists()
    chain = [{"module": "xhello"}, {"module": "auth"}, {"module": "lock"},
             {"module": "local_spool", "name": "finchley"}, {"module": "merge"}, {"module": "commands"}]
    with Site(chain=chain, punts=("finchley",), top={"module_path": f"[{build}]"}) as site:
        assert "configuration OK" in run(prefix / "sbin/sdpsd", "-c", site.config, "--check").stdout


# ---------------------------------------------------------------- systemd units and man pages

def test_systemd_units_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (scripts/install-deps --test)")
    for unit in ["sdpsd.service", "sdpsd@.service"]:
        stage = tmp_path / "stage"
        if not stage.exists():
            run("cmake", "--install", BUILD_DIR, "--prefix", "/usr", env={**os.environ, "DESTDIR": str(stage)})
        text = (stage / "lib/systemd/system" / unit).read_text()
        for needle in ["Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                       "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ExecReload=/bin/kill -HUP $MAINPID",
                       "LimitNOFILE=", "ReadWritePaths="]:
            assert needle in text, (unit, needle)
        # Verified against the build's binary: the installed path may not exist here.
        sbindir = re.search(r"ExecStart=(\S+)/sdpsd", text).group(1)
        local = tmp_path / (unit if "@" not in unit else "sdpsd@test.service")
        local.write_text(text.replace(f"{sbindir}/sdpsd", str(binary("sdpsd"))))
        result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True,
                                text=True, timeout=60)
        problems = [l for l in (result.stdout + result.stderr).splitlines()
                    if l.strip() and "Failed to connect" not in l and "System has not been booted" not in l
                    and "bus" not in l.lower()]
        assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.parametrize("page", ["sdpsd.8", "sdps.1", "sdps.yaml.5"])
def test_man_pages_render_without_warnings(page):
    path = SOURCE_DIR / "man" / page
    if shutil.which("mandoc"):
        lint = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(path)], capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
    if not shutil.which("man"):
        pytest.skip("man-db not installed")
    result = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True,
                            env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert "NAME" in result.stdout
