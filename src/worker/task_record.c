/*-------------------------------------------------------------------------
 *
 * task_record.c
 *	  A task's bookkeeping: its checkpoints, holds, failed attempts and end,
 *	  and the end of its job.
 *
 *	  Everything here writes iterjob's own tables in an internal section
 *	  (run_as.c): as the bootstrap superuser, with search_path = pg_catalog,
 *	  pg_temp, through SQL that names no function, operator, cast or type
 *	  the job's owner could have defined.  A key reaches it only as jsonb,
 *	  computed as the owner (owner_statements.c).  Called inside the
 *	  worker's transactions, with SPI connected.  Ending a job runs its
 *	  on_complete as its owner: only a worker bound to that owner ends a
 *	  job that succeeded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/instrument.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/* the job's pacing settings, read back with every checkpoint and hold */
static const char *const pacing_sql =
"(SELECT ARRAY[j.batch_size::pg_catalog.int8,"
"     (pg_catalog.date_part('epoch', j.batch_pause) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,"
"     COALESCE(j.max_rows_per_second, 0)::pg_catalog.int8,"
"     COALESCE(pg_catalog.date_part('epoch', j.target_batch_time) OPERATOR(pg_catalog.*) 1000, 0)::pg_catalog.int8,"
"     COALESCE(j.max_wal_per_second, 0)]"
"   FROM iterjob.job j WHERE j.id OPERATOR(pg_catalog.=) job_id)";
#define PACING_VALUES 5

/*
 * The rate and the failed attempts a batch of $2 rows sets in the task row,
 * $4 being the batch that failed last (see the checkpoint below).
 */
#define RATE_AND_ATTEMPTS_SQL \
"       rows_per_second = CASE" \
"         WHEN updated_at IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.<=) updated_at" \
"         THEN rows_per_second" \
"         ELSE COALESCE((rows_per_second OPERATOR(pg_catalog.*) 0.7) OPERATOR(pg_catalog.+) (0.3" \
"                OPERATOR(pg_catalog.*) ($2 OPERATOR(pg_catalog./)" \
"                  pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) updated_at)))," \
"              $2 OPERATOR(pg_catalog./)" \
"                pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) updated_at))" \
"       END," \
"       attempts = CASE WHEN batches_done OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.>=) $4" \
"                       THEN 0 ELSE attempts END,"

/*
 * The checkpoint: $1 task, $2 rows, $3 the batch's last key as jsonb, $4
 * the number of the batch that failed last (0: none), whose failed
 * attempts count on until it commits (the batches before it run again
 * after a crash took their asynchronous commits back).  It
 * also keeps the instance's rate, a moving average over recent batches of
 * rows per second between two checkpoints (the first batch's counted from
 * the claim), pauses and throttling included.  A task paused, cancelled,
 * failed by the failure-ratio stop of another instance, or paused and
 * resumed (queued again) while its batch ran still commits
 * that batch (work and cursor agree); the worker then leaves it, and a
 * resumed task is claimed again from that cursor.  When $5 says the batch
 * was the instance's last (nothing follows it), the same update ends a
 * task still running, as iterjob_finish_task() would: one write of the
 * task row, not two, in the batch's transaction.  $6 is the WAL the task's
 * worker wrote since its last checkpoint (see iterjob_record_checkpoint()).
 */
static const char *const checkpoint_sql =
"UPDATE iterjob.task"
"   SET cursor = pg_catalog.jsonb_build_object('instance', instance, 'inner_cursor', %s)"
"                OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
"                  'shard', cursor OPERATOR(pg_catalog.->) 'shard',"
"                  'node', cursor OPERATOR(pg_catalog.->) 'node',"
"                  'seed', cursor OPERATOR(pg_catalog.->) 'seed')),"
"       rows_done = rows_done OPERATOR(pg_catalog.+) $2,"
"       shard_rows = CASE WHEN cursor OPERATOR(pg_catalog.?) 'shard'"
"         THEN COALESCE(shard_rows, '{}') OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object("
"                cursor OPERATOR(pg_catalog.->>) 'shard',"
"                COALESCE((shard_rows OPERATOR(pg_catalog.->>) (cursor OPERATOR(pg_catalog.->>) 'shard'))"
"                         ::pg_catalog.int8, 0) OPERATOR(pg_catalog.+) $2)"
"         ELSE shard_rows END,"
"       batches_done = batches_done OPERATOR(pg_catalog.+) 1,"
"       wal_bytes = wal_bytes OPERATOR(pg_catalog.+) $6,"
RATE_AND_ATTEMPTS_SQL
"       held_reason = NULL, updated_at = pg_catalog.clock_timestamp(),"
"       state = CASE WHEN $5 AND state OPERATOR(pg_catalog.=) 'running'"
"                    THEN 'succeeded' ELSE state END,"
"       worker_pid = CASE WHEN $5 AND state OPERATOR(pg_catalog.=) 'running'"
"                         THEN NULL ELSE worker_pid END,"
"       finished_at = CASE WHEN $5 AND state OPERATOR(pg_catalog.=) 'running'"
"                          THEN pg_catalog.now() ELSE finished_at END"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused,queued,cancelled,failed}'::pg_catalog.text[])"
" RETURNING state OPERATOR(pg_catalog.=) ANY ('{running,succeeded}'::pg_catalog.text[]), %s";

