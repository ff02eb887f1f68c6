"""The host store in PostgreSQL (issue 22, docs/hoststore.md): `hosts:` as
a libpq URI, against a private server pg_harness.py starts (initdb and
postgres as an unprivileged user, a unix socket in a temporary folder).

Logins against the database; `sdps host init` (idempotent), import and
export through the tool; two sdpsd on one database, a password changed
through one's `sdps -c` refused by the other at once; the database stopped
and started under live sessions (sessions go on, new logins get [SYS/TEMP]
except cached successes, the state changes logged once each and the metric
following); sdpsd started before its database; malformed rows; hostile
names; the mail commands' host checks; `sdpsd --check`."""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from conftest import DIALUP_IP, DIALUP_PW, OTHER_IP, POP_PW
from pg_harness import PostgresServer
from sdps_harness import EX_CONFIG, EX_NOUSER, EX_TEMPFAIL, SLOW, TIMEOUT, Site, binary, message, wait_until

METRICS = {"metrics_listen": "127.0.0.1:0"}
# Reconnects within half a second of the database's return.
FAST_RETRY = {"store_retry_max": "500ms"}


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


def pg_site(pg, db: str, *, ttl: str | None = None, top: dict | None = None, auth: dict | None = None) -> Site:
    """A site whose `hosts:` is database `db`."""
    settings = {**FAST_RETRY, **(auth or {})}
    if ttl is not None:
        settings["auth_cache_ttl"] = ttl
    return Site(top={"hosts": f'"{pg.uri(db)}"', **METRICS, **(top or {})}, module_settings={"auth": settings})


def new_database(pg) -> str:
    """A fresh database with the schema (through the tool's `host init`)."""
    db = pg.create_database()
    with Site(top={"hosts": f'"{pg.uri(db)}"'}) as site:
        assert "created the host store's schema" in site.sdps("host", "init").stdout.decode()
    return db


def login(server, user: str = "sample", password: str = POP_PW, source: str | None = None) -> str:
    """PASS's reply (the session is ended either way)."""
    c = server.connect(source=source) if source else server.connect()
    try:
        c.ok(f"USER {user}")
        reply = c.cmd(f"PASS {password}")
        if reply.startswith("+OK"):
            c.quit()
        return reply
    finally:
        c.close()


def metric(server, name: str) -> float:
    m = re.search(r"metrics on http://([0-9.]+):(\d+)/metrics", server.log())
    assert m, server.log()
    with urllib.request.urlopen(f"http://{m.group(1)}:{m.group(2)}/metrics", timeout=TIMEOUT) as r:
        text = r.read().decode()
    found = re.search(r"^" + name + r" (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))


# ---------------------------------------------------------------- logins

def test_logins_against_the_database(pg):
    db = new_database(pg)
    with pg_site(pg, db) as site:
        site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP])
        site.deliver("fred@sample.demon.co.uk", data=message(subject="in the database"))
        server = site.start()
        wait_until(lambda: metric(server, "sdps_host_store_up") == 1, what="the store to be up")
        assert "host store postgresql://" in server.log() and "up (" in server.log()
        c = server.session("sample", POP_PW)
        assert c.stat()[0] == 1
        c.quit()
        assert login(server, password=DIALUP_PW, source=DIALUP_IP).startswith("+OK")
        assert login(server, password=DIALUP_PW, source=OTHER_IP).startswith("-ERR [AUTH] invalid login")
        assert login(server, "nosuch", POP_PW).startswith("-ERR [AUTH] invalid login")
        assert login(server, password="wrong").startswith("-ERR [AUTH] invalid login")
        # Added through the tool, a host logs in at once.
        site.add_host("later", pop3="later pw")
        assert login(server, "later", "later pw").startswith("+OK")
        assert "login failed: host nosuch from 127.0.0.1: unknown host (auth)" in server.log()
        assert POP_PW not in server.log()


def test_host_init_is_idempotent_and_a_file_store_says_it_has_no_schema(pg):
    db = pg.create_database()
    with pg_site(pg, db) as site:
        assert "created the host store's schema" in site.sdps("host", "init").stdout.decode()
        site.add_host("sample", pop3=POP_PW)
        again = site.sdps("host", "init").stdout.decode()
        assert "was there already" in again
        assert "sample" in site.sdps("host", "list").stdout.decode()
    with Site() as plain:
        out = plain.sdps("host", "init").stdout.decode()
        assert "is a hosts file: there is no schema to create" in out


