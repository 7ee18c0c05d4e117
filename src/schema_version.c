/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  Checking that the extension's SQL objects in this database exist and
 *	  are at the version the loaded library works with (after a package
 *	  upgrade, ALTER EXTENSION iterjob UPDATE brings them there).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "catalog/namespace.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"

#include "iterjob.h"

/*
 * Is iterjob installed in this database (returns its oid, or InvalidOid)?
 * If so, keep it so until this transaction ends: DROP EXTENSION, which locks the extension before its
 * tables, waits for us (and we never wait halfway through our work for a
 * drop that would leave our tables gone).  A drop that committed while we
 * waited for the lock is seen by looking again.  The oid is remembered,
 * and so is the oid of the extension's job table: taking the lock takes in
 * the invalidations of a drop that committed, and the table is gone with
 * the extension, so while the table is there (a cached lookup) the
 * extension is the one remembered, and the catalog is not read again.
 */
Oid
iterjob_lock_extension(void)
{
	static Oid	extoid = InvalidOid;
	static Oid	job_relid = InvalidOid;

	for (;;)
	{
		Oid			current;

		if (!OidIsValid(extoid))
			extoid = get_extension_oid("iterjob", true);
		if (!OidIsValid(extoid))
			return InvalidOid;
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		if (OidIsValid(job_relid) &&
			SearchSysCacheExists1(RELOID, ObjectIdGetDatum(job_relid)))
			return extoid;
		InvalidateCatalogSnapshot();
		current = get_extension_oid("iterjob", true);
		if (current == extoid)
		{
			job_relid = get_relname_relid("job", get_namespace_oid("iterjob", true));
			return extoid;
		}
		/* dropped, or dropped and created again: look again */
		extoid = current;
		job_relid = InvalidOid;
	}
}

/* extversion of iterjob here, or NULL; SPI must be connected */
char *
iterjob_installed_version(void)
{
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'iterjob'",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Error out unless the installed version matches; SPI must be connected. */
void
iterjob_require_schema_version(void)
{
	char	   *version = iterjob_installed_version();

	if (version != NULL && strcmp(version, ITERJOB_SCHEMA_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("iterjob extension version %s does not match the installed library, which needs %s",
						version, ITERJOB_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION iterjob UPDATE.")));
}
