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
#include "utils/lsyscache.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus_internal.h"

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

typedef void (*CitusSwitch) (void);

/*
 * Citus' functions that make a transaction coordinated and committed in
 * two phases, found by name in its library: Citus 13 exports them, Citus
 * 14 and later keep them to themselves (NULL then).
 */
static bool
citus_switches(CitusSwitch *use_coordinated, CitusSwitch *use_2pc)
{
	static bool looked = false;
	static CitusSwitch coordinated = NULL;
	static CitusSwitch two_phase = NULL;

	if (!looked)
	{
		coordinated = (CitusSwitch)
			load_external_function("citus", "UseCoordinatedTransaction", false, NULL);
		two_phase = (CitusSwitch)
			load_external_function("citus", "Use2PCForCoordinatedTransaction", false, NULL);
		looked = true;
	}
	*use_coordinated = coordinated;
	*use_2pc = two_phase;
	return coordinated != NULL && two_phase != NULL;
}

/* Whether this Citus lets iterjob coordinate a batch (iterjob_citus_coordinate). */
bool
iterjob_citus_can_coordinate(void)
{
	CitusSwitch use_coordinated;
	CitusSwitch use_2pc;

	return citus_switches(&use_coordinated, &use_2pc);
}

/*
 * Refuse a job whose batches change the shards of a hash-distributed table
 * through Citus from here (partition 'modulo' or 'range') where Citus does
 * not let iterjob commit them with their checkpoint in two phases.
 */
void
iterjob_citus_check_coordination(const IterjobSpec *spec, const char *partition)
{
	CitusSwitch use_coordinated;
	CitusSwitch use_2pc;

	if (!citus_switches(&use_coordinated, &use_2pc))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition '%s' cannot iterate the distributed table %s with this version of Citus",
						partition, get_rel_name(spec->relid)),
				 errdetail("Citus 14 and later do not let iterjob commit a batch on the shards and its checkpoint here together."),
				 errhint("Use partition => 'shard', whose batches commit on the shards' nodes with their cursors.")));
}

/*
 * Make the current transaction one that Citus coordinates, committed
 * through its two-phase commit also when it modifies one shard only.  A
 * background worker's transaction is no transaction block, so Citus would
 * otherwise run a single-shard modification outside any remote
 * transaction, committed at once; coordinated, the batch's work on the
 * shard's node and its checkpoint here commit or abort together, even
 * when either node crashes in between (Citus resolves the prepared
 * transaction from the commit record here).  Only for batches over a
 * hash-distributed table under partition 'modulo' or 'range': a reference
 * table's or a local table's batch is coordinated (or local) already.
 */
void
iterjob_citus_coordinate(void)
{
	CitusSwitch use_coordinated;
	CitusSwitch use_2pc;

	if (!citus_switches(&use_coordinated, &use_2pc))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("this version of Citus does not let iterjob commit a batch on distributed shards with its checkpoint"),
				 errhint("Cancel the job and enqueue it again with partition => 'shard'.")));
	use_coordinated();
	use_2pc();
}
