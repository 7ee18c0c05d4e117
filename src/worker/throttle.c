/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Pacing one instance so a backfill does not hurt production: pauses
 *	  between batches, job-wide rows-per-second and WAL-per-second caps
 *	  (and the cluster's WAL limit), batch sizes adapted to a target batch
 *	  time, and the health gate (replication lag, WAL archiving falling
 *	  behind, autovacuum of the relation, the iterjob.enabled switch).
 *
 *	  After each committed batch the worker sleeps for batch_pause, and
 *	  long enough that the instance stays under its share of the job's
 *	  max_rows_per_second (the cap divided by the job's instances), and
 *	  under its shares of the WAL limits (the job's max_wal_per_second and
 *	  the cluster's iterjob.max_wal_per_second) for the WAL the batch
 *	  wrote.  With a target_batch_time, the next batch size is scaled by
 *	  target / actual, by at most a factor of 2 per batch.  A batch that times out (statement
 *	  or lock timeout) is retried at half its size, down to one key, with or
 *	  without a target; without one, the size then doubles per committed
 *	  batch back to the job's batch_size.  The
 *	  health gate is looked at before a batch, at most once a second per
 *	  worker (across its tasks, for one relation) while it lets batches
 *	  run, and before every attempt while it holds: while
 *	  a standby's replay lag exceeds iterjob.max_replication_lag (time) or
 *	  iterjob.max_replication_lag_bytes (WAL not yet replayed, or kept by
 *	  the inactive physical slot of a standby that disconnected), or
 *	  while more WAL files than iterjob.max_archive_backlog wait for
 *	  archiving (archive_mode on), or autovacuum works on the job's relation
 *	  (iterjob.hold_for_autovacuum), the worker holds at the batch boundary;
 *	  for one autovacuum run at most iterjob.autovacuum_hold_max, and never
 *	  for an anti-wraparound vacuum (which can take hours, and which a
 *	  backfill must not starve of its table either way).  With
 *	  iterjob.enabled off every worker holds, without running the statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

#define HEALTH_CHECK_INTERVAL_MS 1000

/*
 * The health gate's last answer that let batches run is the worker's, not
 * the task's, so that a stream of small jobs looks at most once a second:
 * until when it holds, and for which relation (the autovacuum part of the
 * answer is that relation's).  The statement is planned once per worker.
 */
typedef struct GateQuestion
{
	Oid			relid;
	int32		max_lag_ms;
	int32		test_lag_ms;
	int32		max_lag_kb;
	int32		archive_backlog;
	bool		hold_for_autovacuum;
} GateQuestion;

static bool
same_question(const GateQuestion *a, const GateQuestion *b)
{
	return a->relid == b->relid && a->max_lag_ms == b->max_lag_ms &&
		a->test_lag_ms == b->test_lag_ms && a->max_lag_kb == b->max_lag_kb &&
		a->archive_backlog == b->archive_backlog &&
		a->hold_for_autovacuum == b->hold_for_autovacuum;
}

static TimestampTz gate_open_until = 0;
static GateQuestion gate_open_for;
static SPIPlanPtr health_plan = NULL;

void
iterjob_throttle_init(IterjobThrottle *throttle, const IterjobSpec *spec)
{
	memset(throttle, 0, sizeof(*throttle));
	throttle->pacing.batch_size = spec->batch_size;
	throttle->pacing.batch_pause_ms = spec->batch_pause_ms;
	throttle->pacing.max_rows_per_second = spec->max_rows_per_second;
	throttle->pacing.target_batch_ms = spec->target_batch_ms;
	throttle->pacing.max_wal_per_second = spec->max_wal_per_second;
	throttle->batch_size = spec->batch_size;
}

/* Settings read back at a checkpoint (iterjob.set() may have changed them). */
void
iterjob_throttle_set_pacing(IterjobThrottle *throttle, const IterjobPacing *pacing)
{
	if (pacing->batch_size != throttle->pacing.batch_size ||
		(pacing->target_batch_ms == 0 && throttle->pacing.target_batch_ms != 0))
		throttle->batch_size = pacing->batch_size;
	throttle->pacing = *pacing;
}

/*
 * After a batch of rows that took batch_ms: adapt the batch size and
 * return how long to sleep before the next batch.
 */
long
iterjob_throttle_after_batch(IterjobThrottle *throttle, int instances,
							 uint64 rows, long batch_ms)
{
	IterjobPacing *pacing = &throttle->pacing;
	long		sleep_ms = pacing->batch_pause_ms;

	if (pacing->target_batch_ms > 0)
	{
		if (batch_ms > 0 && rows >= (uint64) throttle->batch_size)
		{
			double		scale = (double) pacing->target_batch_ms / batch_ms;

			scale = Max(0.5, Min(2.0, scale));
			throttle->batch_size = (int32) Max(1, Min(ITERJOB_MAX_BATCH_SIZE,
													  throttle->batch_size * scale));
		}
	}
	else if (throttle->batch_size < pacing->batch_size)
	{
		/* halved after a timeout: grow back, doubling, to the job's size */
		throttle->batch_size = (int32) Min((int64) pacing->batch_size,
										   (int64) throttle->batch_size * 2);
	}
	if (pacing->max_rows_per_second > 0)
	{
		/* this instance's share of the cap */
		double		share = (double) pacing->max_rows_per_second / Max(1, instances);
		long		min_ms = (long) (1000.0 * rows / share);

		sleep_ms = Max(sleep_ms, min_ms - batch_ms);
	}
	return Max(0, sleep_ms);
}

/*
 * The WAL limits, after a batch that wrote wal_bytes of WAL in batch_ms:
 * iterjob.max_wal_per_second, cluster-wide, of which each worker running a
 * task now (in every database) takes an equal share, and the job's own
 * max_wal_per_second, of which each of its instances takes an equal
 * share.  The batch waits until the smaller share allows the WAL it wrote
 * (the longer of the two waits).  Returns the milliseconds to wait.
 */
long
iterjob_wal_pace_ms(const IterjobThrottle *throttle, int instances,
					uint64 wal_bytes, long batch_ms)
{
	double		share = 0;
	long		min_ms;

	if (iterjob_max_wal_per_second_kb > 0)
		share = 1024.0 * iterjob_max_wal_per_second_kb / Max(1, iterjob_busy_workers());
	if (throttle->pacing.max_wal_per_second > 0)
	{
		double		job_share = (double) throttle->pacing.max_wal_per_second / Max(1, instances);

		share = share > 0 ? Min(share, job_share) : job_share;
	}
	if (share <= 0 || wal_bytes == 0)
		return 0;
	min_ms = (long) Min(1000.0 * wal_bytes / share, (double) LONG_MAX / 2);
	return Max(0, min_ms - batch_ms);
}

/*
 * A batch of keys keys timed out (statement or lock timeout): retry it at
 * half its size, down to one key.  Returns false for a batch of one key,
 * which cannot be split: that timeout is a failed attempt.
 */
bool
iterjob_throttle_after_timeout(IterjobThrottle *throttle, uint64 keys)
{
	if (keys <= 1)
		return false;
	throttle->batch_size = (int32) Max(1, Min((uint64) throttle->batch_size, keys) / 2);
	return true;
}

/*
 * The health gate, one statement.  $1 iterjob.max_replication_lag (ms),
 * $2 iterjob.hold_for_autovacuum, $3 the job's relation, $4
 * iterjob.test_replication_lag (ms), $5 iterjob.max_replication_lag_bytes
 * (in bytes), $6 iterjob.max_archive_backlog (-1 too when archive_mode is
 * off).  A limit of -1 is off, and its part of the statement then scans
 * nothing (a one-time filter).  COALESCE stops at the first reason, in
 * this order:
 *
 * - time: the worst replay_lag among the walsenders in pg_stat_replication
 *   (or the test hook instead), against max_replication_lag.  Only those
 *   whose receiver reports a replay position: pg_receivewal and
 *   pg_basebackup's WAL stream report none, and their replay_lag grows
 *   for as long as they are connected;
 * - bytes: the worst distance from pg_current_wal_lsn() to a walsender's
 *   replay_lsn, or to the restart_lsn of an inactive physical replication
 *   slot (a standby that disconnected, whose WAL the slot keeps; a lost
 *   slot has none), against max_replication_lag_bytes;
 * - archiving: the WAL files waiting for archive_command, the .ready
 *   files of pg_wal/archive_status, against max_archive_backlog.  When the
 *   archiver's last attempt failed (pg_stat_archiver: last_failed_time
 *   after last_archived_time), the reason says so, with the file and the
 *   last success; a failure alone, with few files waiting, holds nothing;
 * - autovacuum (not wraparound) processing the relation or a partition.
 *
 * Each reason comes twice: in full, naming the standby or slot, its lag
 * or the archiver's backlog and the limit it exceeds, read with iterjob's
 * rights from statistics only pg_read_all_stats may read; and as a
 * summary without those figures ("a standby is behind"), which the views
 * show to everyone else.
 */
static const char *const health_sql =
"SELECT h.r[1], h.r[2] FROM (SELECT COALESCE("
" (SELECT ARRAY[pg_catalog.format('replication lag %s %s exceeds iterjob.max_replication_lag (%s)',"
"               pg_catalog.date_trunc('milliseconds', l.lag), l.who,"
"               pg_catalog.current_setting('iterjob.max_replication_lag')),"
"               pg_catalog.format('a standby is behind: replication lag exceeds iterjob.max_replication_lag (%s)',"
"               pg_catalog.current_setting('iterjob.max_replication_lag'))]"
"    FROM (SELECT pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog./) 1000.0) AS lag,"
"                 '(iterjob.test_replication_lag)' AS who"
"           WHERE $4 OPERATOR(pg_catalog.>=) 0"
"          UNION ALL"
"          SELECT r.replay_lag, pg_catalog.format('to \"%s\"', r.application_name)"
"            FROM pg_catalog.pg_stat_replication r"
"           WHERE $4 OPERATOR(pg_catalog.<) 0 AND r.replay_lsn IS NOT NULL) AS l"
"   WHERE $1 OPERATOR(pg_catalog.>=) 0"
"     AND l.lag OPERATOR(pg_catalog.>) pg_catalog.make_interval(secs => $1 OPERATOR(pg_catalog./) 1000.0)"
"   ORDER BY l.lag DESC LIMIT 1),"
" (SELECT ARRAY[pg_catalog.format('replication lag %s %s exceeds iterjob.max_replication_lag_bytes (%s)',"
"               pg_catalog.pg_size_pretty(b.bytes), b.who,"
"               pg_catalog.current_setting('iterjob.max_replication_lag_bytes')),"
"               pg_catalog.format('a standby is behind: replication lag exceeds iterjob.max_replication_lag_bytes (%s)',"
"               pg_catalog.current_setting('iterjob.max_replication_lag_bytes'))]"
"    FROM (SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn) AS bytes,"
"                 pg_catalog.format('to \"%s\"', r.application_name) AS who"
"            FROM pg_catalog.pg_stat_replication r"
"          UNION ALL"
"          SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn),"
"                 pg_catalog.format('to inactive slot \"%s\"', s.slot_name)"
"            FROM pg_catalog.pg_replication_slots s"
"           WHERE s.slot_type OPERATOR(pg_catalog.=) 'physical' AND NOT s.active) AS b"
"   WHERE $5 OPERATOR(pg_catalog.>=) 0 AND b.bytes OPERATOR(pg_catalog.>) $5"
"   ORDER BY b.bytes DESC LIMIT 1),"
" (SELECT ARRAY[pg_catalog.format('%s WAL files wait for archiving, more than iterjob.max_archive_backlog (%s)%s',"
"               a.ready, $6,"
"               (SELECT pg_catalog.format(', archive_command failing (%s failed at %s, %s)',"
"                       s.last_failed_wal, pg_catalog.date_trunc('seconds', s.last_failed_time),"
"                       COALESCE('no success since ' OPERATOR(pg_catalog.||)"
"                                pg_catalog.date_trunc('seconds', s.last_archived_time)::pg_catalog.text,"
"                                'no success recorded'))"
"                  FROM pg_catalog.pg_stat_archiver s"
"                 WHERE s.last_failed_time OPERATOR(pg_catalog.>)"
"                       COALESCE(s.last_archived_time, '-infinity'::pg_catalog.timestamptz))),"
"               pg_catalog.format('WAL archiving is behind: more WAL files wait for archiving than iterjob.max_archive_backlog (%s)',"
"               $6)]"
"    FROM (SELECT pg_catalog.count(*) AS ready"
"            FROM pg_catalog.pg_ls_archive_statusdir() f"
"           WHERE $6 OPERATOR(pg_catalog.>=) 0"
"             AND f.name OPERATOR(pg_catalog.~~) '%.ready') AS a"
"   WHERE $6 OPERATOR(pg_catalog.>=) 0 AND a.ready OPERATOR(pg_catalog.>) $6),"
" CASE WHEN $2 AND $3 OPERATOR(pg_catalog.<>) 0 AND EXISTS ("
"       SELECT FROM pg_catalog.pg_stat_progress_vacuum v"
"         JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) v.pid"
"        WHERE a.backend_type OPERATOR(pg_catalog.=) 'autovacuum worker'"
"          AND a.query OPERATOR(pg_catalog.!~~) '%(to prevent wraparound)'"
"          AND (v.relid OPERATOR(pg_catalog.=) $3 OR v.relid OPERATOR(pg_catalog.=) ANY ("
"              SELECT relid FROM pg_catalog.pg_partition_tree($3::pg_catalog.regclass))))"
"  THEN pg_catalog.array_fill('autovacuum is processing ' OPERATOR(pg_catalog.||)"
"                             $3::pg_catalog.regclass::pg_catalog.text, ARRAY[2])"
"  END) AS r) AS h";

/*
 * Should the instance hold before its next batch?  Returns why, or NULL,
 * and in *summary why without the figures only pg_read_all_stats may read.
 * Runs in a transaction with SPI connected; looks at most once a second,
 * keeping the last answer in between.
 */
char *
iterjob_health_check(IterjobThrottle *throttle, Oid relid, char **summary)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[6];
	char	   *reason = NULL;
	IterjobSavedUser saved;
	int			nest;
	int32		archive_backlog;
	GateQuestion question;

	*summary = NULL;
	/* the switch: no statement, and at every batch boundary */
	if (!iterjob_enabled)
	{
		throttle->held = true;
		*summary = pstrdup("iterjob.enabled is off");
		return *summary;
	}

	/* only a primary that archives has a backlog to watch */
	archive_backlog = XLogArchiveMode != ARCHIVE_MODE_OFF ? iterjob_max_archive_backlog : -1;
	if (iterjob_max_replication_lag_ms < 0 && iterjob_max_replication_lag_kb < 0 &&
		archive_backlog < 0 && !iterjob_hold_for_autovacuum)
	{
		throttle->held = false;
		return NULL;
	}
	/* the same question as the last open answer, within a second */
	question.relid = relid;
	question.max_lag_ms = iterjob_max_replication_lag_ms;
	question.test_lag_ms = iterjob_test_replication_lag_ms;
	question.max_lag_kb = iterjob_max_replication_lag_kb;
	question.archive_backlog = archive_backlog;
	question.hold_for_autovacuum = iterjob_hold_for_autovacuum;
	if (!throttle->held && now < gate_open_until &&
		same_question(&question, &gate_open_for))
		return NULL;

	args[0] = Int32GetDatum(iterjob_max_replication_lag_ms);
	args[1] = BoolGetDatum(iterjob_hold_for_autovacuum);
	args[2] = ObjectIdGetDatum(relid);
	args[3] = Int32GetDatum(iterjob_test_replication_lag_ms);
	args[4] = Int64GetDatum(iterjob_max_replication_lag_kb < 0 ? -1 :
							(int64) iterjob_max_replication_lag_kb * 1024);
	args[5] = Int32GetDatum(archive_backlog);
	/* as iterjob: the statistics views hide other roles' processes */
	nest = iterjob_begin_internal(&saved);
	if (health_plan == NULL)
	{
		Oid			types[6] = {INT4OID, BOOLOID, OIDOID, INT4OID, INT8OID, INT4OID};
		SPIPlanPtr	plan = SPI_prepare(health_sql, 6, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not plan iterjob's health gate: %s",
				 SPI_result_code_string(SPI_result));
		health_plan = plan;
	}
	if (SPI_execute_plan(health_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check iterjob's health gate");
	if (SPI_processed == 1)
	{
		reason = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		*summary = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	iterjob_end_internal(nest, &saved);

	/* autovacuum holds the instance for iterjob.autovacuum_hold_max at most */
	if (reason != NULL && strncmp(reason, "autovacuum", 10) == 0)
	{
		if (throttle->vacuum_hold_since == 0)
			throttle->vacuum_hold_since = now;
		else if (iterjob_autovacuum_hold_max_ms >= 0 &&
				 TimestampDifferenceExceeds(throttle->vacuum_hold_since, now,
											iterjob_autovacuum_hold_max_ms))
			reason = NULL;
	}
	else
		throttle->vacuum_hold_since = 0;
	throttle->held = (reason != NULL);
	gate_open_for = question;
	gate_open_until = reason == NULL ?
		TimestampTzPlusMilliseconds(now, HEALTH_CHECK_INTERVAL_MS) : 0;
	if (reason == NULL)
		*summary = NULL;
	return reason;
}
