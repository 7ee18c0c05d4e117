/*-------------------------------------------------------------------------
 *
 * kept_plans.c
 *	  iterjob's own bookkeeping statements (claims, the ends of tasks and
 *	  jobs) are parsed and planned once per process, not at each call:
 *	  each call site keeps its plan in a static variable, prepared and kept
 *	  (SPI_keepplan) on first use.  PostgreSQL's plan cache plans them
 *	  again after a change of what they read (ALTER EXTENSION UPDATE, a
 *	  new index, fresh statistics).  Their plans are generic: they look
 *	  rows up by key, so a plan for the parameters' values buys nothing,
 *	  and planning at each call (the plan cache's first five, and every
 *	  call where a custom plan looks cheaper) was a third of a worker's
 *	  CPU on a stream of one-batch jobs.  They run (and are planned, at
 *	  their first run and after an invalidation) without seq scans and
 *	  sorts: the statistics of a queue are stale at once in a burst of
 *	  jobs (an empty table, then thousands of rows), and the planner must
 *	  keep to the indexes that serve each statement, in their order (a
 *	  job's tasks read through the index of every runnable task, filtered,
 *	  made each claim of a burst cost as much as the burst).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/guc.h"

#include "iterjob.h"

/*
 * The kept plan of sql, prepared into *plan if it is not yet.  SPI
 * connected; sql names every object schema-qualified.
 */
SPIPlanPtr
iterjob_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	prepared = SPI_prepare_cursor(sql, nargs, argtypes,
												  CURSOR_OPT_GENERIC_PLAN);

		if (prepared == NULL)
			elog(ERROR, "could not plan an iterjob statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(prepared) != 0)
			elog(ERROR, "could not keep the plan of an iterjob statement");
		*plan = prepared;
	}
	return *plan;
}

/*
 * Planner settings for a kept plan's run: a nest level to end them with.
 * No JIT either: a disabled sort a statement cannot do without counts as
 * a huge cost, which would compile the statement (and take longer than
 * running it a thousand times).
 */
static int
begin_index_lookups(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/* SPI_execute_plan() of a kept plan. */
int
iterjob_execute_kept(SPIPlanPtr plan, Datum *args, const char *nulls,
					 bool read_only, long count)
{
	int			nest = begin_index_lookups();
	int			ret = SPI_execute_plan(plan, args, nulls, read_only, count);

	AtEOXact_GUC(true, nest);
	return ret;
}

/* SPI_cursor_open() of a kept plan (which plans it, if it must). */
Portal
iterjob_open_kept(SPIPlanPtr plan, Datum *args, bool read_only)
{
	int			nest = begin_index_lookups();
	Portal		portal = SPI_cursor_open(NULL, plan, args, NULL, read_only);

	AtEOXact_GUC(true, nest);
	return portal;
}