/*
 * partition => 'shard': after a batch committed on the shard's node ($6),
 * the task's figures, and a copy of the shard's cursor ($3) for the views:
 * $2 rows in the batch, $4 as in the checkpoint, $5 the rows the node
 * counts in the shard so far, which the shard's figure becomes (a batch
 * whose reply was lost, or an asynchronous commit a node crash took back,
 * is counted as the node counts it).
 */
static const char *const node_checkpoint_sql =
"UPDATE iterjob.task"
"   SET cursor = pg_catalog.jsonb_build_object('instance', instance, 'inner_cursor', $3,"
"                                              'shard', $6)"
"                OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
"                  'node', cursor OPERATOR(pg_catalog.->) 'node',"
"                  'seed', cursor OPERATOR(pg_catalog.->) 'seed')),"
"       rows_done = rows_done OPERATOR(pg_catalog.+) ($5 OPERATOR(pg_catalog.-)"
"         COALESCE((shard_rows OPERATOR(pg_catalog.->>) $6::pg_catalog.text)::pg_catalog.int8, 0)),"
"       shard_rows = COALESCE(shard_rows, '{}') OPERATOR(pg_catalog.||)"
"         pg_catalog.jsonb_build_object($6::pg_catalog.text, $5),"
"       batches_done = batches_done OPERATOR(pg_catalog.+) 1,"
RATE_AND_ATTEMPTS_SQL
"       held_reason = NULL, updated_at = pg_catalog.clock_timestamp()"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused,queued,cancelled,failed}'::pg_catalog.text[])"
" RETURNING state OPERATOR(pg_catalog.=) ANY ('{running,succeeded}'::pg_catalog.text[]), %s";

/*
 * $4 is the failed batch, $5 whether it was the last, $6 its WAL, then $7..
 * the key's columns
 */
#define CHECKPOINT_KEY_PARAM 7

static const char *const hold_sql =
"UPDATE iterjob.task SET held_reason = $2, held_summary = $3"
" WHERE id OPERATOR(pg_catalog.=) $1"
" RETURNING state OPERATOR(pg_catalog.=) 'running', %s";

/* partition => 'shard': the task goes on to shard $2, from its start */
static const char *const next_shard_sql =
"UPDATE iterjob.task"
"   SET cursor = pg_catalog.jsonb_build_object('instance', instance, 'shard', $2,"
"                                              'inner_cursor', NULL),"
"       updated_at = pg_catalog.clock_timestamp()"
" WHERE id OPERATOR(pg_catalog.=) $1"
" RETURNING state OPERATOR(pg_catalog.=) 'running', %s";

/*
 * partition => 'shard': the cursor of the task's shard is kept on node $2
 * from now on, starting after $3 (NULL: from the shard's start) if that
 * node has none for it yet.  Committed durably before any batch runs there.
 */
static const char *const shard_node_sql =
"UPDATE iterjob.task"
"   SET cursor = cursor OPERATOR(pg_catalog.-) 'seed'"
"                OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
"                  'node', $2, 'seed', $3)),"
"       updated_at = pg_catalog.clock_timestamp()"
" WHERE id OPERATOR(pg_catalog.=) $1"
" RETURNING state OPERATOR(pg_catalog.=) 'running', %s";

static SPIPlanPtr next_shard_plan = NULL;
static SPIPlanPtr node_checkpoint_plan = NULL;
static SPIPlanPtr shard_node_plan = NULL;

static const char *const foreground_cancel_sql =
"UPDATE iterjob.task SET foreground_cancels = foreground_cancels OPERATOR(pg_catalog.+) $3,"
"       slowed_at = pg_catalog.clock_timestamp(), slowed_reason = $2"
" WHERE id OPERATOR(pg_catalog.=) $1";
static SPIPlanPtr foreground_cancel_plan = NULL;

