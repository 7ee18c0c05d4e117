/*-------------------------------------------------------------------------
 *
 * task_runner.c
 *	  Runs one claimed task batch by batch.
 *
 *	  Each batch is one transaction: the keyset query fetches the next
 *	  batch_size keys of the instance's partition after its cursor, the
 *	  action runs on them as the job's owner, and the cursor and counters are
 *	  checkpointed; then the transaction commits.  The work and its
 *	  checkpoint therefore commit together or not at all.  The keyset
 *	  queries and the action are prepared once per task.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "iterjob.h"
#include "task.h"

typedef enum BatchOutcome
{
	BATCH_MORE,					/* a batch committed; go on */
	BATCH_LAST,					/* the task ended and that was committed */
	BATCH_STOPPED,				/* paused, cancelled or gone: leave the task */
	BATCH_RETRY,				/* the batch failed and will be retried */
	BATCH_HELD,					/* the health gate said hold: nothing ran */
	BATCH_LEFT					/* paused or cancelled while held: leave */
} BatchOutcome;

/* how long a held instance waits before looking at the health gate again */
#define HOLD_RECHECK_MS 1000

/* backoff before retrying a failed batch: 1 s, doubling, at most 30 s */
#define RETRY_BASE_MS	1000
#define RETRY_MAX_MS	30000

typedef struct TaskPlans
{
	SPIPlanPtr	first;			/* keyset query without a lower bound */
	SPIPlanPtr	next;			/* keyset query after $1.. */
	SPIPlanPtr	action;
	SPIPlanPtr	checkpoint;
	int16		keylen[ITERJOB_MAX_KEYS];
	bool		keybyval[ITERJOB_MAX_KEYS];
	char		keyalign[ITERJOB_MAX_KEYS];
	MemoryContext pending_cxt;	/* the batch's last key, until it commits */
} TaskPlans;

/* the job's pacing settings, read back with every checkpoint */
static const char *const pacing_sql =
"(SELECT ARRAY[j.batch_size,"
"     (pg_catalog.date_part('epoch', j.batch_pause) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"
"     COALESCE(j.max_rows_per_second, 0),"
"     COALESCE(pg_catalog.date_part('epoch', j.target_batch_time) OPERATOR(pg_catalog.*) 1000, 0)::pg_catalog.int4]"
"   FROM iterjob.job j WHERE j.id OPERATOR(pg_catalog.=) job_id)";

static const char *const hold_sql =
"UPDATE iterjob.task SET held_reason = $2"
" WHERE id OPERATOR(pg_catalog.=) $1"
" RETURNING state OPERATOR(pg_catalog.=) 'running', %s";

/*
 * The checkpoint: $1 task, $2 rows, $3.. the batch's last key.  It also
 * keeps the instance's rate, a moving average over recent batches of rows
 * per second between two checkpoints (the first batch's counted from the
 * claim), pauses and throttling included.  A task paused, cancelled, or
 * paused and resumed (queued again) while its batch ran still commits that
 * batch (work and cursor agree); the worker then leaves it, and a resumed
 * task is claimed again from that cursor.
 */
static char *
checkpoint_sql(const IterjobSpec *spec)
{
	StringInfoData cursor;

	initStringInfo(&cursor);
	if (spec->nkeys == 1)
		appendStringInfoString(&cursor, "pg_catalog.to_jsonb($3)");
	else
	{
		appendStringInfoString(&cursor, "pg_catalog.jsonb_build_array(");
		for (int i = 0; i < spec->nkeys; i++)
			appendStringInfo(&cursor, "%s$%d", i > 0 ? ", " : "", i + 3);
		appendStringInfoChar(&cursor, ')');
	}
	return psprintf("UPDATE iterjob.task"
					"   SET cursor = pg_catalog.jsonb_build_object('instance', instance,"
					"                                              'inner_cursor', %s),"
					"       rows_done = rows_done OPERATOR(pg_catalog.+) $2,"
					"       batches_done = batches_done OPERATOR(pg_catalog.+) 1,"
					"       rows_per_second = CASE"
					"         WHEN updated_at IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.<=) updated_at"
					"         THEN rows_per_second"
					"         ELSE COALESCE((rows_per_second OPERATOR(pg_catalog.*) 0.7) OPERATOR(pg_catalog.+) (0.3"
					"                OPERATOR(pg_catalog.*) ($2 OPERATOR(pg_catalog./)"
					"                  pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) updated_at))),"
					"              $2 OPERATOR(pg_catalog./)"
					"                pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) updated_at))"
					"       END,"
					"       attempts = 0, held_reason = NULL, updated_at = pg_catalog.clock_timestamp()"
					" WHERE id OPERATOR(pg_catalog.=) $1"
					"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused,queued,cancelled}'::pg_catalog.text[])"
					" RETURNING state OPERATOR(pg_catalog.=) 'running', %s",
					cursor.data, pacing_sql);
}

