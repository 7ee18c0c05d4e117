/*-------------------------------------------------------------------------
 *
 * bounds.c
 *	  Key bounds computed at enqueue: the largest key present (a job stops
 *	  there unless it follows new keys), and the split of the key space into
 *	  N contiguous ranges holding similar numbers of rows, from a sample,
 *	  for range partitioning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/stratnum.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "iterjob.h"
#include "keys/keys.h"

/* rows sampled to split ranges; tables with fewer rows are read whole */
#define RANGE_SAMPLE_ROWS	50000
/* pages read at most to sample them */
#define RANGE_SAMPLE_PAGES	5000

void
iterjob_find_upper_bound(IterjobSpec *spec)
{
	const char *json = iterjob_key_jsonb_sql(spec, false);
	MemoryContext cxt = CurrentMemoryContext;
	char	   *sql;

	sql = psprintf("SELECT %s FROM %s WHERE true%s ORDER BY %s LIMIT 1",
				   json, iterjob_source_sql(spec), iterjob_keys_not_null(spec),
				   iterjob_key_order_by(spec, true));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not find the largest key");
	memset(&spec->upper_bound, 0, sizeof(spec->upper_bound));
	if (SPI_processed == 1)
	{
		iterjob_key_value_from_row(spec, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								   1, &spec->upper_bound, cxt);
		iterjob_check_key_form(spec, &spec->upper_bound, "the largest key");
	}
	SPI_finish();
}

/* The job's filter, and its largest key unless it follows new keys. */
static void
append_job_conditions(StringInfo sql, const IterjobSpec *spec)
{
	if (spec->filter)
		appendStringInfo(sql, " AND (\n%s\n)", spec->filter);
	if (!spec->follow && spec->upper_bound.present)
	{
		char	   *literals[ITERJOB_MAX_KEYS];

		iterjob_key_literals(spec, &spec->upper_bound, literals);
		appendStringInfo(sql, " AND %s",
						 iterjob_key_compare_sql(spec, BTLessEqualStrategyNumber, literals));
	}
}

/*
 * How to sample about RANGE_SAMPLE_ROWS keys of a big relation, uniformly:
 * a TABLESAMPLE of whole pages (at most RANGE_SAMPLE_PAGES of them, read at
 * random) and, appended to the WHERE clause, a random thinning of their
 * rows.  Sampling pages alone would put boundaries several percent off on
 * tables stored in key order; rows from many pages do not.  Small relations
 * are read whole.
 */
static void
sample_clauses(const IterjobSpec *spec, char **tablesample, char **thinning)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(spec->relid);
	bool		isnull;
	double		rows;
	double		pages;
	double		page_fraction;
	double		row_fraction;

	*tablesample = "";
	*thinning = "";
	if (!OidIsValid(spec->relid))
		return;
	if (SPI_execute_with_args("SELECT pg_catalog.sum(CASE WHEN c.reltuples OPERATOR(pg_catalog.>=) 0"
							  "   THEN c.reltuples ELSE pg_catalog.pg_relation_size(c.oid)"
							  "   OPERATOR(pg_catalog./) 8192 OPERATOR(pg_catalog.*) 100 END)::pg_catalog.float8,"
							  "       pg_catalog.sum(pg_catalog.pg_relation_size(c.oid)"
							  "   OPERATOR(pg_catalog./) 8192)::pg_catalog.float8"
							  "  FROM pg_catalog.pg_class c"
							  " WHERE c.oid OPERATOR(pg_catalog.=) $1"
							  "    OR c.oid OPERATOR(pg_catalog.=) ANY ("
							  "       SELECT relid FROM pg_catalog.pg_partition_tree($1))",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not estimate the size of relation %u", spec->relid);
	rows = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull));
	if (isnull || rows <= 2 * RANGE_SAMPLE_ROWS)
		return;
	pages = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 2, &isnull));
	page_fraction = (isnull || pages <= RANGE_SAMPLE_PAGES) ? 1.0 :
		RANGE_SAMPLE_PAGES / pages;
	row_fraction = Min(1.0, RANGE_SAMPLE_ROWS / (rows * page_fraction));
	if (page_fraction < 1.0)
		*tablesample = psprintf(" TABLESAMPLE pg_catalog.system (%g)", 100.0 * page_fraction);
	*thinning = psprintf(" AND pg_catalog.random() OPERATOR(pg_catalog.<) %g", row_fraction);
}

/*
 * The planner's histogram of a single key column, as a query returning its
 * bounds as keys in order, when it describes the keys well: a key walked
 * in its type's default order under the column's collation (the
 * histogram's order), a plain table
 * or materialized view with no filter, a histogram with no most common
 * values beside it (so its bounds are quantiles of all rows), and at most
 * 10% of the rows changed since ANALYZE.  Reading it costs nothing where a
 * sample reads thousands of pages; ANALYZE sampled rows, not pages, so its
 * quantiles are as good.  NULL when it cannot be used.
 */
