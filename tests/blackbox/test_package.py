"""The Debian package: built by scripts/build-package (dpkg-buildpackage),
unpacked in a throw-away root, its contents and conffiles checked, and
`sdpsd --check` run on its installed config. With SDPS_TEST_PACKAGE=install
(as root) it is also installed with dpkg -i, checked in place (the sdps
user, folder owners) and purged again.

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


def test_package_contents_and_conffiles(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in ["./usr/sbin/sdpsd", "./usr/bin/sdps", "./etc/sdps/sdps.yaml", "./etc/sdps/frontend.yaml",
                 "./usr/include/sdps/module.hpp", "/sdps/modules/auth.so", "/cmake/sdps/sdpsConfig.cmake",
                 "./usr/share/man/man8/sdpsd.8.gz", "./usr/share/man/man1/sdps.1.gz",
                 "./usr/share/man/man5/sdps.yaml.5.gz", "./lib/systemd/system/sdpsd.service",
                 "./lib/systemd/system/sdpsd@.service"]:
        assert path in listing, path
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
    assert "configuration OK, 7 module instance(s)" in result.stdout
    for role in ["frontend", "punt-finchley", "punt-docklands"]:
        text = (root / f"etc/sdps/{role}.yaml").read_text()
        assert "user: sdps" in text and "/var/lib/sdps/hosts" in text


@pytest.mark.skipif(MODE != "install" or os.geteuid() != 0, reason="SDPS_TEST_PACKAGE=install as root")
def test_dpkg_install_creates_the_user_and_checks(deb):
    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    try:
        user = pwd.getpwnam("sdps")
        for path in ["/var/lib/sdps", "/var/spool/sdps", "/var/spool/sdps/finchley"]:
            assert os.stat(path).st_uid == user.pw_uid, path
        result = subprocess.run(["/usr/sbin/sdpsd", "-c", "/etc/sdps/sdps.yaml", "--check"], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        add = subprocess.run(["sdps", "-c", "/etc/sdps/sdps.yaml", "host", "add", "pkgtest"], capture_output=True,
                             text=True)
        assert add.returncode == 0, add.stderr
        assert os.stat("/var/lib/sdps/hosts").st_uid == user.pw_uid
    finally:
        subprocess.run(["dpkg", "--purge", "sdps"], capture_output=True)