def test_import_and_export_round_trip_through_the_tool(pg):
    with Site() as file_site:
        file_site.add_host("sample", pop3=POP_PW, dialup=DIALUP_PW, dialup_ips=[DIALUP_IP, "2001:db8::/64"])
        file_site.add_host("other", pop3="other pw")
        file_site.add_host("bare")
        exported_file = file_site.sdps("host", "export").stdout
        hosts_file = file_site.root / "var" / "hosts"
        db = new_database(pg)
        with pg_site(pg, db) as site:
            out = site.sdps("host", "import", str(hosts_file)).stdout.decode()
            assert "3 host(s), 3 added, 0 changed, 0 removed" in out
            exported_db = site.sdps("host", "export").stdout
            assert exported_db == exported_file
            # The export imported again changes nothing.
            again = site.root / "exported"
            again.write_bytes(exported_db)
            again.chmod(0o600)
            assert "0 added, 0 changed, 0 removed" in site.sdps("host", "import", str(again)).stdout.decode()
            server = site.start()
            assert login(server).startswith("+OK")
            assert login(server, "other", "other pw").startswith("+OK")
            # A file with a malformed line changes nothing.
            broken = site.root / "broken"
            broken.write_text(hosts_file.read_text() + "broken line\n")
            broken.chmod(0o600)
            result = site.sdps("host", "import", str(broken), expect=None)
            assert result.returncode == 65, result.stderr
            assert b"nothing imported" in result.stderr
            assert site.sdps("host", "export").stdout == exported_file


# ---------------------------------------------------------------- two front ends, one database

def test_a_password_changed_through_one_sdpsd_is_refused_by_the_other_at_once(pg):
    db = new_database(pg)
    with pg_site(pg, db, top={"log_level": "debug"}) as a, pg_site(pg, db, top={"log_level": "debug"}) as b:
        a.add_host("sample", pop3=POP_PW)
        server_a, server_b = a.start(), b.start()
        for server in (server_a, server_b):
            wait_until(lambda s=server: "listening for changes" in s.log(), what="LISTEN")
            assert login(server).startswith("+OK")
            assert login(server).startswith("+OK")  # now from the cache
        assert "auth cache: sample: the POP3 password passed its check" in server_b.log()
        a.set_password("sample", "--pop3", "a new secret")
        # Every lookup asks the database: the change is in force for both
        # as soon as the tool has committed it.
        assert login(server_b).startswith("-ERR [AUTH] invalid login")
        assert login(server_b, password="a new secret").startswith("+OK")
        assert login(server_a).startswith("-ERR [AUTH] invalid login")
        # And the notification dropped each one's cache entry for the host.
        for server in (server_a, server_b):
            wait_until(lambda s=server: "auth cache: sample changed in the host store: its entries dropped" in s.log(),
                       what="the change notification")


def test_a_changed_host_is_not_let_in_from_the_cache_during_an_outage(pg):
    # The notification is what keeps the cache honest while the database
    # cannot be asked.
    own = PostgresServer()
    try:
        db = new_database(own)
        with pg_site(own, db, top={"log_level": "debug"}) as a, pg_site(own, db, top={"log_level": "debug"}) as b:
            a.add_host("sample", pop3=POP_PW)
            a.add_host("other", pop3="other pw")
            server = b.start()
            wait_until(lambda: "listening for changes" in server.log(), what="LISTEN")
            assert login(server).startswith("+OK")
            assert login(server, "other", "other pw").startswith("+OK")
            a.set_password("sample", "--pop3", "a new secret")
            wait_until(lambda: "auth cache: sample changed in the host store" in server.log(),
                       what="the change notification")
            own.stop()
            wait_until(lambda: metric(server, "sdps_host_store_up") == 0, what="the store to be down")
            assert login(server).startswith("-ERR [SYS/TEMP]")
            assert login(server, "other", "other pw").startswith("+OK")
    finally:
        own.close()


# ---------------------------------------------------------------- outages

