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
 *	  CPU on a stream of one-batch jobs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

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