static const char *const log_error_sql =
"WITH t AS ("
"  UPDATE iterjob.task SET attempts = attempts OPERATOR(pg_catalog.+) 1,"
"         last_error = $2, updated_at = pg_catalog.now()"
"   WHERE id OPERATOR(pg_catalog.=) $1"
"  RETURNING job_id, instance, attempts, cursor, state),"
" e AS ("
"  INSERT INTO iterjob.error_log (logged_at, job_id, instance, attempt, cursor,"
"                                 sqlstate, message, detail, hint, context,"
"                                 job_batches)"
"  SELECT pg_catalog.now(), job_id, instance, attempts, cursor, $3, $2, $4, $5, $6,"
"         (SELECT pg_catalog.sum(o.batches_done) FROM iterjob.task o"
"           WHERE o.job_id OPERATOR(pg_catalog.=) t.job_id)"
"    FROM t)"
"SELECT attempts, state OPERATOR(pg_catalog.=) 'running' FROM t";

/*
 * The checkpoint's plan for a key of these types, kept.  It depends only
 * on the key's types, so a worker keeps the plans of the last few kinds of
 * key it met: a stream of jobs over one table plans its checkpoint once.
 * The cursor arrives as jsonb computed as the owner ($3) when the key's
 * types could carry the owner's code into it; otherwise as the key's
 * values ($7..), made jsonb here by built-in functions only (saving a
 * statement per batch).  SPI connected.
 */
#define KEPT_CHECKPOINTS 8

typedef struct KeptCheckpoint
{
	SPIPlanPtr	plan;
	int			nkeys;
	bool		user_defined;
	Oid			key_types[ITERJOB_MAX_KEYS];
} KeptCheckpoint;

SPIPlanPtr
iterjob_checkpoint_plan(const IterjobSpec *spec)
{
	static KeptCheckpoint kept[KEPT_CHECKPOINTS];
	static int	next_slot = 0;
	Oid			types[CHECKPOINT_KEY_PARAM - 1 + ITERJOB_MAX_KEYS] = {INT8OID, INT8OID, JSONBOID, INT8OID, BOOLOID, INT8OID};
	bool		user_defined = iterjob_key_types_user_defined(spec);
	KeptCheckpoint *slot;
	StringInfoData cursor;
	IterjobSavedUser saved;
	int			nargs = CHECKPOINT_KEY_PARAM - 1;
	int			nest;
	SPIPlanPtr	plan;

	for (int i = 0; i < KEPT_CHECKPOINTS; i++)
	{
		slot = &kept[i];
		/* with the cursor as jsonb, the key's types do not matter */
		if (slot->plan != NULL && slot->user_defined == user_defined &&
			(user_defined ||
			 (slot->nkeys == spec->nkeys &&
			  memcmp(slot->key_types, spec->key_types, sizeof(Oid) * spec->nkeys) == 0)))
			return slot->plan;
	}

	initStringInfo(&cursor);
	if (user_defined)
		appendStringInfoString(&cursor, "$3");
	else
	{
		appendStringInfoString(&cursor, spec->nkeys == 1 ? "pg_catalog.to_jsonb(" :
							   "pg_catalog.jsonb_build_array(");
		for (int i = 0; i < spec->nkeys; i++)
		{
			appendStringInfo(&cursor, "%s$%d", i > 0 ? ", " : "", CHECKPOINT_KEY_PARAM + i);
			types[nargs++] = spec->key_types[i];
		}
		appendStringInfoChar(&cursor, ')');
	}
	nest = iterjob_begin_internal(&saved);
	plan = SPI_prepare_cursor(psprintf(checkpoint_sql, cursor.data, pacing_sql), nargs, types,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare the checkpoint of an iterjob task");
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the checkpoint plan of an iterjob task");
	iterjob_end_internal(nest, &saved);

	slot = &kept[next_slot];
	next_slot = (next_slot + 1) % KEPT_CHECKPOINTS;
	if (slot->plan != NULL)
		SPI_freeplan(slot->plan);
	slot->plan = plan;
	slot->nkeys = spec->nkeys;
	slot->user_defined = user_defined;
	memset(slot->key_types, 0, sizeof(slot->key_types));
	memcpy(slot->key_types, spec->key_types, sizeof(Oid) * spec->nkeys);
	return plan;
}

/*
 * After a checkpoint or a hold: column 1 of the SPI result says whether the
 * task is still running, column 2 holds the job's pacing settings.
 */
static bool
read_state_and_pacing(IterjobTask *task)
{
	bool		isnull;
	Datum		running;
	Datum		pacing;

	if (SPI_processed != 1)
		elog(ERROR, "iterjob task " INT64_FORMAT " no longer exists", task->task_id);
	running = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	pacing = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
	{
		Datum	   *values;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(pacing), INT8OID, sizeof(int64), true,
						  TYPALIGN_DOUBLE, &values, NULL, &n);
		if (n == PACING_VALUES)
		{
			IterjobPacing p;

			p.batch_size = (int32) DatumGetInt64(values[0]);
			p.batch_pause_ms = (int32) DatumGetInt64(values[1]);
			p.max_rows_per_second = (int32) DatumGetInt64(values[2]);
			p.target_batch_ms = (int32) DatumGetInt64(values[3]);
			p.max_wal_per_second = DatumGetInt64(values[4]);
			iterjob_throttle_set_pacing(&task->throttle, &p);
		}
	}
	return DatumGetBool(running);
}