static const char *const log_error_sql =
"WITH t AS ("
"  UPDATE iterjob.task SET attempts = attempts OPERATOR(pg_catalog.+) 1,"
"         last_error = $2, updated_at = pg_catalog.now()"
"   WHERE id OPERATOR(pg_catalog.=) $1"
"  RETURNING job_id, instance, attempts, cursor, state),"
" e AS ("
"  INSERT INTO iterjob.error_log (logged_at, job_id, instance, attempt, cursor,"
"                                 sqlstate, message, detail, hint, context)"
"  SELECT pg_catalog.now(), job_id, instance, attempts, cursor, $3, $2, $4, $5, $6"
"    FROM t)"
"SELECT attempts, state FROM t";

static int
begin_owner_section(IterjobTask *task, bool keyset_planner,
					IterjobSavedUser *saved)
{
	return iterjob_begin_owner_section(task->owner, task->search_path,
									   task->spec.lock_timeout_ms,
									   keyset_planner, saved);
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

static void
prepare_plans(IterjobTask *task, TaskPlans *plans)
{
	IterjobSpec *spec = &task->spec;
	IterjobSavedUser saved;
	Oid			arraytypes[ITERJOB_MAX_KEYS];
	Oid			checkpoint_types[ITERJOB_MAX_KEYS + 2] = {INT8OID, INT8OID};
	Oid			next_types[ITERJOB_MAX_KEYS + 1];
	int			nest;

	for (int i = 0; i < spec->nkeys; i++)
	{
		get_typlenbyvalalign(spec->key_types[i], &plans->keylen[i],
							 &plans->keybyval[i], &plans->keyalign[i]);
		arraytypes[i] = iterjob_key_array_type(spec->key_types[i]);
		checkpoint_types[i + 2] = spec->key_types[i];
	}
	plans->checkpoint = prepare_kept(checkpoint_sql(spec), spec->nkeys + 2,
									 checkpoint_types, 0);

	for (int i = 0; i < spec->nkeys; i++)
		next_types[i] = spec->key_types[i];
	next_types[spec->nkeys] = INT4OID;	/* the batch size */

	nest = begin_owner_section(task, true, &saved);
	plans->first = prepare_kept(iterjob_keyset_query(spec, task->instance,
													 &task->range, false, true),
								1, next_types + spec->nkeys, CURSOR_OPT_GENERIC_PLAN);
	plans->next = prepare_kept(iterjob_keyset_query(spec, task->instance,
													&task->range, true, true),
							   spec->nkeys + 1, next_types, CURSOR_OPT_GENERIC_PLAN);
	iterjob_end_owner_section(nest, &saved);

	nest = begin_owner_section(task, false, &saved);
	plans->action = prepare_kept(spec->action, spec->nkeys, arraytypes, 0);
	iterjob_end_owner_section(nest, &saved);

	plans->pending_cxt = AllocSetContextCreate(task->cxt, "iterjob pending cursor",
											   ALLOCSET_SMALL_SIZES);
}

static void
free_plans(TaskPlans *plans)
{
	if (plans->first)
		SPI_freeplan(plans->first);
	if (plans->next)
		SPI_freeplan(plans->next);
	if (plans->action)
		SPI_freeplan(plans->action);
	if (plans->checkpoint)
		SPI_freeplan(plans->checkpoint);
	memset(plans, 0, sizeof(*plans));
}

/*
 * After a checkpoint or a hold: column 1 of the SPI result says whether the
 * task is still running, column 2 holds the job's pacing settings.
 */
static BatchOutcome
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

		deconstruct_array(DatumGetArrayTypeP(pacing), INT4OID, 4, true, TYPALIGN_INT,
						  &values, NULL, &n);
		if (n == 4)
		{
			IterjobPacing p;

			p.batch_size = DatumGetInt32(values[0]);
			p.batch_pause_ms = DatumGetInt32(values[1]);
			p.max_rows_per_second = DatumGetInt32(values[2]);
			p.target_batch_ms = DatumGetInt32(values[3]);
			iterjob_throttle_set_pacing(&task->throttle, &p);
		}
	}
	return DatumGetBool(running) ? BATCH_MORE : BATCH_STOPPED;
}

