/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  iterjob.enqueue(): validates a job and creates it with its instances
 *	  in the caller's transaction.  If the caller rolls back, no job exists;
 *	  when it commits, the launcher is woken.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus.h"
#include "launcher/launcher.h"
#include "worker/worker.h"
#include "api/api.h"

PG_FUNCTION_INFO_V1(iterjob_enqueue);

/* enqueue's arguments, in order */
enum
{
	ARG_RELATION,
	ARG_ACTION,
	ARG_INSTANCES,
	ARG_BATCH_SIZE,
	ARG_KEY,
	ARG_FILTER,
	ARG_NAME,
	ARG_MAX_ATTEMPTS,
	ARG_STATEMENT_TIMEOUT,
	ARG_LOCK_TIMEOUT,
	ARG_PARTITION,
	ARG_QUERY,
	ARG_FOLLOW,
	ARG_ON_COMPLETE,
	ARG_ON_INSTANCE_COMPLETE,
	ARG_BATCH_PAUSE,
	ARG_MAX_ROWS_PER_SECOND,
	ARG_TARGET_BATCH_TIME,
	/* enqueue only: preview takes none of these */
	ARG_MAX_FAILURE_RATIO,
	ARG_FAILURE_WINDOW,
	ARG_AFTER,
	ARG_HEALTH_CHECK,
	ARG_MAX_WAL_PER_SECOND
};

#define INSERT_NARGS 37

static const char *const insert_job_sql =
"WITH j AS ("
"  INSERT INTO iterjob.job (name, relation, query, key_columns, key_types,"
"                           filter, action, instances, batch_size, owner,"
"                           search_path, max_attempts, statement_timeout,"
"                           lock_timeout, partition, follow, upper_bound,"
"                           on_complete, on_instance_complete, rows_total,"
"                           batch_pause, max_rows_per_second, target_batch_time,"
"                           key_opclasses, key_collations, key_descending,"
"                           key_nulls_first, max_failure_ratio, failure_window,"
"                           after, health_check, max_wal_per_second)"
"  VALUES ($1, $2, $3, $4, $5::pg_catalog.regtype[], $6, $7, $8, $9, $10,"
"          $11, $12,"
"          pg_catalog.make_interval(secs => $13 OPERATOR(pg_catalog./) 1000.0),"
"          pg_catalog.make_interval(secs => $14 OPERATOR(pg_catalog./) 1000.0),"
"          $15, $16, $17::pg_catalog.jsonb, $18, $19, $23,"
"          pg_catalog.make_interval(secs => $24 OPERATOR(pg_catalog./) 1000.0),"
"          NULLIF($25, 0),"
"          pg_catalog.make_interval(secs => NULLIF($26, 0) OPERATOR(pg_catalog./) 1000.0),"
"          $27, $28, $29, $30, $31, $32, $33, $34, NULLIF($37, 0))"
"  RETURNING id),"
" t AS ("
"  INSERT INTO iterjob.task (job_id, instance, cursor, range_start, range_end,"
"                            range_empty, rows_total, shards)"
"  SELECT j.id, i,"
"         pg_catalog.jsonb_build_object('instance', i, 'inner_cursor', NULL)"
"           OPERATOR(pg_catalog.||)"
"           pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('shard', sh.ids[1])),"
"         ($20::pg_catalog.text[])[i OPERATOR(pg_catalog.+) 1]::pg_catalog.jsonb,"
"         ($21::pg_catalog.text[])[i OPERATOR(pg_catalog.+) 1]::pg_catalog.jsonb,"
"         COALESCE(($22::pg_catalog.bool[])[i OPERATOR(pg_catalog.+) 1], false),"
"         $23 OPERATOR(pg_catalog./) $8, sh.ids"
"    FROM j, pg_catalog.generate_series(0, $8 OPERATOR(pg_catalog.-) 1) AS i"
"    LEFT JOIN LATERAL ("
"         SELECT pg_catalog.array_agg(u.shard ORDER BY u.o) AS ids"
"           FROM ROWS FROM (pg_catalog.unnest($35::pg_catalog.int8[]),"
"                           pg_catalog.unnest($36::pg_catalog.int4[]))"
"                WITH ORDINALITY AS u(shard, inst, o)"
"          WHERE u.inst OPERATOR(pg_catalog.=) i) AS sh ON true)"
"SELECT id FROM j";

static SPIPlanPtr insert_job_plan = NULL;

static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

static char *
optional_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * SQL that iterjob embeds in parentheses (a query, a filter): without the
 * trailing semicolons and white space one may write after it.
 */
