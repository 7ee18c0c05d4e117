/*-------------------------------------------------------------------------
 *
 * health_check.c
 *	  User health checks: an SQL expression given per job (enqueue's
 *	  health_check) or for every job (iterjob.health_check), like
 *	  maintenance_tasks' throttle_on or gh-ost's throttle query.  Before a
 *	  batch, at most once a second while it lets batches run, the worker
 *	  evaluates it as the job's owner, with the job's search_path, in a
 *	  subtransaction: a non-null text holds the job with that text as the
 *	  reason (job_progress.held), true holds it, NULL or false lets the
 *	  batch run.  A check that fails holds the job too, with its error as
 *	  the reason: a check that cannot answer does not let a backfill run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "worker/worker_internal.h"

#define USER_CHECK_INTERVAL_MS 1000

/* may a check's result type say hold? */
static bool
is_answer_type(Oid type)
{
	switch (getBaseType(type))
	{
		case BOOLOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
			return true;
		default:
			return false;
	}
}

static void
wrong_type(const char *what, Oid type)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("%s must return boolean or text", what),
			 errdetail("It returns %s.", format_type_be(type)),
			 errhint("Return the reason to hold as text, or true to hold; NULL or false lets the batch run.")));
}

/*
 * At enqueue, as the caller: one expression, of a type that can answer.
 * Planned, not run.
 */
void
iterjob_check_health_check(const char *expr)
{
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *source;

	iterjob_check_expression_syntax(expr, "health_check", "expression",
									"Write an expression that returns why to hold (text) or whether to (boolean), "
									"for example: (SELECT 'busy' WHERE pg_catalog.now()::time > '08:00').");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(psprintf("SELECT (%s)", expr), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not plan health_check: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	source = linitial(sources);
	if (source->resultDesc == NULL || source->resultDesc->natts != 1)
		elog(ERROR, "health_check must return one value");
	if (!is_answer_type(TupleDescAttr(source->resultDesc, 0)->atttypid))
		wrong_type("health_check", TupleDescAttr(source->resultDesc, 0)->atttypid);
	SPI_finish();
}

/*
 * Evaluate one check as the task's owner, in a subtransaction.  Returns why
 * to hold (allocated in the caller's context), or NULL.  SPI connected.
 */
static char *
evaluate(IterjobTask *task, const char *what, const char *expr)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile reason = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		IterjobSavedUser saved;
		int			nest;
		Oid			type;

		nest = iterjob_begin_owner_section(task->owner, task->search_path,
										   task->spec.lock_timeout_ms, false, &saved);
		if (SPI_execute(psprintf("SELECT (%s)", expr), false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "%s returned no row", what);
		type = SPI_gettypeid(SPI_tuptable->tupdesc, 1);
		if (!is_answer_type(type))
			wrong_type(what, type);
		if (getBaseType(type) == BOOLOID)
		{
			bool		isnull;
			bool		hold = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));

			if (!isnull && hold)
				reason = MemoryContextStrdup(cxt, "true");
		}
		else
		{
			char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (value != NULL)
				reason = MemoryContextStrdup(cxt, value);
		}
		iterjob_end_owner_section(nest, &saved);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		/* a cancel or the batch's statement timeout ends the batch */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		reason = psprintf("failed: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (reason == NULL)
		return NULL;
	return psprintf("%s: %s", what, reason);
}

/*
 * Before a batch: do the cluster's or the job's checks say hold?  Returns
 * why, or NULL.  While they let batches run, they are evaluated again
 * after a second at the soonest; while they hold, before every attempt.
 */
char *
iterjob_user_health_check(IterjobTask *task)
{
	IterjobThrottle *throttle = &task->throttle;
	TimestampTz at = GetCurrentTimestamp();
	const char *cluster = iterjob_health_check_expr;
	char	   *reason = NULL;

	if ((cluster == NULL || cluster[0] == '\0') && task->spec.health_check == NULL)
	{
		throttle->user_held = false;
		return NULL;
	}
	if (!throttle->user_held && at < throttle->next_user_check)
		return NULL;
	throttle->next_user_check = TimestampTzPlusMilliseconds(at, USER_CHECK_INTERVAL_MS);

	if (cluster != NULL && cluster[0] != '\0')
		reason = evaluate(task, "iterjob.health_check", cluster);
	if (reason == NULL && task->spec.health_check != NULL)
		reason = evaluate(task, "health check", task->spec.health_check);
	throttle->user_held = (reason != NULL);
	return reason;
}