/* The health gate said hold: say why in the task row, run nothing. */
static BatchOutcome
hold(IterjobTask *task, const char *reason)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2] = {Int64GetDatum(task->task_id), CStringGetTextDatum(reason)};

	iterjob_set_phase("held");
	if (SPI_execute_with_args(psprintf(hold_sql, pacing_sql), 2, types, args, NULL,
							  false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record why iterjob task " INT64_FORMAT " holds",
			 task->task_id);
	return read_state_and_pacing(task) == BATCH_MORE ? BATCH_HELD : BATCH_LEFT;
}

/* The instance's last batch came back empty: run its hook, end it. */
static BatchOutcome
finish_instance(IterjobTask *task)
{
	iterjob_set_phase("finishing");
	if (task->spec.on_instance_complete != NULL)
	{
		IterjobSavedUser saved;
		Oid			type = INT4OID;
		Datum		arg = Int32GetDatum(task->instance);
		int			nest = begin_owner_section(task, false, &saved);

		if (SPI_execute_with_args(task->spec.on_instance_complete, 1, &type,
								  &arg, NULL, false, 0) < 0)
			elog(ERROR, "on_instance_complete failed");
		iterjob_end_owner_section(nest, &saved);
	}
	iterjob_finish_task(task, "succeeded", NULL);
	return BATCH_LAST;
}

/*
 * The body of one batch, inside its transaction with SPI connected.  The
 * batch's last key goes to plans->pending_cxt and into pending[]; the
 * task's cursor only moves once the transaction has committed.
 */
static BatchOutcome
do_batch(IterjobTask *task, TaskPlans *plans, Datum *pending)
{
	IterjobSpec *spec = &task->spec;
	IterjobSavedUser saved;
	Datum		arrays[ITERJOB_MAX_KEYS];
	Datum		cp_args[ITERJOB_MAX_KEYS + 2];
	Datum		keyset_args[ITERJOB_MAX_KEYS + 1];
	Datum	   *keys;
	char	   *held;
	BatchOutcome outcome;
	uint64		n;
	int			nest;
	int			ret;

	iterjob_check_owner(task->owner, task->job_id);
	if (plans->action == NULL)
		prepare_plans(task, plans);

	held = iterjob_health_check(&task->throttle, spec->relid);
	if (held != NULL)
		return hold(task, held);

	iterjob_set_phase("keyset query");
	for (int k = 0; k < spec->nkeys; k++)
		keyset_args[k] = task->cursor[k];
	keyset_args[spec->nkeys] = Int32GetDatum(task->throttle.batch_size);
	nest = begin_owner_section(task, true, &saved);
	if (task->has_cursor)
		ret = SPI_execute_plan(plans->next, keyset_args, NULL, false, 0);
	else
		ret = SPI_execute_plan(plans->first, keyset_args + spec->nkeys, NULL, false, 0);
	iterjob_end_owner_section(nest, &saved);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "keyset query failed: %s", SPI_result_code_string(ret));

	n = SPI_processed;
	if (n == 0)
		return finish_instance(task);

	/* one array per key column */
	keys = palloc(sizeof(Datum) * n);
	MemoryContextReset(plans->pending_cxt);
	for (int k = 0; k < spec->nkeys; k++)
	{
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			keys[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
									k + 1, &isnull);
			if (isnull)
				elog(ERROR, "keyset query returned a NULL key");
		}
		arrays[k] = PointerGetDatum(construct_array(keys, (int) n, spec->key_types[k],
													plans->keylen[k], plans->keybyval[k],
													plans->keyalign[k]));
		/* keep the last key beyond this transaction */
		pending[k] = keys[n - 1];
		if (!plans->keybyval[k])
		{
			MemoryContext old = MemoryContextSwitchTo(plans->pending_cxt);

			pending[k] = datumCopy(keys[n - 1], false, plans->keylen[k]);
			MemoryContextSwitchTo(old);
		}
	}

	iterjob_set_phase("action");
	nest = begin_owner_section(task, false, &saved);
	ret = SPI_execute_plan(plans->action, arrays, NULL, false, 0);
	iterjob_end_owner_section(nest, &saved);
	if (ret < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(ret));

	iterjob_set_phase("checkpoint");
	cp_args[0] = Int64GetDatum(task->task_id);
	cp_args[1] = Int64GetDatum((int64) n);
	for (int k = 0; k < spec->nkeys; k++)
		cp_args[k + 2] = pending[k];
	ret = SPI_execute_plan(plans->checkpoint, cp_args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "checkpoint failed: %s", SPI_result_code_string(ret));
	task->last_batch_rows = n;
	outcome = read_state_and_pacing(task);

	/*
	 * A short batch was probably the last: look for the next one in this
	 * transaction, and if it is empty, end the instance here, saving a
	 * transaction (and a WAL flush) per instance.
	 */
	if (outcome == BATCH_MORE && n < (uint64) task->throttle.batch_size)
	{
		for (int k = 0; k < spec->nkeys; k++)
			keyset_args[k] = pending[k];
		keyset_args[spec->nkeys] = Int32GetDatum(1);
		nest = begin_owner_section(task, true, &saved);
		ret = SPI_execute_plan(plans->next, keyset_args, NULL, false, 1);
		iterjob_end_owner_section(nest, &saved);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "keyset query failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			return finish_instance(task);
	}
	return outcome;
}

