/*-------------------------------------------------------------------------
 *
 * wait_events.c
 *	  The wait events iterjob's processes report while they sleep, as
 *	  pg_stat_activity shows them: by name on PostgreSQL 17 and later
 *	  (IterjobTrailing, IterjobRetryBackoff, ...), as "Extension" before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "utils/wait_event.h"

#include "iterjob.h"

uint32
iterjob_wait_event(IterjobWaitEvent event)
{
#ifdef ITERJOB_HAVE_CUSTOM_WAIT_EVENTS
	static const char *const names[ITERJOB_WAIT_EVENTS] = {
		[ITERJOB_WAIT_LAUNCHER] = "IterjobLauncher",
		[ITERJOB_WAIT_TRAILING] = "IterjobTrailing",
		[ITERJOB_WAIT_RETRY_BACKOFF] = "IterjobRetryBackoff",
		[ITERJOB_WAIT_HELD] = "IterjobHeld",
		[ITERJOB_WAIT_THROTTLED] = "IterjobThrottled",
		[ITERJOB_WAIT_JOB_END] = "IterjobWaitJobEnd",
		[ITERJOB_WAIT_TASK_HANDOVER] = "IterjobTaskHandover",
		[ITERJOB_WAIT_RECOUNT] = "IterjobRecount",
		[ITERJOB_WAIT_IDLE] = "IterjobIdle",
		[ITERJOB_WAIT_NODE] = "IterjobNode",
	};
	static uint32 ids[ITERJOB_WAIT_EVENTS];

	if (ids[event] == 0)
		ids[event] = WaitEventExtensionNew(names[event]);
	return ids[event];
#else
	return PG_WAIT_EXTENSION;
#endif
}