def test_the_database_stopped_and_started_under_live_sessions(pg):
    own = PostgresServer()
    try:
        db = new_database(own)
        with pg_site(own, db, ttl="1h", top={"log_level": "debug"}) as site:
            site.add_host("sample", pop3=POP_PW)
            site.add_host("other", pop3="other pw")
            site.add_host("never", pop3="never pw")
            site.deliver("fred@sample.demon.co.uk", data=message(subject="kept"))
            server = site.start()
            wait_until(lambda: metric(server, "sdps_host_store_up") == 1, what="the store to be up")
            assert login(server, "other", "other pw").startswith("+OK")  # cached from now on
            live = server.session("sample", POP_PW)

            own.stop()
            wait_until(lambda: metric(server, "sdps_host_store_up") == 0, what="the metric to say down")
            # The open session goes on: it needs nothing from the store.
            assert live.stat()[0] == 1
            assert b"kept" in live.retr(1)
            # New logins: the cache's word, or a temporary failure.
            assert login(server, "other", "other pw").startswith("+OK")
            for user, password in (("never", "never pw"), ("other", "wrong"), ("nosuch", "x")):
                reply = login(server, user, password)
                assert reply.startswith("-ERR [SYS/TEMP]"), reply
            log = server.log()
            assert "login failed: host never from 127.0.0.1: host store unavailable (auth)" in log
            assert "(the host store is unavailable)" in log

            own.start()
            wait_until(lambda: metric(server, "sdps_host_store_up") == 1, 10 * SLOW, what="the metric to say up")
            wait_until(lambda: login(server, "never", "never pw").startswith("+OK"), 10 * SLOW, 0.2,
                       "logins to work again")
            live.quit()
            wait_until(lambda: "listening for changes again" in server.log(), what="LISTEN again")
            log = server.log()
            # Each change of state once, however many connections retried.
            assert count(log, r"host store postgresql://\S+: down: ") == 1, log
            assert count(log, r"host store postgresql://\S+: up \(") == 2, log
            assert count(log, r"change notifications lost") == 1, log
            assert count(log, r"listening for changes again") == 1, log
            assert server.alive()
    finally:
        own.close()


def test_sdpsd_started_before_its_database_serves_once_it_is_up(pg):
    own = PostgresServer()
    try:
        db = new_database(own)
        with pg_site(own, db, auth={"store_startup_wait": "1s"}) as site:
            site.add_host("sample", pop3=POP_PW)
            own.stop()
            server = site.start()
            assert "is down at start: serving without it" in server.log()
            assert login(server).startswith("-ERR [SYS/TEMP]")
            assert metric(server, "sdps_host_store_up") == 0
            own.start()
            wait_until(lambda: login(server).startswith("+OK"), 10 * SLOW, 0.2, "logins once the database is up")
            assert metric(server, "sdps_host_store_up") == 1
    finally:
        own.close()


# ---------------------------------------------------------------- bad data, hostile names

def test_a_malformed_row_refuses_its_host_with_a_log_line_and_serves_the_others(pg):
    db = new_database(pg)
    with pg_site(pg, db) as site:
        site.add_host("sample", pop3=POP_PW)
        site.add_host("broken", pop3="broken pw", dialup_ips=[DIALUP_IP])
        pg.sql("UPDATE sdps_hosts SET pop3_hash = 'written by hand' WHERE name = 'broken'", db)
        server = site.start()
        assert login(server, "broken", "broken pw").startswith("-ERR [AUTH] invalid login")
        assert login(server).startswith("+OK")
        log = server.log()
        assert "host broken: its row in sdps_hosts is malformed: pop3_hash is not an Argon2id hash string" in log
        assert "login failed: host broken from 127.0.0.1: malformed host record (auth)" in log
        assert "written by hand" not in log
        # The tool lists the others and names the row.
        listed = site.sdps("host", "list", expect=None)
        assert listed.returncode == 65
        assert b"sample" in listed.stdout and b"broken" not in listed.stdout
        assert b"host broken: its row in sdps_hosts" in listed.stderr


def test_hostile_names_never_reach_sql_and_harm_nothing(pg):
    db = new_database(pg)
    with pg_site(pg, db) as site:
        site.add_host("sample", pop3=POP_PW)
        server = site.start()
        for name in ("x'; DROP TABLE sdps_hosts; --", "sample' OR '1'='1", "a;b", "o'brien"):
            c = server.connect()
            reply = c.cmd(f"USER {name}")
            if reply.startswith("+OK"):
                assert c.cmd("PASS x").startswith("-ERR")
            c.close()
            assert site.sdps("host", "add", name, expect=None).returncode == 65
            assert site.sdps("host", "del", name, expect=None).returncode == 65
        assert pg.sql("SELECT count(*) FROM sdps_hosts", db) == "1"
        assert login(server).startswith("+OK")