static char *
embeddable(char *sql)
{
	size_t		len;

	if (sql == NULL)
		return NULL;
	len = strlen(sql);
	while (len > 0 && (sql[len - 1] == ';' || isspace((unsigned char) sql[len - 1])))
		sql[--len] = '\0';
	return sql;
}

static Datum
text_or_null(const char *value, char *null)
{
	*null = value ? ' ' : 'n';
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}

/* A one-dimensional array of n elements of type elemtype, some NULL. */
static Datum
make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

static int64
insert_job(const IterjobSpec *spec, const char *name, const IterjobRange *ranges,
		   const IterjobShards *shards, Datum after)
{
	Oid			types[INSERT_NARGS] = {TEXTOID, OIDOID, TEXTOID, TEXTARRAYOID,
		OIDARRAYOID, TEXTOID, TEXTOID, INT4OID, INT4OID, OIDOID, TEXTOID,
		INT4OID, INT4OID, INT4OID, TEXTOID, BOOLOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID, INT8OID, INT4OID,
	INT4OID, INT4OID, OIDARRAYOID, OIDARRAYOID, BOOLARRAYOID, BOOLARRAYOID,
	FLOAT8OID, INT4OID, INT8ARRAYOID, TEXTOID, INT8ARRAYOID, INT4ARRAYOID, INT8OID};
	Datum		args[INSERT_NARGS];
	char		nulls[INSERT_NARGS];
	Datum		names[ITERJOB_MAX_KEYS];
	Datum		keytypes[ITERJOB_MAX_KEYS];
	Datum		opclasses[ITERJOB_MAX_KEYS];
	Datum		collations[ITERJOB_MAX_KEYS];
	Datum		descending[ITERJOB_MAX_KEYS];
	Datum		nulls_first[ITERJOB_MAX_KEYS];
	IterjobSavedUser saved;
	int			nest;
	bool		isnull;
	int64		job_id;

	memset(nulls, ' ', sizeof(nulls));
	for (int i = 0; i < spec->nkeys; i++)
	{
		names[i] = CStringGetTextDatum(spec->key_names[i]);
		keytypes[i] = ObjectIdGetDatum(spec->key_types[i]);
		opclasses[i] = ObjectIdGetDatum(spec->key_opclasses[i]);
		collations[i] = ObjectIdGetDatum(spec->key_collations[i]);
		descending[i] = BoolGetDatum(spec->key_descending[i]);
		nulls_first[i] = BoolGetDatum(spec->key_nulls_first[i]);
	}
	args[0] = text_or_null(name, &nulls[0]);
	args[1] = ObjectIdGetDatum(spec->relid);
	nulls[1] = OidIsValid(spec->relid) ? ' ' : 'n';
	args[2] = text_or_null(spec->query, &nulls[2]);
	args[3] = make_array(names, NULL, spec->nkeys, TEXTOID);
	args[4] = make_array(keytypes, NULL, spec->nkeys, OIDOID);
	args[5] = text_or_null(spec->filter, &nulls[5]);
	args[6] = CStringGetTextDatum(spec->action);
	args[7] = Int32GetDatum(spec->instances);
	args[8] = Int32GetDatum(spec->batch_size);
	args[9] = ObjectIdGetDatum(GetUserId());
	args[10] = CStringGetTextDatum(GetConfigOption("search_path", false, false));
	args[11] = Int32GetDatum(spec->max_attempts);
	args[12] = Int32GetDatum(spec->statement_timeout_ms);
	args[13] = Int32GetDatum(spec->lock_timeout_ms);
	args[14] = CStringGetTextDatum(spec->partition == ITERJOB_PARTITION_RANGE ? "range" :
								   spec->partition == ITERJOB_PARTITION_SHARD ? "shard" :
								   "modulo");
	args[15] = BoolGetDatum(spec->follow);
	args[16] = text_or_null(spec->upper_bound.present ? spec->upper_bound.json : NULL,
							&nulls[16]);
	args[17] = text_or_null(spec->on_complete, &nulls[17]);
	args[18] = text_or_null(spec->on_instance_complete, &nulls[18]);
	args[22] = Int64GetDatum(spec->rows_total);
	args[23] = Int32GetDatum(spec->batch_pause_ms);
	args[24] = Int32GetDatum(spec->max_rows_per_second);
	args[25] = Int32GetDatum(spec->target_batch_ms);
	args[26] = make_array(opclasses, NULL, spec->nkeys, OIDOID);
	args[27] = make_array(collations, NULL, spec->nkeys, OIDOID);
	args[28] = make_array(descending, NULL, spec->nkeys, BOOLOID);
	args[29] = make_array(nulls_first, NULL, spec->nkeys, BOOLOID);
	args[30] = Float8GetDatum(spec->max_failure_ratio);
	args[31] = Int32GetDatum(spec->failure_window);
	args[32] = after;
	nulls[32] = after == (Datum) 0 ? 'n' : ' ';
	args[33] = text_or_null(spec->health_check, &nulls[33]);
	args[36] = Int64GetDatum(spec->max_wal_per_second);
	nulls[19] = nulls[20] = nulls[21] = 'n';
	nulls[34] = nulls[35] = 'n';
	if (shards->n > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * shards->n);
		Datum	   *instances = palloc(sizeof(Datum) * shards->n);

		for (int i = 0; i < shards->n; i++)
		{
			ids[i] = Int64GetDatum(shards->ids[i]);
			instances[i] = Int32GetDatum(shards->instance[i]);
		}
		args[34] = make_array(ids, NULL, shards->n, INT8OID);
		args[35] = make_array(instances, NULL, shards->n, INT4OID);
		nulls[34] = nulls[35] = ' ';
	}
	if (ranges != NULL)
	{
		Datum	   *starts = palloc0(sizeof(Datum) * spec->instances);
		Datum	   *ends = palloc0(sizeof(Datum) * spec->instances);
		Datum	   *empty = palloc0(sizeof(Datum) * spec->instances);
		bool	   *start_nulls = palloc0(sizeof(bool) * spec->instances);
		bool	   *end_nulls = palloc0(sizeof(bool) * spec->instances);

		for (int i = 0; i < spec->instances; i++)
		{
			char		n;

			starts[i] = text_or_null(ranges[i].lower.present ? ranges[i].lower.json : NULL, &n);
			start_nulls[i] = (n == 'n');
			ends[i] = text_or_null(ranges[i].upper.present ? ranges[i].upper.json : NULL, &n);
			end_nulls[i] = (n == 'n');
			empty[i] = BoolGetDatum(ranges[i].empty);
		}
		args[19] = make_array(starts, start_nulls, spec->instances, TEXTOID);
		args[20] = make_array(ends, end_nulls, spec->instances, TEXTOID);
		args[21] = make_array(empty, NULL, spec->instances, BOOLOID);
		nulls[19] = nulls[20] = nulls[21] = ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = iterjob_begin_internal(&saved);
	/* kept for the session: a stream of enqueues plans it once */
	if (iterjob_execute_kept(iterjob_kept_plan(&insert_job_plan, insert_job_sql,
											   INSERT_NARGS, types),
							 args, nulls, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not insert iterjob job");
	job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	iterjob_end_internal(nest, &saved);
	SPI_finish();
	return job_id;
}

static void
check_range(const char *name, int value, int min, int max)
{
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %d and %d", name, min, max),
				 errdetail("Got %d.", value)));
}