/*
 * Checkpoint a batch of rows keys whose last key's jsonb form is cursor.
 * Returns whether the task is still running; for the instance's last
 * batch, whether this ended the task (it succeeded: the caller runs the
 * instance's hook, locks the job and settles it, and the transaction
 * commits durably; a task paused meanwhile ends when it is resumed, with
 * an empty batch).
 *
 * The task's wal_bytes grows by the WAL this process wrote since the
 * task's last checkpoint (task->wal_counted, which the caller moves to
 * task->wal_checkpointed once the batch commits): the batch's own, and
 * that of the previous checkpoint's update and commit, of attempts rolled
 * back since, and of holds.
 */
bool
iterjob_record_checkpoint(IterjobTask *task, SPIPlanPtr plan, uint64 rows,
						  Datum cursor, const Datum *key, bool last)
{
	Datum		args[CHECKPOINT_KEY_PARAM - 1 + ITERJOB_MAX_KEYS] = {Int64GetDatum(task->task_id),
		Int64GetDatum((int64) rows), cursor, Int64GetDatum(task->retry_batch), BoolGetDatum(last)};
	char		nulls[CHECKPOINT_KEY_PARAM - 1 + ITERJOB_MAX_KEYS];
	IterjobSavedUser saved;
	int			nest;
	int			ret;
	bool		running;

	task->wal_checkpointed = pgWalUsage.wal_bytes;
	args[5] = Int64GetDatum((int64) (task->wal_checkpointed - task->wal_counted));
	memset(nulls, ' ', sizeof(nulls));
	nulls[2] = cursor == (Datum) 0 ? 'n' : ' ';
	for (int i = 0; i < task->spec.nkeys; i++)
		args[CHECKPOINT_KEY_PARAM - 1 + i] = key[i];
	nest = iterjob_begin_internal(&saved);
	ret = SPI_execute_plan(plan, args, nulls, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "checkpoint failed: %s", SPI_result_code_string(ret));
	running = read_state_and_pacing(task);
	iterjob_end_internal(nest, &saved);
	return running;
}

/*
 * The kept plan (kept_plans.c) of a statement that returns the task's
 * state and pacing: sql with pacing_sql in place of its %s.  As iterjob.
 */
static SPIPlanPtr
paced_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
		return iterjob_kept_plan(plan, psprintf(sql, pacing_sql), nargs, types);
	return *plan;
}

/*
 * The health gate said hold: say why in the task row, in full and as the
 * summary the views show to roles that may not read the statistics the
 * full reason quotes.  Returns whether the task is still running.
 */
bool
iterjob_record_hold(IterjobTask *task, const char *reason, const char *summary)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		args[3] = {Int64GetDatum(task->task_id), CStringGetTextDatum(reason),
	CStringGetTextDatum(summary ? summary : "held")};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		running;

	if (SPI_execute_with_args(psprintf(hold_sql, pacing_sql), 3, types, args, NULL,
							  false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record why iterjob task " INT64_FORMAT " holds",
			 task->task_id);
	running = read_state_and_pacing(task);
	iterjob_end_internal(nest, &saved);
	return running;
}

/*
 * The task's current shard has no key left: move its cursor to the start
 * of its next shard, in the batch's transaction.  Returns whether the task
 * is still running.
 */
bool
iterjob_record_next_shard(IterjobTask *task)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(task->task_id),
	Int64GetDatum(task->shards[task->shard_index + 1])};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		running;

	if (iterjob_execute_kept(paced_plan(&next_shard_plan, next_shard_sql, 2, types),
							 args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not move iterjob task " INT64_FORMAT " to its next shard",
			 task->task_id);
	running = read_state_and_pacing(task);
	iterjob_end_internal(nest, &saved);
	return running;
}

/*
 * partition => 'shard': a batch of rows keys committed on the node of
 * shard, whose cursor is now cursor (jsonb) and which counts shard_rows
 * done.  Returns whether the task is still running.
 */
