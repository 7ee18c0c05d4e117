/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  Checking that the extension's SQL objects in this database are at the
 *	  version the loaded library works with (after a package upgrade,
 *	  ALTER EXTENSION iterjob UPDATE brings them there).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "iterjob.h"

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
