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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

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

/*
 * extversion of iterjob here, or NULL: read from pg_extension's name index
 * (what get_extension_oid() reads), with no statement to parse and plan.
 */
char *
iterjob_installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("iterjob"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/* Error out unless the installed version matches. */
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