/* 'auto' is 'shard' for a hash-distributed Citus table, else 'modulo' */
static IterjobPartition
parse_partition(const char *partition, bool *automatic)
{
	*automatic = false;
	if (strcmp(partition, "modulo") == 0)
		return ITERJOB_PARTITION_MODULO;
	if (strcmp(partition, "range") == 0)
		return ITERJOB_PARTITION_RANGE;
	if (strcmp(partition, "shard") == 0)
		return ITERJOB_PARTITION_SHARD;
	if (strcmp(partition, "auto") == 0)
	{
		*automatic = true;
		return ITERJOB_PARTITION_MODULO;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid partition: \"%s\"", partition),
			 errhint("Use 'auto', 'modulo', 'range' or 'shard'.")));
	pg_unreachable();
}

/* Read and check the arguments into spec (before any query runs). */
static void
read_arguments(FunctionCallInfo fcinfo, bool for_enqueue, IterjobSpec *spec, char **key,
			   char **name, bool *auto_partition)
{
	require_arg(fcinfo, ARG_ACTION, "action");
	require_arg(fcinfo, ARG_INSTANCES, "instances");
	require_arg(fcinfo, ARG_BATCH_SIZE, "batch_size");
	require_arg(fcinfo, ARG_MAX_ATTEMPTS, "max_attempts");
	require_arg(fcinfo, ARG_STATEMENT_TIMEOUT, "statement_timeout");
	require_arg(fcinfo, ARG_LOCK_TIMEOUT, "lock_timeout");
	require_arg(fcinfo, ARG_PARTITION, "partition");
	require_arg(fcinfo, ARG_FOLLOW, "follow");
	require_arg(fcinfo, ARG_BATCH_PAUSE, "batch_pause");

	memset(spec, 0, sizeof(*spec));
	spec->relid = PG_ARGISNULL(ARG_RELATION) ? InvalidOid : PG_GETARG_OID(ARG_RELATION);
	spec->query = embeddable(optional_text(fcinfo, ARG_QUERY));
	if (OidIsValid(spec->relid) == (spec->query != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(spec->query ? "relation and query cannot both be given" :
						"relation or query is required"),
				 errhint("Iterate a table with relation => 'name', or anything else with query => 'SELECT ...' and key => its key columns.")));
	spec->action = text_to_cstring(PG_GETARG_TEXT_PP(ARG_ACTION));
	spec->instances = PG_GETARG_INT32(ARG_INSTANCES);
	spec->batch_size = PG_GETARG_INT32(ARG_BATCH_SIZE);
	*key = optional_text(fcinfo, ARG_KEY);
	spec->filter = embeddable(optional_text(fcinfo, ARG_FILTER));
	*name = optional_text(fcinfo, ARG_NAME);
	spec->max_attempts = PG_GETARG_INT32(ARG_MAX_ATTEMPTS);
	spec->statement_timeout_ms = (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(ARG_STATEMENT_TIMEOUT),
							"statement_timeout", PG_INT32_MAX);
	spec->lock_timeout_ms = (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(ARG_LOCK_TIMEOUT),
							"lock_timeout", PG_INT32_MAX);
	spec->partition = parse_partition(text_to_cstring(PG_GETARG_TEXT_PP(ARG_PARTITION)),
									  auto_partition);
	spec->follow = PG_GETARG_BOOL(ARG_FOLLOW);
	spec->on_complete = optional_text(fcinfo, ARG_ON_COMPLETE);
	spec->on_instance_complete = optional_text(fcinfo, ARG_ON_INSTANCE_COMPLETE);

	spec->batch_pause_ms = (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(ARG_BATCH_PAUSE), "batch_pause", PG_INT32_MAX);
	spec->max_rows_per_second = PG_ARGISNULL(ARG_MAX_ROWS_PER_SECOND) ? 0 :
		PG_GETARG_INT32(ARG_MAX_ROWS_PER_SECOND);
	spec->target_batch_ms = PG_ARGISNULL(ARG_TARGET_BATCH_TIME) ? 0 : (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(ARG_TARGET_BATCH_TIME),
							"target_batch_time", PG_INT32_MAX);

	check_range("instances", spec->instances, 1, ITERJOB_MAX_INSTANCES);
	check_range("max_rows_per_second", spec->max_rows_per_second, 0, PG_INT32_MAX);
	check_range("batch_size", spec->batch_size, 1, ITERJOB_MAX_BATCH_SIZE);
	check_range("max_attempts", spec->max_attempts, 1, 1000);

	if (!for_enqueue)
		return;
	/* the failure-ratio stop: NULL or 0 is off */
	if (PG_NARGS() > ARG_MAX_FAILURE_RATIO && !PG_ARGISNULL(ARG_MAX_FAILURE_RATIO))
		spec->max_failure_ratio = PG_GETARG_FLOAT8(ARG_MAX_FAILURE_RATIO);
	if (PG_NARGS() > ARG_FAILURE_WINDOW && !PG_ARGISNULL(ARG_FAILURE_WINDOW))
		spec->failure_window = PG_GETARG_INT32(ARG_FAILURE_WINDOW);
	if (PG_NARGS() > ARG_HEALTH_CHECK)
		spec->health_check = embeddable(optional_text(fcinfo, ARG_HEALTH_CHECK));
	/* WAL bytes per second, given as a size: NULL is none */
	if (PG_NARGS() > ARG_MAX_WAL_PER_SECOND && !PG_ARGISNULL(ARG_MAX_WAL_PER_SECOND))
		spec->max_wal_per_second =
			iterjob_wal_per_second_arg(PG_GETARG_TEXT_PP(ARG_MAX_WAL_PER_SECOND), false);
	iterjob_check_max_failure_ratio(spec->max_failure_ratio);
	iterjob_check_failure_window(spec->failure_window);
}

