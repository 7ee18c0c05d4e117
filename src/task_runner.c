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
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
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
	BATCH_RETRY					/* the batch failed and will be retried */
} BatchOutcome;

/* backoff before retrying a failed batch: 1 s, doubling, at most 30 s */
#define RETRY_BASE_MS	1000
#define RETRY_MAX_MS	30000

typedef struct TaskPlans
{
	SPIPlanPtr	first;			/* keyset query without a lower bound */
	SPIPlanPtr	next;			/* keyset query after $1 */
	SPIPlanPtr	action;
	SPIPlanPtr	checkpoint;
	int16		keylen;
	bool		keybyval;
	char		keyalign;
} TaskPlans;

/*
 * The checkpoint.  A task paused or cancelled while its batch ran still
 * commits that batch (work and cursor agree); the worker then leaves it.
 */
static const char *const checkpoint_sql =
"UPDATE iterjob.task"
"   SET cursor = pg_catalog.jsonb_build_object('instance', instance,"
"                                              'inner_cursor', $2),"
"       rows_done = rows_done OPERATOR(pg_catalog.+) $3,"
"       batches_done = batches_done OPERATOR(pg_catalog.+) 1,"
"       attempts = 0, updated_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) ANY ('{running,paused,cancelled}'::pg_catalog.text[])"
" RETURNING state OPERATOR(pg_catalog.=) 'running'";

static const char *const log_error_sql =
"WITH t AS ("
"  UPDATE iterjob.task SET attempts = attempts OPERATOR(pg_catalog.+) 1,"
"         last_error = $2, updated_at = pg_catalog.now()"
"   WHERE id OPERATOR(pg_catalog.=) $1"
"  RETURNING job_id, instance, attempts, cursor, state),"
" e AS ("
"  INSERT INTO iterjob.error_log (job_id, instance, attempt, cursor, sqlstate,"
"                                 message, detail, hint, context)"
"  SELECT job_id, instance, attempts, cursor, $3, $2, $4, $5, $6 FROM t)"
"SELECT attempts, state FROM t";

/*
 * Run user SQL (a keyset query or the action) in the owner's environment:
 * as the owner, with the search_path captured at enqueue.  With
 * keyset_planner, the planner can only choose an ordered index scan.
 */
