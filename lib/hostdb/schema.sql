-- The sdps host store in PostgreSQL: one table of hosts and a trigger that
-- tells every sdpsd which host changed (LISTEN sdps_hosts).
--
-- `sdps -c FILE host init` runs this file; a DBA can run it with
-- `psql -f schema.sql` as well. Running it again changes no data: the
-- table is created if missing, the functions and triggers are replaced.
-- docs/hoststore.md describes the columns and the notifications.

BEGIN;

-- Two admins running init at once wait for each other here.
SELECT pg_advisory_xact_lock(hashtext('sdps host store schema'));

CREATE TABLE IF NOT EXISTS sdps_hosts (
  -- The short host name, lower case: "sample" for sample.demon.co.uk.
  name        text PRIMARY KEY
              CONSTRAINT sdps_hosts_name CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  -- Where the dialup password is accepted; empty: nowhere.
  dialup      cidr[] NOT NULL DEFAULT '{}',
  -- Argon2id strings ($argon2id$v=19$m=...), NULL when not set.
  dialup_hash text,
  pop3_hash   text,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION sdps_hosts_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- One notification per changed host, the host's name as the payload; a
-- statement that changes many hosts (an import) sends one empty payload
-- instead, which means "any host may have changed".
CREATE OR REPLACE FUNCTION sdps_hosts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed bigint;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('sdps_hosts', '');
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    SELECT count(*) INTO changed FROM sdps_old;
  ELSE
    SELECT count(*) INTO changed FROM sdps_new;
  END IF;
  IF changed = 0 THEN
    RETURN NULL;
  END IF;
  IF changed > 1000 THEN
    PERFORM pg_notify('sdps_hosts', '');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('sdps_hosts', name) FROM sdps_new;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('sdps_hosts', name) FROM sdps_old;
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS sdps_hosts_touch ON sdps_hosts;
CREATE TRIGGER sdps_hosts_touch BEFORE UPDATE ON sdps_hosts
  FOR EACH ROW EXECUTE FUNCTION sdps_hosts_touch();

DROP TRIGGER IF EXISTS sdps_hosts_notify_insert ON sdps_hosts;
CREATE TRIGGER sdps_hosts_notify_insert AFTER INSERT ON sdps_hosts
  REFERENCING NEW TABLE AS sdps_new
  FOR EACH STATEMENT EXECUTE FUNCTION sdps_hosts_notify();

DROP TRIGGER IF EXISTS sdps_hosts_notify_update ON sdps_hosts;
CREATE TRIGGER sdps_hosts_notify_update AFTER UPDATE ON sdps_hosts
  REFERENCING OLD TABLE AS sdps_old NEW TABLE AS sdps_new
  FOR EACH STATEMENT EXECUTE FUNCTION sdps_hosts_notify();

DROP TRIGGER IF EXISTS sdps_hosts_notify_delete ON sdps_hosts;
CREATE TRIGGER sdps_hosts_notify_delete AFTER DELETE ON sdps_hosts
  REFERENCING OLD TABLE AS sdps_old
  FOR EACH STATEMENT EXECUTE FUNCTION sdps_hosts_notify();

DROP TRIGGER IF EXISTS sdps_hosts_notify_truncate ON sdps_hosts;
CREATE TRIGGER sdps_hosts_notify_truncate AFTER TRUNCATE ON sdps_hosts
  FOR EACH STATEMENT EXECUTE FUNCTION sdps_hosts_notify();

COMMIT;
