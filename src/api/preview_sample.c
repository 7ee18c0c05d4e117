/*-------------------------------------------------------------------------
 *
 * preview_sample.c
 *	  iterjob.preview(sample_batches => N): runs an instance's first N
 *	  batches for real, as the caller and as workers run them (the same
 *	  keyset queries and action, under the job's lock_timeout), inside a
 *	  subtransaction that is rolled back.  Reports the keys they fetched,
 *	  the time they took and the rows they inserted, updated and deleted
 *	  per table (the transaction's table statistics count rolled-back
 *	  work too).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "worker/worker.h"
#include "api/api.h"

/* the tables' row counts of this transaction so far, by relid */
static const char *const counts_sql =
"SELECT pg_catalog.jsonb_object_agg(relid::pg_catalog.text,"
"         pg_catalog.jsonb_build_array(n_tup_ins, n_tup_upd, n_tup_del))"
"  FROM pg_catalog.pg_stat_xact_user_tables";

/* what changed since the counts in $1, by table name */
static const char *const touched_sql =
"SELECT pg_catalog.jsonb_object_agg(relid::pg_catalog.regclass::pg_catalog.text,"
"         pg_catalog.jsonb_build_object('inserted', ins, 'updated', upd, 'deleted', del))"
"  FROM (SELECT t.relid,"
"               t.n_tup_ins OPERATOR(pg_catalog.-) COALESCE((b.c OPERATOR(pg_catalog.->>) 0)::pg_catalog.int8, 0) AS ins,"
"               t.n_tup_upd OPERATOR(pg_catalog.-) COALESCE((b.c OPERATOR(pg_catalog.->>) 1)::pg_catalog.int8, 0) AS upd,"
"               t.n_tup_del OPERATOR(pg_catalog.-) COALESCE((b.c OPERATOR(pg_catalog.->>) 2)::pg_catalog.int8, 0) AS del"
"          FROM pg_catalog.pg_stat_xact_user_tables t"
"          LEFT JOIN LATERAL (SELECT $1 OPERATOR(pg_catalog.->) t.relid::pg_catalog.text AS c) b ON true) d"
" WHERE ins OPERATOR(pg_catalog.<>) 0 OR upd OPERATOR(pg_catalog.<>) 0"
"    OR del OPERATOR(pg_catalog.<>) 0";

/* Run sql (with one jsonb argument, or none) as iterjob; its jsonb result. */
static Datum
jsonb_query(const char *sql, bool has_arg, Datum arg, bool *isnull)
{
	Oid			type = JSONBOID;
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	Datum		result = (Datum) 0;

	*isnull = true;
	if (SPI_execute_with_args(sql, has_arg ? 1 : 0, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the transaction's table statistics");
	if (SPI_processed == 1)
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	if (!*isnull)
		result = PointerGetDatum(DatumGetJsonbPCopy(result));
	iterjob_end_internal(nest, &saved);
	return result;
}

typedef struct SampleContext
{
	int32		instance;
	int32		batch;
} SampleContext;

static void
sample_error_callback(void *arg)
{
	SampleContext *ctx = (SampleContext *) arg;

	errcontext("iterjob.preview: sample batch %d of instance %d (rolled back)",
			   ctx->batch, ctx->instance);
}

/*
 * The batches themselves, in the subtransaction: until limit batches ran
 * or the instance ran out of keys.
 */
static void
run_batches(IterjobTask *task, IterjobTaskPlans *plans, int32 limit,
			IterjobSample *sample)
{
	Datum		pending[ITERJOB_MAX_KEYS];
	Datum		arrays[ITERJOB_MAX_KEYS];
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"iterjob preview batch",
													ALLOCSET_DEFAULT_SIZES);
	SampleContext ctx = {task->instance, 0};
	ErrorContextCallback errcb;

	errcb.callback = sample_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	iterjob_prepare_owner_plans(task, plans, false);
	while (sample->batches < limit)
	{
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);
		instr_time	start;
		instr_time	took;
		uint64		n;
		IterjobSavedUser saved;
		int			section;

		CHECK_FOR_INTERRUPTS();
		ctx.batch = sample->batches + 1;
		INSTR_TIME_SET_CURRENT(start);
		/* the batch's SQL in one owner section, as a worker runs it */
		section = iterjob_enter_owner_statements(task, &saved);
		n = iterjob_fetch_keys(task, plans, task->has_cursor ? task->cursor : NULL,
							   task->spec.batch_size);
		if (n > 0)
		{
			iterjob_batch_key_arrays(task, plans, n, arrays, pending);
			iterjob_run_action(task, plans, arrays);
		}
		iterjob_leave_owner_statements(section, &saved);
		INSTR_TIME_SET_CURRENT(took);
		INSTR_TIME_SUBTRACT(took, start);
		MemoryContextSwitchTo(old);

		if (n == 0)
		{
			/* the empty fetch ends an instance: it is part of its time */
			sample->ms += INSTR_TIME_GET_MILLISEC(took);
			sample->ended = true;
			break;
		}
		if (sample->batches == 0)
			sample->first_ms = INSTR_TIME_GET_MILLISEC(took);
		sample->batches++;
		sample->rows += (int64) n;
		sample->ms += INSTR_TIME_GET_MILLISEC(took);

		/* the next batch starts after this one's last key */
		{
			MemoryContext swap = task->cursor_cxt;

			for (int k = 0; k < task->spec.nkeys; k++)
				task->cursor[k] = pending[k];
			task->cursor_cxt = plans->pending_cxt;
			plans->pending_cxt = swap;
			task->has_cursor = true;
		}
		MemoryContextReset(batch_cxt);
	}
	error_context_stack = errcb.previous;
	MemoryContextDelete(batch_cxt);
}

/*
 * Sample the first limit batches of one instance (SPI connected).  Errors
 * of the batches are raised with a context line naming the batch; the
 * caller's statement_timeout bounds the whole preview.
 */
void
iterjob_preview_sample(const IterjobSpec *spec, int32 instance,
					   const IterjobRange *range, int32 limit,
					   IterjobSample *sample)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	IterjobTaskPlans plans;
	IterjobTask task;
	Datum		before;
	bool		isnull;

	memset(sample, 0, sizeof(*sample));
	memset(&task, 0, sizeof(task));
	memset(&plans, 0, sizeof(plans));
	task.cxt = AllocSetContextCreate(caller_cxt, "iterjob preview sample",
									 ALLOCSET_DEFAULT_SIZES);
	task.cursor_cxt = AllocSetContextCreate(task.cxt, "iterjob preview cursor",
											ALLOCSET_SMALL_SIZES);
	task.instance = instance;
	task.spec = *spec;
	if (range != NULL)
		task.range = *range;
	task.owner = GetUserId();
	task.search_path = pstrdup(GetConfigOption("search_path", false, false));

	before = jsonb_query(counts_sql, false, (Datum) 0, &isnull);
	if (isnull)
		before = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));

	/*
	 * The subtransaction ends here also when a batch fails: a caller that
	 * catches the error (a PL/pgSQL exception block) rolls back its own
	 * subtransaction, which must be the current one by then.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_cxt);
	PG_TRY();
	{
		run_batches(&task, &plans, limit, sample);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_cxt);
		CurrentResourceOwner = caller_owner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(caller_cxt);
	CurrentResourceOwner = caller_owner;

	sample->touched = jsonb_query(touched_sql, true, before, &isnull);
	if (isnull)
		sample->touched = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	MemoryContextDelete(task.cxt);
}