bool
iterjob_record_node_checkpoint(IterjobTask *task, int64 shard, uint64 rows, Datum cursor,
							   int64 shard_rows)
{
	Oid			types[6] = {INT8OID, INT8OID, JSONBOID, INT8OID, INT8OID, INT8OID};
	Datum		args[6] = {Int64GetDatum(task->task_id), Int64GetDatum((int64) rows), cursor,
		Int64GetDatum(task->retry_batch), Int64GetDatum(shard_rows), Int64GetDatum(shard)};
	char		nulls[6] = {' ', ' ', cursor == (Datum) 0 ? 'n' : ' ', ' ', ' ', ' '};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		running;

	if (iterjob_execute_kept(paced_plan(&node_checkpoint_plan, node_checkpoint_sql, 6, types),
							 args, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record a batch of iterjob task " INT64_FORMAT, task->task_id);
	running = read_state_and_pacing(task);
	iterjob_end_internal(nest, &saved);
	return running;
}

/*
 * The task's shard keeps its cursor on node from now on, starting after
 * seed there (NULL: from the shard's start).  Returns whether the task is
 * still running.
 */
bool
iterjob_record_shard_node(IterjobTask *task, int32 node, const char *seed)
{
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		args[3] = {Int64GetDatum(task->task_id), Int32GetDatum(node),
	seed ? CStringGetTextDatum(seed) : (Datum) 0};
	char		nulls[3] = {' ', ' ', seed ? ' ' : 'n'};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		running;

	if (iterjob_execute_kept(paced_plan(&shard_node_plan, shard_node_sql, 3, types),
							 args, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record the node of iterjob task " INT64_FORMAT "'s shard",
			 task->task_id);
	running = read_state_and_pacing(task);
	iterjob_end_internal(nest, &saved);
	return running;
}

static void
set_nullable_text(Datum *arg, char *null, const char *value)
{
	*arg = value ? CStringGetTextDatum(value) : (Datum) 0;
	*null = value ? ' ' : 'n';
}

/*
 * The task slowed down for a foreground session, for reason: say so in its
 * row for the views, counting a cancelled batch (cancelled: 1) or not.
 */
static void
record_slowed(IterjobTask *task, const char *reason, int64 cancelled)
{
	Oid			types[3] = {INT8OID, TEXTOID, INT8OID};
	Datum		args[3] = {Int64GetDatum(task->task_id), CStringGetTextDatum(reason),
	Int64GetDatum(cancelled)};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	if (iterjob_execute_kept(iterjob_kept_plan(&foreground_cancel_plan, foreground_cancel_sql,
											   3, types),
							 args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record a slowdown of iterjob task " INT64_FORMAT,
			 task->task_id);
	iterjob_end_internal(nest, &saved);
}

/*
 * A batch was cancelled because session pid had waited waited_ms for one
 * of its locks (foreground_watch.c): count it, and say so in the task row
 * for the views.  No failed attempt.
 */
void
iterjob_record_foreground_cancel(IterjobTask *task, int32 pid, int32 waited_ms)
{
	record_slowed(task,
				  psprintf("a batch of %d keys was cancelled: session %d waited %d ms for one of its locks",
						   (int) task->batch_keys, pid, waited_ms),
				  1);
}

/* The task is paced for foreground sessions' WAL waits (foreground_pacing.c). */
void
iterjob_record_foreground_pacing(IterjobTask *task, const char *reason)
{
	record_slowed(task, psprintf("paced: %s", reason), 0);
}

/*
 * Count a failed attempt of a batch (rolled back already) and log it in
 * iterjob.error_log.  Sets *attempts to the task's failed attempts in a
 * row; returns whether the task is still running.
 */
bool
iterjob_record_failure(IterjobTask *task, ErrorData *edata, int32 *attempts)
{
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		isnull;
	bool		running;

	args[0] = Int64GetDatum(task->task_id);
	set_nullable_text(&args[1], &nulls[1], edata->message ? edata->message : "unknown error");
	set_nullable_text(&args[2], &nulls[2], unpack_sql_state(edata->sqlerrcode));
	set_nullable_text(&args[3], &nulls[3], edata->detail);
	set_nullable_text(&args[4], &nulls[4], edata->hint);
	set_nullable_text(&args[5], &nulls[5], edata->context);
	if (SPI_execute_with_args(log_error_sql, 6, types, args, nulls,
							  false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record the failure of iterjob task " INT64_FORMAT,
			 task->task_id);
	*attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	running = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 2, &isnull));
	iterjob_end_internal(nest, &saved);
	return running;
}

/*
 * The failure-ratio stop, after a failed attempt was logged (in the same
 * transaction).  The job's last failure_window batch attempts, across its
 * instances, are its failures in iterjob.error_log and its committed
 * batches: the i-th most recent failure, logged when the job had
 * job_batches committed batches, is within the window when i plus the
 * batches committed since then is at most the window.  Failures before
 * the job's last iterjob.retry() do not count.  Counts those failures, and
 * says whether there are more than max_failure_ratio x failure_window.
 * Costs nothing per committed batch: the batches are counted from the
 * tasks' batches_done.
 */
static const char *const failure_ratio_sql =
"WITH j AS ("
"  SELECT j.failure_window AS w, j.max_failure_ratio AS r, j.failures_counted_from AS since,"
"         (SELECT pg_catalog.sum(t.batches_done) FROM iterjob.task t"
"           WHERE t.job_id OPERATOR(pg_catalog.=) j.id) AS batches"
"    FROM iterjob.job j"
"   WHERE j.id OPERATOR(pg_catalog.=) $1"
"     AND j.failure_window OPERATOR(pg_catalog.>) 0"
"     AND j.max_failure_ratio OPERATOR(pg_catalog.>) 0),"
" f AS ("
"  SELECT pg_catalog.row_number() OVER (ORDER BY e.id DESC) AS i, e.job_batches"
"    FROM iterjob.error_log e, j"
"   WHERE e.job_id OPERATOR(pg_catalog.=) $1 AND e.job_batches IS NOT NULL"
"     AND (j.since IS NULL OR e.logged_at OPERATOR(pg_catalog.>=) j.since)"
"   ORDER BY e.id DESC LIMIT (SELECT w FROM j))"
"SELECT n, w, r, n OPERATOR(pg_catalog.>) (r OPERATOR(pg_catalog.*) w)"
"  FROM (SELECT pg_catalog.count(*) FILTER (WHERE (f.i OPERATOR(pg_catalog.+)"
"                 GREATEST(j.batches OPERATOR(pg_catalog.-) f.job_batches, 0))"
"                 OPERATOR(pg_catalog.<=) j.w)::pg_catalog.int4 AS n, j.w, j.r"
"          FROM j LEFT JOIN f ON true GROUP BY j.w, j.r) s";

/*
 * After a failed attempt of the task's job: too many of its recent batch
 * attempts failed?  Returns why (the task's and job's last_error), or NULL.
 */
char *
iterjob_check_failure_ratio(IterjobTask *task)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(task->job_id);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	char	   *why = NULL;

	if (SPI_execute_with_args(failure_ratio_sql, 1, &type, &arg, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not count the failed attempts of iterjob job " INT64_FORMAT,
			 task->job_id);
	if (SPI_processed == 1)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HeapTuple	tup = SPI_tuptable->vals[0];
		bool		isnull;
		bool		over = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));

		if (!isnull && over)
			why = psprintf("%s of the last %s batch attempts failed (more than max_failure_ratio %s)",
						   SPI_getvalue(tup, desc, 1), SPI_getvalue(tup, desc, 2),
						   SPI_getvalue(tup, desc, 3));
	}
	iterjob_end_internal(nest, &saved);
	return why;
}

