"""`sdpsd --check` run as root checks as the configured `user:`: in a
child process that became the user, it tries to read and write what the
user must (the config file, the TLS certificate and key, the front-end
secret, the host database, the spools), so that a root-owned 0600 secret
or a key kept the Debian way (root:ssl-cert 0640 in a 0710 folder) is
reported when the user cannot read it. Root only (switching users)."""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from sdps_harness import SOURCE_DIR, TIMEOUT, Site, binary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (checks as another user)")

BACKEND_CHAIN = [{"module": "backend_auth", "secret": "../var/frontend.secret"}, {"module": "lock"},
                 {"module": "local_spool", "name": "finchley"}, {"module": "commands"}, {"module": "extensions"},
                 {"module": "backend_listing"}]


def nobody_site(**kwargs) -> Site:
    """A site with `user: nobody` whose state nobody owns, as postinst makes it."""
    top = {"user": "nobody", **kwargs.pop("top", {})}
    site = Site(top=top, **kwargs)
    os.chmod(site.root, 0o755)  # the temporary folder is root's 0700: let the user in, as /var/lib is
    nobody = pwd.getpwnam("nobody")
    var = site.root / "var"
    for folder in [var, var / "spool", *[var / "spool" / p for p in site.punts]]:
        folder.mkdir(exist_ok=True)
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    hosts = var / "hosts"
    hosts.write_text("")
    os.chmod(hosts, 0o600)
    os.chown(hosts, nobody.pw_uid, nobody.pw_gid)
    return site


def check(site: Site) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True, text=True,
                          timeout=6 * TIMEOUT)


def test_a_site_the_user_can_use_checks_out_as_that_user():
    with nobody_site() as site:
        result = check(site)
        assert result.returncode == 0, result.stderr
        assert re.search(r"configuration OK, \d+ module instance\(s\), checked as user nobody", result.stdout)


def test_a_root_only_secret_fails_the_check_as_the_user():
    with nobody_site(chain=BACKEND_CHAIN, punts=("finchley",)) as site:
        secret = site.root / "var" / "frontend.secret"
        secret.write_bytes(os.urandom(32))
        os.chmod(secret, 0o600)  # root's: sdpsd as root reads it, nobody cannot
        result = check(site)
        assert result.returncode == 78, result.stdout + result.stderr
        assert (f"sdpsd: backend_auth: user 'nobody' cannot read the front-end secret {secret} (root:root 0600): "
                f"run  chgrp nogroup {secret} && chmod g+r {secret}") in result.stderr, result.stderr
        # What postinst makes: 0640 root:the user's group.
        os.chown(secret, 0, pwd.getpwnam("nobody").pw_gid)
        os.chmod(secret, 0o640)
        result = check(site)
        assert result.returncode == 0, result.stderr


def test_a_tls_key_kept_the_debian_way_needs_the_group():
    group = "ssl-cert" if _group_exists("ssl-cert") else "daemon"
    gid = grp.getgrnam(group).gr_gid
    with nobody_site() as site:
        pki = site.root / "pki"
        subprocess.run([str(SOURCE_DIR / "scripts/make-test-cert"), str(pki)], check=True, capture_output=True)
        private = site.root / "private"
        private.mkdir()
        key = private / "key.pem"
        key.write_bytes((pki / "key.pem").read_bytes())
        os.chmod(pki, 0o755)
        os.chmod(pki / "cert.pem", 0o644)
        for path, mode in [(private, 0o710), (key, 0o640)]:
            os.chown(path, 0, gid)
            os.chmod(path, mode)
        site.write_config(top={"user": "nobody", "tls": f"{{certificate: {pki / 'cert.pem'}, key: {key}}}"})
        result = check(site)
        assert result.returncode == 78, result.stdout + result.stderr
        assert (f"sdpsd: user 'nobody' cannot read the TLS key (read again at SIGHUP) {key}: it cannot enter {private} "
                f"(root:{group} 0710): run  adduser nobody {group}  (then restart sdpsd)") in result.stderr, result.stderr
        assert "TLS certificate" not in result.stderr


def test_the_config_file_must_be_readable_by_the_user_for_sighup():
    with nobody_site() as site:
        os.chmod(site.config, 0o600)
        result = check(site)
        assert result.returncode == 78
        assert re.search(r"user 'nobody' cannot read the config file \(SIGHUP reads it again\) .*sdps\.yaml "
                         r"\(root:root 0600\)", result.stderr), result.stderr


def test_a_user_that_does_not_exist_is_said():
    with nobody_site(top={"user": "no-such-user-sdps"}) as site:
        result = check(site)
        assert result.returncode == 78
        assert "user 'no-such-user-sdps' (the config's 'user:') does not exist" in result.stderr


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False
