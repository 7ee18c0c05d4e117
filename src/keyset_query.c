/*-------------------------------------------------------------------------
 *
 * keyset_query.c
 *	  Builds the keyset-pagination query one instance of a job runs for each
 *	  batch:
 *
 *		SELECT k1, k2 FROM source
 *		 WHERE <partition predicate>
 *		   AND (k1, k2) <= <largest key at enqueue>
 *		   AND (k1, k2) > ($1, $2)
 *		   AND (filter)
 *		 ORDER BY k1, k2 LIMIT batch_size
 *
 *	  The partition predicate is abs(k % N) = i for one integer key,
 *	  abs(hash_record_extended(ROW(k1, k2), 0) % N) = i otherwise (which
 *	  combines the key types' extended hash functions), or the
 *	  instance's [lower, upper) key range under range partitioning.  Row
 *	  comparisons, not OR chains, keep every key condition an index
 *	  condition.  Identifiers are quoted, values are quoted literals, and the
 *	  filter has passed iterjob's syntax check, so it is a single expression.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "job_spec.h"

char *
iterjob_source_sql(const IterjobSpec *spec)
{
	char	   *nspname;
	char	   *relname;

	if (spec->query != NULL)
		return psprintf("(\n%s\n) AS iterjob_source", spec->query);

	nspname = get_namespace_name(get_rel_namespace(spec->relid));
	relname = get_rel_name(spec->relid);
	if (nspname == NULL || relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", spec->relid),
				 errdetail("The relation was dropped after the job was enqueued.")));
	return quote_qualified_identifier(nspname, relname);
}

/* "k1, k2", or "k1 DESC, k2 DESC" */
char *
iterjob_key_list(const IterjobSpec *spec, const char *prefix, bool descending)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < spec->nkeys; i++)
		appendStringInfo(&buf, "%s%s%s%s", i > 0 ? ", " : "", prefix,
						 quote_identifier(spec->key_names[i]),
						 descending ? " DESC" : "");
	return buf.data;
}

/* ROW('v1'::t1, 'v2'::t2), or 'v'::t for a single key */
char *
iterjob_key_literal(const IterjobSpec *spec, const IterjobKeyValue *value)
{
	StringInfoData buf;

	Assert(value->present);
	initStringInfo(&buf);
	if (spec->nkeys > 1)
		appendStringInfoString(&buf, "ROW(");
	for (int i = 0; i < spec->nkeys; i++)
		appendStringInfo(&buf, "%s%s::%s", i > 0 ? ", " : "",
						 quote_literal_cstr(value->text[i]),
						 format_type_be_qualified(spec->key_types[i]));
	if (spec->nkeys > 1)
		appendStringInfoChar(&buf, ')');
	return buf.data;
}

static bool
is_integer_type(Oid type)
{
	return type == INT2OID || type == INT4OID || type == INT8OID;
}

static void
append_modulo_predicate(StringInfo buf, const IterjobSpec *spec, int32 instance)
{
	const char *keys = iterjob_key_list(spec, "", false);

	if (spec->nkeys == 1 && is_integer_type(spec->key_types[0]))
	{
		/*
		 * abs() keeps negative keys in range: for keys >= 0 this is exactly
		 * key % N = i, and every negative key still lands in one instance.
		 */
		const char *type = format_type_be(spec->key_types[0]);

		appendStringInfo(buf,
						 " AND pg_catalog.abs(%s OPERATOR(pg_catalog.%%) %d::%s)"
						 " OPERATOR(pg_catalog.=) %d::%s",
						 keys, spec->instances, type, instance, type);
		return;
	}

	/*
	 * hash_record_extended combines the key types' own extended hash
	 * functions; for one column it is exactly that column's hash, the same
	 * on every run and every server.
	 */
	for (int i = 0; i < spec->nkeys; i++)
	{
		TypeCacheEntry *tc = lookup_type_cache(spec->key_types[i],
											   TYPECACHE_HASH_EXTENDED_PROC);

		if (!OidIsValid(tc->hash_extended_proc))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("key type %s has no extended hash function",
							format_type_be(spec->key_types[i])),
					 errhint("Use partition => 'range'.")));
	}
	appendStringInfo(buf, " AND pg_catalog.abs(pg_catalog.hash_record_extended(ROW(%s), 0)",
					 keys);
	appendStringInfo(buf, " OPERATOR(pg_catalog.%%) %d::pg_catalog.int8)"
					 " OPERATOR(pg_catalog.=) %d::pg_catalog.int8",
					 spec->instances, instance);
}