/* max_failure_ratio and failure_window, for enqueue and set */
void
iterjob_check_max_failure_ratio(double ratio)
{
	if (isnan(ratio) || ratio < 0 || ratio > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_failure_ratio must be between 0 and 1"),
				 errdetail("Got %g.", ratio),
				 errhint("The job fails when more than this share of its last failure_window batch attempts failed; 0 or NULL turns that off.")));
}

void
iterjob_check_failure_window(int32 window)
{
	check_range("failure_window", window, 0, ITERJOB_MAX_FAILURE_WINDOW);
}

/*
 * Everything enqueue checks and computes before it writes: shared with
 * iterjob.preview().  Runs as the caller.
 */
void
iterjob_prepare_job(FunctionCallInfo fcinfo, bool for_enqueue, IterjobSpec *spec,
					char **name, IterjobRange **ranges, IterjobShards *shards)
{
	char	   *key;
	int			nest;
	bool		auto_partition;

	/* before reading arguments an older SQL definition may not pass */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	iterjob_require_schema_version();
	SPI_finish();

	read_arguments(fcinfo, for_enqueue, spec, &key, name, &auto_partition);

	/*
	 * Bounds are written with to_jsonb(): make it print float keys exactly,
	 * whatever the session's extra_float_digits.
	 */
	nest = NewGUCNestLevel();
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	iterjob_check_owner(GetUserId(), 0);
	if (OidIsValid(spec->relid))
	{
		iterjob_check_relation(spec->relid);
		iterjob_resolve_key(key, spec);
	}
	else
		iterjob_check_query(spec, key);
	if (auto_partition && OidIsValid(spec->relid) && spec->nkeys == 1)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (iterjob_citus_partmethod(spec->relid) == 'h')
			spec->partition = ITERJOB_PARTITION_SHARD;
		SPI_finish();
	}
	iterjob_resolve_key_order(spec);
	if (spec->filter != NULL)
		iterjob_check_filter_syntax(spec->filter);
	iterjob_check_statement_syntax(spec->action, "action");
	if (spec->on_complete)
		iterjob_check_statement_syntax(spec->on_complete, "on_complete");
	if (spec->on_instance_complete)
		iterjob_check_statement_syntax(spec->on_instance_complete, "on_instance_complete");
	if (spec->health_check)
		iterjob_check_health_check(spec->health_check);

	/* batches through Citus from here need its two-phase commit */
	if (spec->partition != ITERJOB_PARTITION_SHARD && OidIsValid(spec->relid) &&
		iterjob_citus_installed())
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (iterjob_citus_partmethod(spec->relid) == 'h')
			iterjob_citus_check_coordination(spec, spec->partition == ITERJOB_PARTITION_RANGE ?
											 "range" : "modulo");
		SPI_finish();
	}

	/* every shard is reached first: an unreachable one is named */
	if (spec->partition == ITERJOB_PARTITION_SHARD)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		iterjob_assign_shards(spec, shards);
		SPI_finish();
	}
	if (!spec->follow)
		iterjob_find_upper_bound(spec);
	iterjob_check_plans(spec);
	*ranges = NULL;
	if (spec->partition == ITERJOB_PARTITION_RANGE)
		*ranges = iterjob_split_ranges(spec);
	if (spec->partition != ITERJOB_PARTITION_SHARD)
		spec->rows_total = iterjob_estimate_rows(spec);
	AtEOXact_GUC(true, nest);
}