/* After a commit: the batch's last key becomes the task's cursor. */
static void
advance_cursor(IterjobTask *task, TaskPlans *plans, const Datum *pending)
{
	MemoryContext swap = task->cursor_cxt;

	for (int k = 0; k < task->spec.nkeys; k++)
		task->cursor[k] = pending[k];
	task->cursor_cxt = plans->pending_cxt;
	plans->pending_cxt = swap;
	task->has_cursor = true;
	task->batches_done++;
}

static void
report_activity(IterjobTask *task)
{
	char		activity[128];

	snprintf(activity, sizeof(activity),
			 "iterjob job " INT64_FORMAT " instance %d: batch " INT64_FORMAT,
			 task->job_id, task->instance, task->batches_done + 1);
	pgstat_report_activity(STATE_RUNNING, activity);
	if (iterjob_my_slot != NULL)
		iterjob_my_slot->batches = task->batches_done;
}

static void
set_nullable_text(Datum *arg, char *null, const char *value)
{
	*arg = value ? CStringGetTextDatum(value) : (Datum) 0;
	*null = value ? ' ' : 'n';
}

/*
 * At the start of each of the worker's transactions: leave if the extension
 * has been dropped, else keep it from being dropped until we commit.
 */
static void
exit_if_dropped(void)
{
	char	   *dbname;

	if (iterjob_lock_extension())
		return;
	dbname = get_database_name(MyDatabaseId);
	ereport(LOG,
			(errmsg("iterjob: the extension was dropped from database \"%s\"; worker exits",
					dbname ? dbname : "?")));
	CommitTransactionCommand();
	iterjob_worker_exit_clean();
}

/*
 * After a failed batch (rolled back already): log the error, and either
 * schedule a retry or, once max_attempts attempts failed, fail the task.
 * Sets *retry_ms to the backoff before the retry.
 */
static BatchOutcome
record_failure(IterjobTask *task, ErrorData *edata, long *retry_ms)
{
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	BatchOutcome outcome = BATCH_RETRY;
	int32		attempts;
	bool		running;
	bool		isnull;

	/* now(), for finished_at and updated_at, is when the failure is recorded */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exit_if_dropped();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());

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
	attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	running = strcmp(SPI_getvalue(SPI_tuptable->vals[0],
								  SPI_tuptable->tupdesc, 2), "running") == 0;

	if (!running)
		outcome = BATCH_STOPPED;
	else if (attempts >= task->spec.max_attempts ||
			 ERRCODE_TO_CATEGORY(edata->sqlerrcode) ==
			 ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION)
	{
		/* retrying cannot help a missing object or privilege */
		iterjob_finish_task(task, "failed", edata->message);
		outcome = BATCH_LAST;
	}
	else
	{
		*retry_ms = RETRY_BASE_MS;
		for (int i = 1; i < attempts && *retry_ms < RETRY_MAX_MS; i++)
			*retry_ms *= 2;
		*retry_ms = Min(*retry_ms, RETRY_MAX_MS);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch failed (attempt %d of %d): %s",
					task->job_id, task->instance, attempts,
					task->spec.max_attempts, edata->message),
			 outcome == BATCH_RETRY ?
			 errdetail("Retrying in %ld ms.", *retry_ms) :
			 outcome == BATCH_LAST ? errdetail("The instance has failed.") : 0));
	return outcome;
}