/* " AND k1 IS NOT NULL AND k2 IS NOT NULL" */
char *
iterjob_keys_not_null(const IterjobSpec *spec)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < spec->nkeys; i++)
		appendStringInfo(&buf, " AND %s IS NOT NULL", quote_identifier(spec->key_names[i]));
	return buf.data;
}

/* The predicates that select an instance's keys, after "WHERE true". */
static void
append_instance_predicates(StringInfo buf, const IterjobSpec *spec,
						   int32 instance, const IterjobRange *range)
{
	const char *keys = iterjob_key_list(spec, "", false);

	/* rows whose key has a NULL are never visited */
	appendStringInfoString(buf, iterjob_keys_not_null(spec));
	if (range != NULL && range->empty)
		appendStringInfoString(buf, " AND false");
	if (spec->partition == ITERJOB_PARTITION_MODULO && spec->instances > 1)
		append_modulo_predicate(buf, spec, instance);
	if (range != NULL && range->lower.present)
		appendStringInfo(buf, " AND (%s) OPERATOR(pg_catalog.>=) %s",
						 keys, iterjob_key_literal(spec, &range->lower));
	if (range != NULL && range->upper.present)
		appendStringInfo(buf, " AND (%s) OPERATOR(pg_catalog.<) %s",
						 keys, iterjob_key_literal(spec, &range->upper));

	if (!spec->follow)
	{
		if (spec->upper_bound.present)
			appendStringInfo(buf, " AND (%s) OPERATOR(pg_catalog.<=) %s",
							 keys, iterjob_key_literal(spec, &spec->upper_bound));
		else
			appendStringInfoString(buf, " AND false");	/* it was empty */
	}
	if (spec->filter != NULL)
		appendStringInfo(buf, " AND (\n%s\n)", spec->filter);
}

/*
 * With limit_param, the batch size is the last parameter ($1, or $nkeys+1
 * after the cursor), so it can change while the plan is kept.
 */
char *
iterjob_keyset_query(const IterjobSpec *spec, int32 instance,
					 const IterjobRange *range, bool after_cursor,
					 bool limit_param)
{
	StringInfoData buf;
	const char *keys = iterjob_key_list(spec, "", false);

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT %s FROM %s WHERE true",
					 keys, iterjob_source_sql(spec));
	append_instance_predicates(&buf, spec, instance, range);
	if (after_cursor)
	{
		appendStringInfo(&buf, " AND (%s) OPERATOR(pg_catalog.>) (", keys);
		for (int i = 0; i < spec->nkeys; i++)
			appendStringInfo(&buf, "%s$%d", i > 0 ? ", " : "", i + 1);
		appendStringInfoChar(&buf, ')');
	}
	if (limit_param)
		appendStringInfo(&buf, " ORDER BY %s LIMIT $%d", keys,
						 after_cursor ? spec->nkeys + 1 : 1);
	else
		appendStringInfo(&buf, " ORDER BY %s LIMIT %d", keys, spec->batch_size);

	return buf.data;
}

/* SELECT count(*) of the keys an instance iterates, cursor aside. */
char *
iterjob_count_query(const IterjobSpec *spec, int32 instance,
					const IterjobRange *range)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT pg_catalog.count(*) FROM %s WHERE true",
					 iterjob_source_sql(spec));
	append_instance_predicates(&buf, spec, instance, range);
	return buf.data;
}

/* SQL for the key's jsonb form: to_jsonb(k), or jsonb_build_array(k1, k2) */
char *
iterjob_key_jsonb_sql(const IterjobSpec *spec)
{
	if (spec->nkeys == 1)
		return psprintf("pg_catalog.to_jsonb(%s)", quote_identifier(spec->key_names[0]));
	return psprintf("pg_catalog.jsonb_build_array(%s)", iterjob_key_list(spec, "", false));
}

Oid
iterjob_key_array_type(Oid key_type)
{
	Oid			arraytype = get_array_type(key_type);

	if (!OidIsValid(arraytype))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key type %s has no array type", format_type_be(key_type))));
	return arraytype;
}