/*
 * The failure-ratio stop ends the whole job: its other open instances
 * fail too, with the same reason, locked in id order (two instances that
 * stop the job at once cannot deadlock), and their workers leave them at
 * their next batch boundary (a batch running meanwhile still commits, with
 * its checkpoint).  In its own transaction, after the failure that stopped
 * the job committed.
 */
static const char *const fail_instances_sql =
"WITH l AS (SELECT id FROM iterjob.task"
"            WHERE job_id OPERATOR(pg_catalog.=) $1"
"              AND state OPERATOR(pg_catalog.=) ANY ('{queued,running,paused}'::pg_catalog.text[])"
"            ORDER BY id FOR UPDATE),"
" t AS (UPDATE iterjob.task t SET state = 'failed', last_error = $2, worker_pid = NULL,"
"              held_reason = NULL, finished_at = pg_catalog.now(), updated_at = pg_catalog.now()"
"         FROM l WHERE t.id OPERATOR(pg_catalog.=) l.id)"
"UPDATE iterjob.job SET last_error = $2 WHERE id OPERATOR(pg_catalog.=) $1";

void
iterjob_fail_job(int64 job_id, const char *why)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2] = {Int64GetDatum(job_id), CStringGetTextDatum(why)};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	if (SPI_execute_with_args(fail_instances_sql, 2, types, args, NULL,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not fail the instances of iterjob job " INT64_FORMAT, job_id);
	iterjob_end_internal(nest, &saved);
	iterjob_signal_workers_at_commit(job_id);
	iterjob_settle_job(job_id);
}

/* backoff before retrying a failed batch: 1 s, doubling, at most 30 s */
#define RETRY_BASE_MS	1000
#define RETRY_MAX_MS	30000

long
iterjob_retry_backoff_ms(int32 attempts)
{
	long		ms = RETRY_BASE_MS;

	for (int i = 1; i < attempts && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	return Min(ms, RETRY_MAX_MS);
}

/*
 * At the claim of a task whose worker died in a batch: that batch was a
 * failed attempt.  Log it like any failure; task->failed says whether it
 * was the last attempt, task->retry_ms how long to back off otherwise.
 */
void
iterjob_record_death(IterjobTask *task)
{
	ErrorData	edata;
	int32		attempts;

	memset(&edata, 0, sizeof(edata));
	edata.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	if (task->death.overran_ms > 0)
	{
		edata.sqlerrcode = ERRCODE_QUERY_CANCELED;
		edata.message = psprintf("worker terminated: the batch went on past its statement timeout of %d ms",
								 task->death.overran_ms);
		edata.detail = "The batch did not stop when its statement timeout cancelled it (does the action catch query_canceled?); the launcher terminated its worker.";
	}
	else if (task->death.crash)
	{
		edata.message = "worker died during this batch: the server restarted after a crash";
		edata.detail = "A process ended by a signal, a segfault or an out-of-memory kill; the server log names it.";
	}
	else
	{
		edata.message = "worker died during this batch";
		edata.detail = psprintf("It exited with code %d (a FATAL error, for example after pg_terminate_backend()).",
								task->death.exit_code);
	}
	if (task->death.overran_ms > 0)
		task->death_message = MemoryContextStrdup(task->cxt, edata.message);
	if (!iterjob_record_failure(task, &edata, &attempts))
		return;
	task->failed = attempts >= task->spec.max_attempts;
	task->retry_ms = task->failed ? 0 : iterjob_retry_backoff_ms(attempts);
	task->retry_batch = task->death.batch_no;
	ereport(LOG,
			(errmsg("iterjob: job " INT64_FORMAT " instance %d: %s (attempt %d of %d)",
					task->job_id, task->instance, edata.message, attempts,
					task->spec.max_attempts),
			 task->failed ? errdetail("The instance has failed.") :
			 errdetail("Retrying in %ld ms.", task->retry_ms)));
}

/* Is the task still ours to run (state running)? */
bool
iterjob_task_still_running(IterjobTask *task)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(task->task_id);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		running = false;

	if (SPI_execute_with_args("SELECT state OPERATOR(pg_catalog.=) 'running'"
							  "  FROM iterjob.task WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		isnull;

		running = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	iterjob_end_internal(nest, &saved);
	return running;
}

static const char *const finish_task_sql =
"UPDATE iterjob.task"
"   SET state = $2, last_error = COALESCE($3, last_error),"
"       worker_pid = NULL, held_reason = NULL, finished_at = pg_catalog.now(),"
"       updated_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused,queued}'::pg_catalog.text[])";

/*
 * Lock the job row: concurrent finishers of one job serialize here.  With
 * an error to note, by updating it; without, by a row lock of the same
 * strength, which writes no new version of the row (nor checks its
 * constraints).
 */
static const char *const note_job_error_sql =
"UPDATE iterjob.job SET last_error = $2"
" WHERE id OPERATOR(pg_catalog.=) $1";
static const char *const lock_job_sql =
"SELECT FROM iterjob.job WHERE id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE";

/*
 * A job ends when none of its tasks is queued, running or paused: cancelled
 * if one was cancelled, else failed if one failed, else succeeded.
 */
static const char *const end_job_sql =
"UPDATE iterjob.job j"
"   SET state = CASE WHEN s.cancelled OPERATOR(pg_catalog.>) 0 THEN 'cancelled'"
"                    WHEN s.failed OPERATOR(pg_catalog.>) 0 THEN 'failed'"
"                    ELSE 'succeeded' END,"
"       finished_at = pg_catalog.now()"
"  FROM (SELECT pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=)"
"                 ANY ('{queued,running,paused}'::pg_catalog.text[])) AS open,"
"               pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'failed') AS failed,"
"               pg_catalog.count(*) FILTER (WHERE state OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,"
"               pg_catalog.sum(rows_done) AS rows_done,"
"               pg_catalog.sum(batches_done) AS batches_done"
"          FROM iterjob.task WHERE job_id OPERATOR(pg_catalog.=) $1) s"
" WHERE j.id OPERATOR(pg_catalog.=) $1 AND s.open OPERATOR(pg_catalog.=) 0"
"   AND j.state OPERATOR(pg_catalog.<>) ALL ('{succeeded,failed,cancelled}'::pg_catalog.text[])"
" RETURNING j.state, s.rows_done, s.batches_done,"
"           pg_catalog.round(pg_catalog.date_part('epoch',"
"               pg_catalog.now() OPERATOR(pg_catalog.-) j.started_at)::pg_catalog.numeric, 3),"
"           j.on_complete, j.owner, j.search_path,"
"           (pg_catalog.date_part('epoch', j.lock_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4";

/* their kept plans (kept_plans.c) */
static SPIPlanPtr finish_task_plan = NULL;
static SPIPlanPtr note_job_error_plan = NULL;
static SPIPlanPtr lock_job_plan = NULL;
static SPIPlanPtr end_job_plan = NULL;

/*
 * Run a job's on_complete statement as its owner, in the transaction that
 * ends the job.
 */
static void
run_on_complete(int64 job_id, const char *sql, Oid owner,
				const char *search_path, int lock_timeout_ms)
{
	IterjobSavedUser saved;
	int			nest;

	iterjob_check_owner(owner, job_id);
	/* the owner's SQL runs only in a process bound to the owner */
	if (GetSessionUserId() != owner)
		elog(ERROR, "on_complete of iterjob job " INT64_FORMAT " must run in a process bound to its owner",
			 job_id);
	nest = iterjob_begin_owner_section(owner, search_path, lock_timeout_ms,
									   false, &saved);
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "on_complete of iterjob job " INT64_FORMAT " failed", job_id);
	iterjob_end_owner_section(nest, &saved);
}

/*
 * End the job if it has no open task left (called with its row locked),
 * running its on_complete as its owner.  Logs the outcome.
 */
void
iterjob_settle_job(int64 job_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(job_id);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	if (iterjob_execute_kept(iterjob_kept_plan(&end_job_plan, end_job_sql, 1, &type),
						 &arg, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not end iterjob job " INT64_FORMAT, job_id);
	if (SPI_processed == 1)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HeapTuple	tup = SPI_tuptable->vals[0];
		char	   *state = SPI_getvalue(tup, desc, 1);
		char	   *seconds = SPI_getvalue(tup, desc, 4);
		char	   *on_complete = SPI_getvalue(tup, desc, 5);
		bool		isnull;

		ereport(LOG,
				(errmsg("iterjob: job " INT64_FORMAT " %s: %s rows in %s batches, %s s",
						job_id, state, SPI_getvalue(tup, desc, 2),
						SPI_getvalue(tup, desc, 3), seconds ? seconds : "0")));
		if (on_complete != NULL && strcmp(state, "succeeded") == 0)
			run_on_complete(job_id, on_complete,
							DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull)),
							SPI_getvalue(tup, desc, 7),
							DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull)));
		iterjob_end_dependents(job_id, state);
		iterjob_notify_waiters_at_commit();
	}
	iterjob_end_internal(nest, &saved);
}

