/*-------------------------------------------------------------------------
 *
 * gucs.c
 *	  iterjob's configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "iterjob.h"

int			iterjob_max_workers = 4;

void
iterjob_define_gucs(void)
{
	DefineCustomIntVariable("iterjob.max_workers",
							"Maximum number of iteration workers running at once, cluster-wide.",
							"Each worker is a background worker process and takes a slot of max_worker_processes.",
							&iterjob_max_workers,
							4, 0, ITERJOB_MAX_WORKER_SLOTS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("iterjob");
}
