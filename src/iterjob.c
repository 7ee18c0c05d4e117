/*-------------------------------------------------------------------------
 *
 * iterjob.c
 *	  Module entry point: defines the GUCs and, when loaded through
 *	  shared_preload_libraries, reserves shared memory and registers the
 *	  launcher that starts iteration workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/varlena.h"

#include "iterjob.h"
#include "launcher/launcher.h"

ITERJOB_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
request_shmem(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	iterjob_shmem_request();
}

static void
startup_shmem(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	iterjob_shmem_startup();
}

/* Did the postmaster load iterjob through shared_preload_libraries? */
static bool
preloaded_by_postmaster(void)
{
	char	   *raw = pstrdup(shared_preload_libraries_string ?
							  shared_preload_libraries_string : "");
	List	   *names = NIL;
	ListCell   *lc;

	if (!SplitDirectoriesString(raw, ',', &names))
		return false;
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		const char *base = strrchr(name, '/');

		base = base ? base + 1 : name;
		if (strcmp(base, "iterjob") == 0 || strcmp(base, "iterjob.so") == 0)
			return true;
	}
	return false;
}

void
_PG_init(void)
{
	/*
	 * A backend or worker loads a second copy of the library when the
	 * preloaded one came from another file (see gucs.c).  The preloaded
	 * copy already defined the GUCs: this one reads their values.  It
	 * attaches to the shared memory that copy made (if its layout changed,
	 * that fails: restart the server after an upgrade).
	 */
	if (!process_shared_preload_libraries_in_progress && IsUnderPostmaster &&
		preloaded_by_postmaster())
	{
		iterjob_borrow_gucs();
		iterjob_register_commit_wakeup();
		iterjob_shmem_startup();
		return;
	}

	iterjob_define_gucs();
	iterjob_register_commit_wakeup();
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shmem;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = startup_shmem;

	iterjob_register_launcher();
}

PG_FUNCTION_INFO_V1(iterjob_preloaded);

/* True when shared memory exists, i.e. the library was preloaded. */
Datum
iterjob_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(iterjob_shared != NULL);
}
