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
 *		 ORDER BY k1 USING <, k2 USING < LIMIT batch_size
 *
 *	  The comparisons and ORDER BY use the operators of the key's order
 *	  (key_order.c): those of the iterated index's operator family, under
 *	  its collation.  The partition predicate is abs(k % N) = i for one
 *	  integer key, abs(hash_record_extended(ROW(k1, k2), 0) % N) = i
 *	  otherwise (which combines the key types' extended hash functions), or
 *	  the instance's [lower, upper) key range under range partitioning.  Row
 *	  comparisons, not OR chains, keep every key condition an index
 *	  condition; a composite key whose columns' operators differ in name (a
 *	  text_pattern_ops column beside an integer one, a DESC column) instead
 *	  unions one index range scan per column after the cursor.  Identifiers
 *	  are quoted, values are quoted literals, and the filter has passed
 *	  iterjob's syntax check, so it is a single expression.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/stratnum.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "iterjob.h"
#include "keys/keys.h"

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

/*
 * A type as iterjob's SQL names it in casts: schema-qualified, and without
 * a length, so that a value cast to it keeps its own (format_type_be()'s
 * "character" is char(1): '日本'::character is '日').
 */
char *
iterjob_type_sql(Oid type)
{
	return format_type_extended(type, -1,
								FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
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

/* 'v1'::t1, 'v2'::t2: each column of a key value as a literal */
void
iterjob_key_literals(const IterjobSpec *spec, const IterjobKeyValue *value,
					 char **literals)
{
	Assert(value->present);
	if (value->problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a stored value of key (%s) is not one non-null scalar per key column",
						iterjob_key_list(spec, "", false)),
				 errdetail("It is %s, which %s.", value->json, value->problem)));
	for (int i = 0; i < spec->nkeys; i++)
		literals[i] = psprintf("%s::%s", quote_literal_cstr(value->text[i]),
							   iterjob_type_sql(spec->key_types[i]));
}

/* " AND <key> <op> <value>", by strategy s of the walking order */
static void
append_bound(StringInfo buf, const IterjobSpec *spec, int s,
			 const IterjobKeyValue *value)
{
	char	   *literals[ITERJOB_MAX_KEYS];

	iterjob_key_literals(spec, value, literals);
	appendStringInfo(buf, " AND %s", iterjob_key_compare_sql(spec, s, literals));
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
		const char *type = iterjob_type_sql(spec->key_types[0]);

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
	/* rows whose key has a NULL are never visited */
	appendStringInfoString(buf, iterjob_keys_not_null(spec));
	if (range != NULL && range->empty)
		appendStringInfoString(buf, " AND false");
	if (spec->partition == ITERJOB_PARTITION_MODULO && spec->instances > 1)
		append_modulo_predicate(buf, spec, instance);
	if (range != NULL && range->lower.present)
		append_bound(buf, spec, BTGreaterEqualStrategyNumber, &range->lower);
	if (range != NULL && range->upper.present)
		append_bound(buf, spec, BTLessStrategyNumber, &range->upper);

	if (!spec->follow)
	{
		if (spec->upper_bound.present)
			append_bound(buf, spec, BTLessEqualStrategyNumber, &spec->upper_bound);
		else
			appendStringInfoString(buf, " AND false");	/* it was empty */
	}
	if (spec->filter != NULL)
		appendStringInfo(buf, " AND (\n%s\n)", spec->filter);
}

/* "$1", "$2", ...: the cursor's columns */
static void
cursor_params(const IterjobSpec *spec, char **params)
{
	for (int i = 0; i < spec->nkeys; i++)
		params[i] = psprintf("$%d", i + 1);
}

/*
 * After the cursor, for a key whose columns have no row comparison: one
 * branch per column, each an index range scan of at most limit keys
 * (c0 = $1 AND c1 > $2, then c0 > $1), their union in key order.
 */
