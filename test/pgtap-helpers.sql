-- test/pgtap-helpers.sql: functions shared by the pgTAP files, loaded by
-- test/pgtap-exec.sh into each test database before the file runs.

-- True as soon as the boolean SQL expression cond is true, false when
-- timeout passes first.  Every check runs with a fresh snapshot, and a
-- fresh pg_stat_activity snapshot.
CREATE FUNCTION tap_wait_until(cond text, timeout interval DEFAULT '30 s')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    r boolean;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXECUTE 'SELECT (' || cond || ')' INTO r;
        IF r THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- Workers running a batch of job p_job right now: pg_stat_activity shows a
-- worker 'active' with query "iterjob job <id> instance <i>: batch <b>"
-- only while it runs a batch (idle between batches and during a backoff).
CREATE FUNCTION tap_active_workers(p_job bigint)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT count(*) FROM pg_stat_activity
     WHERE backend_type = 'iterjob worker' AND state = 'active'
       AND query LIKE 'iterjob job ' || p_job || ' instance %'
$$;
