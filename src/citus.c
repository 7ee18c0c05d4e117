/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  What iterjob needs to know about Citus, in a database that has it:
 *	  whether a table is distributed, and the switches that make a batch's
 *	  transaction one Citus coordinates and commits in two phases.  iterjob
 *	  does not link Citus: it reads Citus' catalogs with SQL and finds the
 *	  C functions it calls by name, in the library Citus has loaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "iterjob.h"
#include "job_spec.h"

/* Whether the current database has the citus extension. */
bool
iterjob_citus_installed(void)
{
	return OidIsValid(get_extension_oid("citus", true));
}

/*
 * How Citus distributes relid: 'h' (hash), 'n' (a reference table or a
 * Citus local table), 'a' or 'r' (append, range), or '\0' for a table
 * Citus does not know.  SPI connected.
 */
char
iterjob_citus_partmethod(Oid relid)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);
	IterjobSavedUser saved;
	int			nest;
	char		method = '\0';

	if (!OidIsValid(relid) || !iterjob_citus_installed())
		return '\0';
	nest = iterjob_begin_internal(&saved);
	if (SPI_execute_with_args("SELECT partmethod::pg_catalog.text FROM pg_catalog.pg_dist_partition"
							  " WHERE logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_partition");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
			method = value[0];
	}
	iterjob_end_internal(nest, &saved);
	return method;
}

/*
 * Make the current transaction one that Citus coordinates, committed
 * through its two-phase commit also when it modifies one shard only.  A
 * background worker's transaction is no transaction block, so Citus would
 * otherwise run a single-shard modification outside any remote
 * transaction, committed at once; coordinated, the batch's work on the
 * shard's node and its checkpoint here commit or abort together, even
 * when either node crashes in between (Citus resolves the prepared
 * transaction from the commit record here).
 */
void
iterjob_citus_coordinate(void)
{
	static void (*use_coordinated) (void) = NULL;
	static void (*use_2pc) (void) = NULL;

	if (use_coordinated == NULL)
	{
		use_coordinated = (void (*) (void))
			load_external_function("citus", "UseCoordinatedTransaction", true, NULL);
		use_2pc = (void (*) (void))
			load_external_function("citus", "Use2PCForCoordinatedTransaction", true, NULL);
	}
	use_coordinated();
	use_2pc();
}