Datum
iterjob_enqueue(PG_FUNCTION_ARGS)
{
	IterjobSpec spec;
	IterjobRange *ranges;
	char	   *name;
	int64		job_id;
	Datum		after = (Datum) 0;

	IterjobShards shards = {0};

	iterjob_prepare_job(fcinfo, true, &spec, &name, &ranges, &shards);

	/*
	 * A tenant cannot hold a worker for longer than the server allows: the
	 * job keeps what it asked for, its batches get at most the cap (read at
	 * each batch, so a lower cap applies to running jobs too).
	 */
	if (spec.statement_timeout_ms > iterjob_max_statement_timeout_ms)
		ereport(NOTICE,
				(errmsg("statement_timeout is more than iterjob.max_statement_timeout (%s)",
						GetConfigOptionByName("iterjob.max_statement_timeout", NULL, false)),
				 errdetail("Each batch of the job is limited to iterjob.max_statement_timeout, as it is when the batch starts.")));
	if (PG_NARGS() > ARG_AFTER && !PG_ARGISNULL(ARG_AFTER))
		after = iterjob_check_after(PG_GETARG_ARRAYTYPE_P(ARG_AFTER));
	job_id = insert_job(&spec, name, ranges, &shards, after);

	if (iterjob_shared == NULL)
		ereport(WARNING,
				(errmsg("iterjob is not loaded through shared_preload_libraries; job " INT64_FORMAT " will not run until it is", job_id),
				 errhint("Add iterjob to shared_preload_libraries in postgresql.conf and restart the server.")));
	else
		iterjob_wake_at_commit(GetUserId(), job_id);

	PG_RETURN_INT64(job_id);
}
