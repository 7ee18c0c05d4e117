/*-------------------------------------------------------------------------
 *
 * commit_mode.c
 *	  How a worker's transactions commit.
 *
 *	  A batch's work and its checkpoint are one transaction, so batches may
 *	  commit asynchronously (synchronous_commit = off, unless
 *	  iterjob.synchronous_commit is on): a crash can lose the last batches'
 *	  commits, but only work and checkpoint together, and the worker runs
 *	  those batches again from the older cursor.  Nothing is lost or done
 *	  twice.  Any later synchronous commit in the cluster flushes the WAL
 *	  before it, so nothing that another transaction has durably built upon
 *	  can be lost either.  The transaction that ends an instance (and maybe
 *	  its job) commits with the server's own synchronous_commit, so a job
 *	  seen ended stays ended, with every batch before it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "iterjob.h"
#include "worker/worker_internal.h"

static void
set_local_synchronous_commit(const char *value)
{
	(void) set_config_option("synchronous_commit", value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* Called at the start of a batch's transaction. */
void
iterjob_commit_batch_mode(void)
{
	if (!iterjob_synchronous_commit)
		set_local_synchronous_commit("off");
}

/* Called in a transaction that ends an instance. */
void
iterjob_commit_durably(void)
{
	set_local_synchronous_commit(GetConfigOptionResetString("synchronous_commit"));
}
