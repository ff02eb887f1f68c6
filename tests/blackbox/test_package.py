"""The Debian packages: built by scripts/build-package (dpkg-buildpackage),
unpacked in a throw-away root, their contents and conffiles checked (the
headers and CMake files in sdps-dev, not in sdps), lintian clean, and
`sdpsd --check` run on the installed config. With SDPS_TEST_PACKAGE=install
(as root) sdps is also installed with dpkg -i, checked in place (the sdps
user, folder owners, the front-end secret) and purged again.

Slow (a Release build): runs only when SDPS_TEST_PACKAGE is set, e.g.
    SDPS_TEST_PACKAGE=1 ctest -R blackbox.test_package
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sdps_harness import SOURCE_DIR

MODE = os.environ.get("SDPS_TEST_PACKAGE", "")
pytestmark = pytest.mark.skipif(not MODE or MODE == "0", reason="set SDPS_TEST_PACKAGE=1 to build the package")


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if not shutil.which("dpkg-buildpackage") or not shutil.which("dh"):
        pytest.fail("dpkg-dev and debhelper are needed: scripts/install-deps --package")
    given = os.environ.get("SDPS_PACKAGE_DEB")  # reuse a package built earlier
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run([str(SOURCE_DIR / "scripts/build-package"), str(out)], capture_output=True, text=True,
                            timeout=7200)
    assert result.returncode == 0, result.stdout + result.stderr
    [package] = [p for p in out.glob("sdps_*.deb")]
    return package


@pytest.fixture(scope="module")
def dev_deb(deb) -> Path:
    [package] = list(deb.parent.glob("sdps-dev_*.deb"))
    return package


def test_package_contents_and_conffiles(deb, dev_deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in ["./usr/sbin/sdpsd", "./usr/bin/sdps", "./etc/sdps/sdps.yaml", "./etc/sdps/frontend.yaml",
                 "/sdps/modules/auth.so", "./usr/share/man/man8/sdpsd.8.gz", "./usr/share/man/man1/sdps.1.gz",
                 "./usr/share/man/man5/sdps.yaml.5.gz", "./usr/share/man/man7/sdps-modules.7.gz",
                 "./lib/systemd/system/sdpsd.service", "./lib/systemd/system/sdpsd@.service"]:
        assert path in listing, path
    # Headers and CMake files are the -dev package's.
    assert "/usr/include/" not in listing and "/cmake/sdps/" not in listing
    dev = subprocess.run(["dpkg-deb", "-c", str(dev_deb)], capture_output=True, text=True, check=True).stdout
    for path in ["./usr/include/sdps/module.hpp", "./usr/include/sdps/abi.hpp", "/cmake/sdps/sdpsConfig.cmake"]:
        assert path in dev, path
    assert "sdpsd" not in dev and ".so" not in dev
    dev_info = subprocess.run(["dpkg-deb", "-I", str(dev_deb)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Depends:.*sdps \(= ", dev_info), dev_info
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "adduser" in info
    control = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    try:
        subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
        conffiles = (control / "conffiles").read_text().split()
        assert "/etc/sdps/sdps.yaml" in conffiles and "/etc/sdps/punt-finchley.yaml" in conffiles
        postinst = (control / "postinst").read_text()
        assert "adduser --system" in postinst and "/var/spool/sdps" in postinst
        assert "systemctl" in postinst or "deb-systemd-helper" in postinst
        # The front-end secret, the ssl-cert group, every role instance restarted on an upgrade.
        assert "/etc/sdps/frontend.secret" in postinst and "chown root:sdps" in postinst
        assert "ssl-cert" in postinst and "sdpsd@*.service" in postinst
    finally:
        shutil.rmtree(control)


def test_unpacked_package_checks_its_installed_config(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    sdpsd = root / "usr/sbin/sdpsd"
    version = subprocess.run([str(sdpsd), "--version"], capture_output=True, text=True, check=True).stdout
    assert re.match(r"sdpsd \d+\.\d+\.\d+ \(commit ", version)
    installed = (root / "etc/sdps/sdps.yaml").read_text()
    assert "user: sdps" in installed and 'listen: ["*:110"]' in installed
    # The same config with its paths moved into the throw-away root, and
    # no user switch (the sdps user exists only once postinst has run).
    config = root / "etc/sdps/check.yaml"
    config.write_text(installed.replace("/var/", f"{root}/var/").replace("user: sdps", "# user: sdps"))
    result = subprocess.run([str(sdpsd), "-c", str(config), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # As many instances as the shipped config lists (its `- module:` lines).
    instances = len(re.findall(r"^\s*- module:", installed, re.M))
    assert f"configuration OK, {instances} module instance(s)" in result.stdout, result.stdout
    for role in ["frontend", "punt-finchley", "punt-docklands"]:
        text = (root / f"etc/sdps/{role}.yaml").read_text()
        assert "user: sdps" in text and "/var/lib/sdps/hosts" in text


def test_lintian_is_clean(deb, dev_deb):
    if not shutil.which("lintian"):
        pytest.fail("lintian is needed: scripts/install-deps --package")
    result = subprocess.run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", str(deb),
                             str(dev_deb)], capture_output=True, text=True, timeout=1200)
    tags = [l for l in result.stdout.splitlines() if re.match(r"[EW]: ", l)]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


@pytest.mark.skipif(MODE != "install" or os.geteuid() != 0, reason="SDPS_TEST_PACKAGE=install as root")
def test_dpkg_install_creates_the_user_and_checks(deb):
    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    try:
        user = pwd.getpwnam("sdps")
        for path in ["/var/lib/sdps", "/var/spool/sdps", "/var/spool/sdps/finchley"]:
            assert os.stat(path).st_uid == user.pw_uid, path
        secret = os.stat("/etc/sdps/frontend.secret")
        assert secret.st_uid == 0 and secret.st_gid == user.pw_gid and secret.st_mode & 0o777 == 0o640
        assert secret.st_size == 32
        result = subprocess.run(["/usr/sbin/sdpsd", "-c", "/etc/sdps/sdps.yaml", "--check"], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        assert "checked as user sdps" in result.stdout
        # A front end's config, checked as root, checks as sdps: the secret is readable.
        front = subprocess.run(["/usr/sbin/sdpsd", "-c", "/etc/sdps/frontend.yaml", "--check"], capture_output=True,
                               text=True)
        assert front.returncode == 0, front.stderr
        add = subprocess.run(["sdps", "-c", "/etc/sdps/sdps.yaml", "host", "add", "pkgtest"], capture_output=True,
                             text=True)
        assert add.returncode == 0, add.stderr
        assert os.stat("/var/lib/sdps/hosts").st_uid == user.pw_uid
    finally:
        subprocess.run(["dpkg", "--purge", "sdps"], capture_output=True)
