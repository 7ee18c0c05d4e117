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

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "job_spec.h"

PG_FUNCTION_INFO_V1(iterjob_enqueue);

static const char *const insert_job_sql =
"WITH j AS ("
"  INSERT INTO iterjob.job (name, relation, key_column, key_type, filter,"
"                           action, instances, batch_size, owner, search_path,"
"                           max_attempts, statement_timeout, lock_timeout)"
"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
"          pg_catalog.make_interval(secs => $12 OPERATOR(pg_catalog./) 1000.0),"
"          pg_catalog.make_interval(secs => $13 OPERATOR(pg_catalog./) 1000.0))"
"  RETURNING id),"
" t AS ("
"  INSERT INTO iterjob.task (job_id, instance, cursor)"
"  SELECT j.id, i, pg_catalog.jsonb_build_object('instance', i, 'inner_cursor', NULL)"
"    FROM j, pg_catalog.generate_series(0, $7 OPERATOR(pg_catalog.-) 1) AS i)"
"SELECT id FROM j";

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

static int64
insert_job(const IterjobSpec *spec, const char *name)
{
	Oid			types[13] = {TEXTOID, OIDOID, TEXTOID, OIDOID, TEXTOID,
		TEXTOID, INT4OID, INT4OID, OIDOID, TEXTOID,
	INT4OID, INT4OID, INT4OID};
	Datum		args[13];
	char		nulls[13];
	IterjobSavedUser saved;
	int			nest;
	bool		isnull;
	int64		job_id;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[0] = name ? ' ' : 'n';
	args[1] = ObjectIdGetDatum(spec->relid);
	args[2] = CStringGetTextDatum(spec->key_column);
	args[3] = ObjectIdGetDatum(spec->key_type);
	args[4] = spec->filter ? CStringGetTextDatum(spec->filter) : (Datum) 0;
	nulls[4] = spec->filter ? ' ' : 'n';
	args[5] = CStringGetTextDatum(spec->action);
	args[6] = Int32GetDatum(spec->instances);
	args[7] = Int32GetDatum(spec->batch_size);
	args[8] = ObjectIdGetDatum(GetUserId());
	args[9] = CStringGetTextDatum(GetConfigOption("search_path", false, false));
	args[10] = Int32GetDatum(spec->max_attempts);
	args[11] = Int32GetDatum(spec->statement_timeout_ms);
	args[12] = Int32GetDatum(spec->lock_timeout_ms);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	iterjob_become_superuser(&saved);
	if (SPI_execute_with_args(insert_job_sql, 13, types, args, nulls,
							  false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not insert iterjob job");
	job_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	iterjob_restore_user(&saved);
	AtEOXact_GUC(true, nest);
	SPI_finish();
	return job_id;
}

Datum
iterjob_enqueue(PG_FUNCTION_ARGS)
{
	IterjobSpec spec;
	char	   *key;
	char	   *name;
	int64		job_id;

	require_arg(fcinfo, 0, "relation");
	require_arg(fcinfo, 1, "action");
	require_arg(fcinfo, 2, "instances");
	require_arg(fcinfo, 3, "batch_size");
	require_arg(fcinfo, 7, "max_attempts");
	require_arg(fcinfo, 8, "statement_timeout");
	require_arg(fcinfo, 9, "lock_timeout");

	memset(&spec, 0, sizeof(spec));
	spec.relid = PG_GETARG_OID(0);
	spec.action = text_to_cstring(PG_GETARG_TEXT_PP(1));
	spec.instances = PG_GETARG_INT32(2);
	spec.batch_size = PG_GETARG_INT32(3);
	key = optional_text(fcinfo, 4);
	spec.filter = optional_text(fcinfo, 5);
	name = optional_text(fcinfo, 6);
	spec.max_attempts = PG_GETARG_INT32(7);
	spec.statement_timeout_ms = (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(8), "statement_timeout", PG_INT32_MAX);
	spec.lock_timeout_ms = (int32)
		iterjob_interval_ms(PG_GETARG_INTERVAL_P(9), "lock_timeout", PG_INT32_MAX);

	if (spec.instances < 1 || spec.instances > ITERJOB_MAX_INSTANCES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("instances must be between 1 and %d", ITERJOB_MAX_INSTANCES),
				 errdetail("Got %d.", spec.instances)));
	if (spec.batch_size < 1 || spec.batch_size > ITERJOB_MAX_BATCH_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and %d", ITERJOB_MAX_BATCH_SIZE),
				 errdetail("Got %d.", spec.batch_size)));

	if (spec.max_attempts < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be at least 1"),
				 errdetail("Got %d.", spec.max_attempts)));

	iterjob_check_owner(GetUserId(), 0);
	iterjob_check_relation(spec.relid);
	iterjob_resolve_key(spec.relid, key, &spec);
	if (spec.filter != NULL)
		iterjob_check_filter_syntax(spec.filter);
	iterjob_check_action_syntax(spec.action);
	iterjob_check_plans(&spec);

	job_id = insert_job(&spec, name);

	if (iterjob_shared == NULL)
		ereport(WARNING,
				(errmsg("iterjob is not loaded through shared_preload_libraries; job " INT64_FORMAT " will not run until it is", job_id),
				 errhint("Add iterjob to shared_preload_libraries in postgresql.conf and restart the server.")));
	else
		iterjob_wake_at_commit();

	PG_RETURN_INT64(job_id);
}
