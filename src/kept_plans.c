/*-------------------------------------------------------------------------
 *
 * kept_plans.c
 *	  iterjob's own bookkeeping statements (claims, the ends of tasks and
 *	  jobs) are parsed and planned once per process, not at each call:
 *	  each call site keeps its plan in a static variable, prepared and kept
 *	  (SPI_keepplan) on first use.  PostgreSQL's plan cache plans them
 *	  again after a change of what they read (ALTER EXTENSION UPDATE, a
 *	  new index, fresh statistics).
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
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

		if (prepared == NULL)
			elog(ERROR, "could not plan an iterjob statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(prepared) != 0)
			elog(ERROR, "could not keep the plan of an iterjob statement");
		*plan = prepared;
	}
	return *plan;
}