static int
begin_owner_section(IterjobTask *task, bool keyset_planner,
					IterjobSavedUser *saved)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", task->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (task->spec.lock_timeout_ms > 0)
	{
		char		value[32];

		snprintf(value, sizeof(value), "%dms", task->spec.lock_timeout_ms);
		(void) set_config_option("lock_timeout", value, PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	if (keyset_planner)
	{
		static const char *const off[] = {"enable_seqscan", "enable_bitmapscan",
		"enable_sort", "enable_hashagg"};

		for (int i = 0; i < (int) lengthof(off); i++)
			(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	}
	iterjob_become_owner(task->owner, saved);
	return nest;
}

static void
end_owner_section(int nest, const IterjobSavedUser *saved)
{
	iterjob_restore_user(saved);
	AtEOXact_GUC(true, nest);
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
	IterjobSavedUser saved;
	Oid			keytype = task->spec.key_type;
	Oid			arraytype = iterjob_key_array_type(keytype);
	Oid			checkpoint_types[3] = {INT8OID, INT8OID, INT8OID};
	int			nest;

	get_typlenbyvalalign(keytype, &plans->keylen, &plans->keybyval,
						 &plans->keyalign);
	plans->checkpoint = prepare_kept(checkpoint_sql, 3, checkpoint_types, 0);

	nest = begin_owner_section(task, true, &saved);
	plans->first = prepare_kept(iterjob_keyset_query(&task->spec, task->instance, false),
								0, NULL, CURSOR_OPT_GENERIC_PLAN);
	plans->next = prepare_kept(iterjob_keyset_query(&task->spec, task->instance, true),
							   1, &keytype, CURSOR_OPT_GENERIC_PLAN);
	end_owner_section(nest, &saved);

	nest = begin_owner_section(task, false, &saved);
	plans->action = prepare_kept(task->spec.action, 1, &arraytype, 0);
	end_owner_section(nest, &saved);
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

static Datum
key_datum(Oid keytype, int64 key)
{
	switch (keytype)
	{
		case INT2OID:
			return Int16GetDatum((int16) key);
		case INT4OID:
			return Int32GetDatum((int32) key);
		default:
			return Int64GetDatum(key);
	}
}

static int64
key_value(Oid keytype, Datum d)
{
	switch (keytype)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		default:
			return DatumGetInt64(d);
	}
}

/*
 * The body of one batch, inside its transaction with SPI connected.  Sets
 * *batch_last to the batch's last key; the task's cursor only moves once
 * the transaction has committed.
 */
static BatchOutcome
do_batch(IterjobTask *task, TaskPlans *plans, int64 *batch_last)
{
	IterjobSavedUser saved;
	Oid			keytype = task->spec.key_type;
	Datum		arg;
	Datum		cp_args[3];
	Datum	   *keys;
	ArrayType  *array;
	uint64		n;
	int			nest;
	int			ret;

	iterjob_check_owner(task->owner, task->job_id);
	if (plans->action == NULL)
		prepare_plans(task, plans);

	nest = begin_owner_section(task, true, &saved);
	arg = key_datum(keytype, task->last_key);
	ret = SPI_execute_plan(task->has_cursor ? plans->next : plans->first,
						   &arg, NULL, false, 0);
	end_owner_section(nest, &saved);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "keyset query failed: %s", SPI_result_code_string(ret));

	n = SPI_processed;
	if (n == 0)
	{
		iterjob_finish_task(task, "succeeded", NULL);
		return BATCH_LAST;
	}

	keys = palloc(sizeof(Datum) * n);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		keys[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
								1, &isnull);
	}
	array = construct_array(keys, (int) n, keytype, plans->keylen,
							plans->keybyval, plans->keyalign);
	*batch_last = key_value(keytype, keys[n - 1]);

	nest = begin_owner_section(task, false, &saved);
	arg = PointerGetDatum(array);
	ret = SPI_execute_plan(plans->action, &arg, NULL, false, 0);
	end_owner_section(nest, &saved);
	if (ret < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(ret));

	cp_args[0] = Int64GetDatum(task->task_id);
	cp_args[1] = Int64GetDatum(*batch_last);
	cp_args[2] = Int64GetDatum((int64) n);
	ret = SPI_execute_plan(plans->checkpoint, cp_args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "checkpoint failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		elog(ERROR, "iterjob task " INT64_FORMAT " no longer exists", task->task_id);
	{
		bool		isnull;
		bool		still_running = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc,
															   1, &isnull));

		return still_running ? BATCH_MORE : BATCH_STOPPED;
	}
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

	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("iterjob", true)))
	{
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("iterjob: the extension was dropped from database \"%s\"; worker exits",
						get_database_name(MyDatabaseId))));
		iterjob_worker_exit_clean();
	}
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

/* Sleep before a retry, waking for interrupts (SIGTERM, reload). */
static void
backoff(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = (long) ((end - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
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
	volatile int64 batch_last = 0;
	ErrorData  *volatile edata = NULL;
	MemoryContext worker_cxt = CurrentMemoryContext;

	report_activity(task);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (task->spec.statement_timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, task->spec.statement_timeout_ms);

	PG_TRY();
	{
		outcome = do_batch(task, plans, (int64 *) &batch_last);
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
		outcome = record_failure(task, edata, retry_ms);
		FreeErrorData(edata);
	}
	else
	{
		MemoryContextSwitchTo(worker_cxt);
		if (outcome != BATCH_LAST)
		{
			task->has_cursor = true;
			task->last_key = batch_last;
			task->batches_done++;
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

	memset(&plans, 0, sizeof(plans));
	for (;;)
	{
		BatchOutcome outcome;
		long		retry_ms = 0;

		CHECK_FOR_INTERRUPTS();
		outcome = run_batch(task, &plans, &retry_ms);
		if (outcome == BATCH_RETRY)
			backoff(retry_ms);
		else if (outcome != BATCH_MORE)
			break;
	}
	free_plans(&plans);
}