/*
 * Has a pause, cancel or resume of our job committed since we last looked
 * (control.c flags the slot and sets our latch)?  Clears the flag.
 */
static bool
job_state_changed(void)
{
	bool		changed;

	if (iterjob_my_slot == NULL)
		return false;
	SpinLockAcquire(&iterjob_shared->mutex);
	changed = iterjob_my_slot->recheck;
	iterjob_my_slot->recheck = false;
	SpinLockRelease(&iterjob_shared->mutex);
	return changed;
}

/* Is the task still ours to run (state running)?  In its own transaction. */
static bool
still_running(IterjobTask *task)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(task->task_id);
	bool		running = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exit_if_dropped();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT state FROM iterjob.task WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		running = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						 "running") == 0;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return running;
}

/*
 * Sleep between batches, waking for interrupts (SIGTERM, reload) and when
 * the job's state changes.
 */
static void
pause_for(long ms, const char *phase)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	iterjob_set_phase(phase);
	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = (long) ((end - GetCurrentTimestamp()) / 1000);
		if (left <= 0 || (iterjob_my_slot != NULL && iterjob_my_slot->recheck))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static BatchOutcome
run_batch(IterjobTask *task, TaskPlans *plans, long *retry_ms)
{
	volatile BatchOutcome outcome = BATCH_MORE;
	Datum		pending[ITERJOB_MAX_KEYS] = {0};
	ErrorData  *volatile edata = NULL;
	MemoryContext worker_cxt = CurrentMemoryContext;

	report_activity(task);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exit_if_dropped();
	iterjob_commit_batch_mode();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (task->spec.statement_timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, task->spec.statement_timeout_ms);

	PG_TRY();
	{
		outcome = do_batch(task, plans, pending);
		SPI_finish();
		PopActiveSnapshot();
		/* deferred constraints of the action are checked here */
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(task->cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	disable_timeout(STATEMENT_TIMEOUT, false);

	if (edata != NULL)
	{
		AbortCurrentTransaction();
		MemoryContextSwitchTo(worker_cxt);
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			iterjob_throttle_after_timeout(&task->throttle);
		outcome = record_failure(task, edata, retry_ms);
		FreeErrorData(edata);
	}
	else
	{
		MemoryContextSwitchTo(worker_cxt);
		if (outcome == BATCH_MORE || outcome == BATCH_STOPPED)
		{
			bool		had_cursor = task->has_cursor;
			Datum		old_key = task->cursor[0];

			advance_cursor(task, plans, pending);
			iterjob_trail_advanced(task, had_cursor, old_key);
			if (iterjob_log_batches)
				ereport(LOG,
						(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch " INT64_FORMAT " committed",
								task->job_id, task->instance, task->batches_done)));
		}
	}

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return outcome;
}

void
iterjob_run_task(IterjobTask *task)
{
	TaskPlans	plans;
	bool		must_recheck = false;

	memset(&plans, 0, sizeof(plans));
	for (;;)
	{
		BatchOutcome outcome;
		long		retry_ms = 0;
		TimestampTz start = GetCurrentTimestamp();
		long		batch_ms;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* GUCs of the health gate and logging apply from the next batch */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* under the modulo partition, stay behind the instance before */
		iterjob_trail_before_batch(task);

		/*
		 * No batch starts after a pause or cancel has committed; after a
		 * failed attempt's backoff, look too (no signal may have come).
		 */
		if ((job_state_changed() || must_recheck) && !still_running(task))
			break;
		must_recheck = false;

		outcome = run_batch(task, &plans, &retry_ms);
		if (outcome == BATCH_RETRY || outcome == BATCH_HELD)
			iterjob_trail_stop();
		if (outcome == BATCH_RETRY)
		{
			pause_for(retry_ms, "retry backoff");
			must_recheck = true;
		}
		else if (outcome == BATCH_HELD)
			pause_for(HOLD_RECHECK_MS, "held");
		else if (outcome != BATCH_MORE)
			break;
		else
		{
			batch_ms = (long) ((GetCurrentTimestamp() - start) / 1000);
			sleep_ms = iterjob_throttle_after_batch(&task->throttle, task->spec.instances,
													task->last_batch_rows, batch_ms);
			if (sleep_ms > 0)
				pause_for(sleep_ms, "throttled");
		}
	}
	iterjob_trail_stop();
	free_plans(&plans);
}