/*
 * Record that a task ended in state ("succeeded" or "failed", with error),
 * in the transaction of its final checkpoint, so both commit together,
 * durably; locks its job's row.  A task cancelled meanwhile stays
 * cancelled: returns false then.  A task paused, or paused and resumed,
 * while its last batch ran (its worker still holds it) ends all the same.
 * The caller then runs the instance's hook, if it ended, and settles the
 * job.
 */
bool
iterjob_finish_task(IterjobTask *task, const char *state, const char *error)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', error ? ' ' : 'n'};
	IterjobSavedUser saved;
	int			nest;
	bool		ended;

	iterjob_commit_durably();
	nest = iterjob_begin_internal(&saved);
	args[0] = Int64GetDatum(task->task_id);
	args[1] = CStringGetTextDatum(state);
	args[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (iterjob_execute_kept(iterjob_kept_plan(&finish_task_plan, finish_task_sql, 3, types),
						 args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not end iterjob task " INT64_FORMAT, task->task_id);
	ended = SPI_processed == 1;
	iterjob_end_internal(nest, &saved);
	iterjob_lock_job(task->job_id, error);
	return ended;
}

/*
 * Lock the row of a job whose task has just ended (noting error, if any,
 * as the job's last): concurrent finishers of one job serialize here, so
 * that the last one settles it.
 */
void
iterjob_lock_job(int64 job_id, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = {' ', error ? ' ' : 'n'};
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	args[0] = Int64GetDatum(job_id);
	args[1] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (error != NULL ?
		iterjob_execute_kept(iterjob_kept_plan(&note_job_error_plan, note_job_error_sql, 2, types),
						 args, nulls, false, 0) != SPI_OK_UPDATE :
		iterjob_execute_kept(iterjob_kept_plan(&lock_job_plan, lock_job_sql, 1, types),
						 args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock iterjob job " INT64_FORMAT, job_id);
	iterjob_end_internal(nest, &saved);
}
