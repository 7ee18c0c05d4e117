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
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "iterjob.h"
#include "task.h"

typedef enum BatchOutcome
{
	BATCH_MORE,					/* a batch committed; go on */
	BATCH_LAST,					/* the task ended and that was committed */
	BATCH_STOPPED				/* the task is no longer ours: rolled back */
} BatchOutcome;

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

static const char *const checkpoint_sql =
"UPDATE iterjob.task"
"   SET cursor = pg_catalog.jsonb_build_object('instance', instance,"
"                                              'inner_cursor', $2),"
"       rows_done = rows_done OPERATOR(pg_catalog.+) $3,"
"       batches_done = batches_done OPERATOR(pg_catalog.+) 1,"
"       updated_at = pg_catalog.now()"
" WHERE id OPERATOR(pg_catalog.=) $1"
"   AND state OPERATOR(pg_catalog.=) 'running'";

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

/* The body of one batch, inside its transaction with SPI connected. */
static BatchOutcome
do_batch(IterjobTask *task, TaskPlans *plans)
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
	task->last_key = key_value(keytype, keys[n - 1]);

	nest = begin_owner_section(task, false, &saved);
	arg = PointerGetDatum(array);
	ret = SPI_execute_plan(plans->action, &arg, NULL, false, 0);
	end_owner_section(nest, &saved);
	if (ret < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(ret));

	cp_args[0] = Int64GetDatum(task->task_id);
	cp_args[1] = Int64GetDatum(task->last_key);
	cp_args[2] = Int64GetDatum((int64) n);
	ret = SPI_execute_plan(plans->checkpoint, cp_args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "checkpoint failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		return BATCH_STOPPED;
	return BATCH_MORE;
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

/* After a failed batch (rolled back already): fail the task. */
static void
record_failure(IterjobTask *task, ErrorData *edata)
{
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	iterjob_finish_task(task, "failed", edata->message);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("iterjob: job " INT64_FORMAT " instance %d failed: %s",
					task->job_id, task->instance, edata->message)));
}

static BatchOutcome
run_batch(IterjobTask *task, TaskPlans *plans)
{
	volatile BatchOutcome outcome = BATCH_MORE;
	ErrorData  *volatile edata = NULL;
	MemoryContext worker_cxt = CurrentMemoryContext;

	report_activity(task);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());

	PG_TRY();
	{
		outcome = do_batch(task, plans);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(task->cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != NULL)
	{
		AbortCurrentTransaction();
		MemoryContextSwitchTo(worker_cxt);
		record_failure(task, edata);
		outcome = BATCH_LAST;
	}
	else
	{
		SPI_finish();
		PopActiveSnapshot();
		if (outcome == BATCH_STOPPED)
			AbortCurrentTransaction();
		else
			CommitTransactionCommand();
		MemoryContextSwitchTo(worker_cxt);
		if (outcome == BATCH_MORE)
		{
			task->has_cursor = true;
			task->batches_done++;
		}
	}
	if (outcome == BATCH_LAST)
		iterjob_notify_job_state();

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
		CHECK_FOR_INTERRUPTS();
		if (run_batch(task, &plans) != BATCH_MORE)
			break;
	}
	free_plans(&plans);
}
