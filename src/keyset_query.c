/*-------------------------------------------------------------------------
 *
 * keyset_query.c
 *	  Builds the keyset-pagination query one instance of a job runs for each
 *	  batch:
 *
 *		SELECT key FROM rel
 *		 WHERE abs(key % N) = i AND key > $1 AND (filter)
 *		 ORDER BY key LIMIT batch_size
 *
 *	  Identifiers are quoted; the filter has passed iterjob's syntax check,
 *	  so it is a single expression.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "job_spec.h"

char *
iterjob_keyset_query(const IterjobSpec *spec, int32 instance, bool after_cursor)
{
	StringInfoData buf;
	const char *key = quote_identifier(spec->key_column);
	char	   *nspname = get_namespace_name(get_rel_namespace(spec->relid));
	char	   *relname = get_rel_name(spec->relid);
	const char *keytype = format_type_be(spec->key_type);

	if (nspname == NULL || relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", spec->relid),
				 errdetail("The relation was dropped after the job was enqueued.")));

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT %s FROM %s WHERE true",
					 key, quote_qualified_identifier(nspname, relname));

	/*
	 * abs() keeps negative keys in range: for keys >= 0 this is exactly key %
	 * N = i, and every negative key still lands in one instance.
	 */
	if (spec->instances > 1)
		appendStringInfo(&buf,
						 " AND pg_catalog.abs(%s OPERATOR(pg_catalog.%%) %d::%s)"
						 " OPERATOR(pg_catalog.=) %d::%s",
						 key, spec->instances, keytype, instance, keytype);
	if (after_cursor)
		appendStringInfo(&buf, " AND %s OPERATOR(pg_catalog.>) $1", key);
	if (spec->filter != NULL)
		appendStringInfo(&buf, " AND (\n%s\n)", spec->filter);
	appendStringInfo(&buf, " ORDER BY %s LIMIT %d", key, spec->batch_size);

	return buf.data;
}

Oid
iterjob_key_array_type(Oid key_type)
{
	Oid			arraytype = get_array_type(key_type);

	if (!OidIsValid(arraytype))
		elog(ERROR, "type %u has no array type", key_type);
	return arraytype;
}
