/*-------------------------------------------------------------------------
 *
 * worker_xact.c
 *	  The transactions of an iteration worker, and the extension they rely
 *	  on.
 *
 *	  Every transaction a worker starts share-locks the iterjob extension
 *	  object (schema_version.c), so DROP EXTENSION waits for the batch in
 *	  progress instead of pulling the tables from under it, and checks
 *	  that the extension is still the one the worker adopted at its first
 *	  claim.  A worker whose extension was dropped, or dropped and created
 *	  again, leaves: it never runs an old job's action again nor writes an
 *	  old cursor into a new extension's task that reuses the old one's id.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/snapmgr.h"

#include "iterjob.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

/* the extension this worker works for, from its first claim on */
static Oid	worker_extension = InvalidOid;

static void
leave_dropped_extension(bool recreated)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	ereport(LOG,
			(errmsg("iterjob: the extension was %s in database \"%s\"; worker exits",
					recreated ? "dropped and created again" : "dropped",
					dbname ? dbname : "?")));
	AbortCurrentTransaction();
	/* leaving a batch of a dropped extension is no death of its task */
	iterjob_slot_end_batch();
	iterjob_worker_exit_clean();
}

/*
 * In the worker's claim transaction: lock the extension and take it as
 * this worker's.  False when it is not installed in this database.
 */
bool
iterjob_worker_adopt_extension(void)
{
	Oid			ext = iterjob_lock_extension();

	if (!OidIsValid(ext))
	{
		if (OidIsValid(worker_extension))
			leave_dropped_extension(false);
		return false;
	}
	if (OidIsValid(worker_extension) && ext != worker_extension)
		leave_dropped_extension(true);
	worker_extension = ext;
	return true;
}

void
iterjob_worker_begin(bool with_spi)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	iterjob_enter_owner_restriction();
	if (OidIsValid(worker_extension))
	{
		Oid			ext = iterjob_lock_extension();

		if (ext != worker_extension)
			leave_dropped_extension(OidIsValid(ext));
	}
	if (with_spi)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
	}
}

void
iterjob_worker_commit(bool with_spi)
{
	if (with_spi)
	{
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	iterjob_leave_owner_restriction();
}