# ---------------------------------------------------------------- the mail side, --check

def test_deliver_checks_hosts_in_the_database(pg):
    own = PostgresServer()
    try:
        db = new_database(own)
        with pg_site(own, db) as site:
            site.add_host("sample", pop3=POP_PW)
            site.deliver("fred@sample.demon.co.uk", data=message())
            result = site.deliver("fred@nosuch.demon.co.uk", data=message(), expect=None)
            assert result.returncode == EX_NOUSER, result.stderr
            assert "fred@sample" in site.spool_list("sample")
            own.stop()
            result = site.deliver("fred@sample.demon.co.uk", data=message(), expect=None)
            assert result.returncode == EX_TEMPFAIL, result.stderr
            assert b"cannot read the host database" in result.stderr
            result = site.sdps("host", "list", expect=None)
            assert result.returncode == EX_TEMPFAIL
    finally:
        own.close()


def test_check_says_when_the_database_has_no_schema(pg):
    db = pg.create_database()
    with pg_site(pg, db, auth={"store_startup_wait": "5s"}) as site:
        check = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                               text=True, timeout=6 * TIMEOUT)
        assert check.returncode == EX_CONFIG, check.stdout + check.stderr
        assert "host init" in check.stderr and "sdps_hosts" in check.stderr
        site.sdps("host", "init")
        check = subprocess.run([str(binary("sdpsd")), "-c", str(site.config), "--check"], capture_output=True,
                               text=True, timeout=6 * TIMEOUT)
        assert check.returncode == 0, check.stdout + check.stderr


def test_the_grants_of_docs_deployment_md_are_enough_and_no_more(pg):
    # docs/deployment.md, "The host store in PostgreSQL": an owner runs
    # init, sdpsd reads as a read-only role, the tool writes as another.
    for role in ("sdps_owner", "sdpsd", "sdps_admin"):
        pg.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
               f"THEN CREATE ROLE {role} LOGIN; END IF; END $$")
    db = "granted"
    pg.sql(f"CREATE DATABASE {db} OWNER sdps_owner")
    pg.sql("GRANT CONNECT ON DATABASE granted TO sdpsd, sdps_admin; "
           "GRANT USAGE ON SCHEMA public TO sdpsd, sdps_admin; "
           "GRANT TEMPORARY ON DATABASE granted TO sdps_admin", db)
    with Site(top={"hosts": f'"{pg.uri(db, user="sdps_owner")}"'}) as owner:
        assert "created the host store's schema" in owner.sdps("host", "init").stdout.decode()
    pg.sql("GRANT SELECT ON sdps_hosts TO sdpsd; "
           "GRANT SELECT, INSERT, UPDATE, DELETE ON sdps_hosts TO sdps_admin", db)

    admin_top = {"hosts": f'"{pg.uri(db, user="sdps_admin")}"'}
    server_top = {"hosts": f'"{pg.uri(db, user="sdpsd")}"', **METRICS, "log_level": "debug"}
    with Site(top=admin_top) as admin, Site(top=server_top, module_settings={"auth": FAST_RETRY}) as front:
        admin.add_host("sample", pop3=POP_PW, dialup_ips=[DIALUP_IP])
        admin.add_host("other", pop3="other pw")
        exported = admin.root / "exported"
        exported.write_bytes(admin.sdps("host", "export").stdout)
        exported.chmod(0o600)
        imported = admin.sdps("host", "import", str(exported)).stdout.decode()
        assert "2 host(s), 0 added, 0 changed, 0 removed" in imported

        check = subprocess.run([str(binary("sdpsd")), "-c", str(front.config), "--check"], capture_output=True,
                               text=True, timeout=6 * TIMEOUT)
        assert check.returncode == 0, check.stdout + check.stderr
        server = front.start()
        wait_until(lambda: "listening for changes" in server.log(), what="LISTEN as the read-only role")
        assert login(server).startswith("+OK")
        assert login(server).startswith("+OK")
        admin.set_password("sample", "--pop3", "changed")
        wait_until(lambda: "auth cache: sample changed in the host store" in server.log(),
                   what="the notification, heard by the read-only role")
        assert login(server, password="changed").startswith("+OK")
        # The read-only role cannot write.
        refused = front.sdps("host", "add", "third", expect=None)
        assert refused.returncode == EX_CONFIG, refused.stderr
        assert b"permission denied" in refused.stderr