static void
append_cursor_branches(StringInfo buf, const IterjobSpec *spec, int32 instance,
					   const IterjobRange *range, const char *limit)
{
	const char *keys = iterjob_key_list(spec, "", false);
	const char *order_by = iterjob_key_order_by(spec, false);
	char	   *params[ITERJOB_MAX_KEYS];

	cursor_params(spec, params);
	appendStringInfo(buf, "SELECT %s FROM (", keys);
	for (int j = spec->nkeys - 1; j >= 0; j--)
	{
		appendStringInfo(buf, "%s(SELECT %s FROM %s WHERE true",
						 j < spec->nkeys - 1 ? " UNION ALL " : "",
						 keys, iterjob_source_sql(spec));
		append_instance_predicates(buf, spec, instance, range);
		for (int i = 0; i < j; i++)
			appendStringInfo(buf, " AND %s",
							 iterjob_key_column_compare_sql(spec, i, BTEqualStrategyNumber,
															params[i]));
		appendStringInfo(buf, " AND %s ORDER BY %s LIMIT %s)",
						 iterjob_key_column_compare_sql(spec, j, BTGreaterStrategyNumber,
														params[j]),
						 order_by, limit);
	}
	appendStringInfo(buf, ") AS iterjob_batch ORDER BY %s LIMIT %s", order_by, limit);
}

/*
 * The next batch of an instance's keys, in the key's order: after the
 * cursor ($1..$nkeys) when after_cursor.  With limit_param, the batch size
 * is the last parameter ($1, or $nkeys+1 after the cursor), so it can
 * change while the plan is kept.
 */
char *
iterjob_keyset_query(const IterjobSpec *spec, int32 instance,
					 const IterjobRange *range, bool after_cursor,
					 bool limit_param)
{
	StringInfoData buf;
	const char *keys = iterjob_key_list(spec, "", false);
	char	   *limit;

	initStringInfo(&buf);
	if (limit_param)
		limit = psprintf("$%d", after_cursor ? spec->nkeys + 1 : 1);
	else
		limit = psprintf("%d", spec->batch_size);

	if (after_cursor && spec->nkeys > 1 && !spec->order.row_compare)
	{
		append_cursor_branches(&buf, spec, instance, range, limit);
		return buf.data;
	}

	appendStringInfo(&buf, "SELECT %s FROM %s WHERE true",
					 keys, iterjob_source_sql(spec));
	append_instance_predicates(&buf, spec, instance, range);
	if (after_cursor)
	{
		char	   *params[ITERJOB_MAX_KEYS];

		cursor_params(spec, params);
		appendStringInfo(&buf, " AND %s",
						 iterjob_key_compare_sql(spec, BTGreaterStrategyNumber, params));
	}
	appendStringInfo(&buf, " ORDER BY %s LIMIT %s", iterjob_key_order_by(spec, false), limit);
	return buf.data;
}

/*
 * partition => 'shard': the next $1 keys of one shard, after the key whose
 * text is $2 if after (else from its start), in the key's order, run on
 * the shard's node by iterjob.node_batch().  One key column.
 */
char *
iterjob_shard_keyset_query(const IterjobSpec *spec, const char *shard, bool after)
{
	IterjobSpec shard_spec = *spec;
	StringInfoData buf;
	const char *key = quote_identifier(spec->key_names[0]);
	const char *order_by = iterjob_key_order_by(spec, false);

	Assert(spec->nkeys == 1);
	shard_spec.relid = InvalidOid;
	shard_spec.query = psprintf("SELECT * FROM %s", shard);
	shard_spec.instances = 1;
	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT %s FROM %s WHERE true",
					 key, iterjob_source_sql(&shard_spec));
	append_instance_predicates(&buf, &shard_spec, 0, NULL);
	if (after)
	{
		char	   *param = psprintf("$2::%s", iterjob_type_sql(spec->key_types[0]));

		appendStringInfo(&buf, " AND %s",
						 iterjob_key_compare_sql(spec, BTGreaterStrategyNumber,
												 (char *const *) &param));
	}
	appendStringInfo(&buf, " ORDER BY %s LIMIT $1::pg_catalog.int4", order_by);
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