static char *
histogram_sql(const IterjobSpec *spec)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	Datum		bounds;

	/* its bounds are in the column's default order */
	if (!OidIsValid(spec->relid) || spec->nkeys != 1 || spec->filter != NULL ||
		!spec->key_natural_order)
		return NULL;
	args[0] = ObjectIdGetDatum(spec->relid);
	args[1] = CStringGetTextDatum(spec->key_names[0]);
	if (SPI_execute_with_args("SELECT s.histogram_bounds::pg_catalog.text"
							  "  FROM pg_catalog.pg_class c"
							  "  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
							  "  JOIN pg_catalog.pg_stats s ON s.schemaname OPERATOR(pg_catalog.=) n.nspname"
							  "   AND s.tablename OPERATOR(pg_catalog.=) c.relname"
							  " WHERE c.oid OPERATOR(pg_catalog.=) $1"
							  "   AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m}'::pg_catalog.\"char\"[])"
							  "   AND s.attname OPERATOR(pg_catalog.=) $2 AND NOT s.inherited"
							  "   AND s.most_common_vals IS NULL AND s.histogram_bounds IS NOT NULL"
							  "   AND pg_catalog.pg_stat_get_mod_since_analyze(c.oid)"
							  "       OPERATOR(pg_catalog.<=) (0.1 OPERATOR(pg_catalog.*) c.reltuples)",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the statistics of relation %u", spec->relid);
	if (SPI_processed != 1)
		return NULL;
	bounds = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return NULL;
	return psprintf("SELECT b::%s FROM pg_catalog.unnest(%s::pg_catalog.text[]) AS b",
					iterjob_type_sql(spec->key_types[0]),
					quote_literal_cstr(TextDatumGetCString(bounds)));
}

/*
 * Split the keys into spec->instances contiguous ranges of similar row
 * counts: boundary j is the key at quantile j / N, from the planner's
 * histogram or, without a usable one, from M sampled keys in order (the
 * key at position j * M / N).  With no key sampled, instance 0 takes
 * everything.
 */
IterjobRange *
iterjob_split_ranges(const IterjobSpec *spec)
{
	MemoryContext cxt = CurrentMemoryContext;
	IterjobRange *ranges = palloc0(sizeof(IterjobRange) * spec->instances);
	StringInfoData sql;
	StringInfoData boundary_sql;
	SPITupleTable *sample;
	char	   *tablesample;
	char	   *thinning;
	uint64		m;
	char	   *hist;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	initStringInfo(&sql);
	hist = histogram_sql(spec);
	if (hist != NULL)
		appendStringInfoString(&sql, hist);
	else
	{
		sample_clauses(spec, &tablesample, &thinning);
		appendStringInfo(&sql, "SELECT %s FROM %s%s WHERE true%s%s",
						 iterjob_key_list(spec, "", false), iterjob_source_sql(spec),
						 tablesample, iterjob_keys_not_null(spec), thinning);
		append_job_conditions(&sql, spec);
		appendStringInfo(&sql, " ORDER BY %s", iterjob_key_order_by(spec, false));
	}
	if (SPI_execute(sql.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not sample keys");
	sample = SPI_tuptable;
	m = SPI_processed;

	/* the jsonb form of a boundary: $1.. are its key columns */
	initStringInfo(&boundary_sql);
	appendStringInfo(&boundary_sql, "SELECT %s", iterjob_key_jsonb_sql(spec, true));

	for (int i = 1; i < spec->instances; i++)
	{
		HeapTuple	row;
		Datum		values[ITERJOB_MAX_KEYS];

		if (m == 0)
		{
			ranges[i].empty = true;
			continue;
		}
		/* the histogram's bounds are quantiles 0, 1/(m-1), ..., 1 */
		if (hist != NULL)
			row = sample->vals[((uint64) i * (m - 1) + spec->instances / 2) / spec->instances];
		else
			row = sample->vals[(uint64) i * m / spec->instances];
		for (int k = 0; k < spec->nkeys; k++)
		{
			bool		isnull;

			values[k] = SPI_getbinval(row, sample->tupdesc, k + 1, &isnull);
		}
		if (SPI_execute_with_args(boundary_sql.data, spec->nkeys,
								  (Oid *) spec->key_types, values, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not encode a range boundary");
		iterjob_key_value_from_row(spec, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								   1, &ranges[i].lower, cxt);
		iterjob_check_key_form(spec, &ranges[i].lower, "a range boundary");
		SPI_freetuptable(SPI_tuptable);
		ranges[i - 1].upper = ranges[i].lower;
	}
	SPI_finish();
	return ranges;
}

/*
 * The planner's estimate of the rows a job will iterate: cheap even on huge
 * relations (no count(*)); iterjob.recount() replaces it with an exact count.
 */
int64
iterjob_estimate_rows(const IterjobSpec *spec)
{
	StringInfoData sql;
	Oid			type = TEXTOID;
	Datum		arg;
	int64		result = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	initStringInfo(&sql);
	appendStringInfo(&sql, "EXPLAIN (FORMAT JSON) SELECT 1 FROM %s WHERE true%s",
					 iterjob_source_sql(spec), iterjob_keys_not_null(spec));
	append_job_conditions(&sql, spec);
	if (!spec->follow && !spec->upper_bound.present)
		appendStringInfoString(&sql, " AND false");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY || SPI_processed != 1)
		elog(ERROR, "could not estimate the rows of the job");
	arg = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	if (SPI_execute_with_args("SELECT (($1::pg_catalog.jsonb) OPERATOR(pg_catalog.->) 0"
							  " OPERATOR(pg_catalog.->) 'Plan' OPERATOR(pg_catalog.->>) 'Plan Rows')"
							  "::pg_catalog.float8",
							  1, &type, &arg, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		isnull;
		Datum		rows = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull);

		if (!isnull)
			result = (int64) DatumGetFloat8(rows);
	}
	SPI_finish();
	/* "AND false" still plans one row */
	if (!spec->follow && !spec->upper_bound.present)
		result = 0;
	return result;
}
