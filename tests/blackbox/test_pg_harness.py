"""pg_harness.py, the private PostgreSQL server later black-box tests run
sdpsd against: it starts as an unprivileged user on a unix socket only,
survives a stop and a start with its data, and leaves nothing behind."""

from __future__ import annotations

import os

from pg_harness import PostgresServer


def test_a_private_server_starts_restarts_keeps_its_data_and_is_removed():
    with PostgresServer() as pg:
        folder = pg.socket_dir
        assert pg.running
        assert pg.sql("SHOW listen_addresses") == ""
        if os.geteuid() == 0:
            assert folder.stat().st_uid != 0  # not run as root
        db = pg.create_database()
        pg.sql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('it''s here')", db)
        assert f"host={folder}" in pg.uri(db)

        pg.stop()
        assert not pg.running
        assert not pg.ready()
        pg.start()
        assert pg.sql("SELECT v FROM kept", db) == "it's here"
        pg.restart()
        assert pg.sql("SELECT count(*) FROM kept", db) == "1"
        server = pg.proc
    assert server.poll() is not None
    assert not folder.exists()
