/*-------------------------------------------------------------------------
 *
 * preview.c
 *	  iterjob.preview(): takes enqueue's parameters, checks everything
 *	  enqueue would, creates nothing, and shows what would run: per
 *	  instance, the first batch's keyset query and its plan, the action, and
 *	  the estimated rows and batches; with sample_batches, the first
 *	  batches run and rolled back (preview_sample.c), timed, and the job's
 *	  duration estimated from them.  A job with partition 'shard' is shown
 *	  shard by shard (shard_preview.c).  The way to check a job before
 *	  starting it on a production table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "api/api.h"

PG_FUNCTION_INFO_V1(iterjob_preview);

/* preview's last argument; the others are enqueue's first ones */
#define ARG_SAMPLE_BATCHES 18
#define MAX_SAMPLE_BATCHES 100

static Datum
interval_ms(double ms)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = (TimeOffset) (ms * 1000.0);
	return IntervalPGetDatum(result);
}

/* EXPLAIN of sql, as the caller, with the planner settings workers use */
static char *
explain(const char *sql)
{
	StringInfoData plan;
	IterjobSavedUser saved;
	int			nest;

	nest = iterjob_begin_owner_section(GetUserId(),
									   GetConfigOption("search_path", false, false),
									   0, true, &saved);
	if (SPI_execute(psprintf("EXPLAIN %s", sql), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not explain the keyset query");
	iterjob_end_owner_section(nest, &saved);
	initStringInfo(&plan);
	for (uint64 i = 0; i < SPI_processed; i++)
		appendStringInfo(&plan, "%s%s", i > 0 ? "\n" : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return plan.data;
}

/*
 * EXPLAIN of the next-batch query (after a cursor: $1.. the cursor, then
 * the batch size) as workers plan it: generic, for any cursor.
 */
static char *
explain_next(const IterjobSpec *spec, const char *sql)
{
	StringInfoData prepare;
	StringInfoData execute;
	char	   *plan;
	int			nest = NewGUCNestLevel();

	(void) set_config_option("plan_cache_mode", "force_generic_plan", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	initStringInfo(&prepare);
	initStringInfo(&execute);
	appendStringInfoString(&prepare, "PREPARE iterjob_preview_next(");
	appendStringInfoString(&execute, "EXECUTE iterjob_preview_next(");
	for (int i = 0; i < spec->nkeys; i++)
	{
		appendStringInfo(&prepare, "%s, ", iterjob_type_sql(spec->key_types[i]));
		appendStringInfoString(&execute, "NULL, ");
	}
	appendStringInfo(&prepare, "pg_catalog.int4) AS %s", sql);
	appendStringInfoString(&execute, "NULL)");
	if (SPI_execute(prepare.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not prepare the next keyset query");
	plan = explain(execute.data);
	if (SPI_execute("DEALLOCATE iterjob_preview_next", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not deallocate the next keyset query");
	AtEOXact_GUC(true, nest);
	return plan;
}

Datum
iterjob_preview(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IterjobSpec spec;
	IterjobRange *ranges;
	IterjobShards shards = {0};
	char	   *name;
	int64		rows;
	int32		sample_batches = 0;

	if (PG_NARGS() > ARG_SAMPLE_BATCHES && !PG_ARGISNULL(ARG_SAMPLE_BATCHES))
		sample_batches = PG_GETARG_INT32(ARG_SAMPLE_BATCHES);
	if (sample_batches < 0 || sample_batches > MAX_SAMPLE_BATCHES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample_batches must be between 0 and %d", MAX_SAMPLE_BATCHES),
				 errdetail("Got %d.", sample_batches)));

	iterjob_prepare_job(fcinfo, false, &spec, &name, &ranges, &shards);
	InitMaterializedSRF(fcinfo, 0);
	rows = spec.rows_total / spec.instances;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (spec.partition == ITERJOB_PARTITION_SHARD)
	{
		if (sample_batches > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("iterjob.preview() takes no sample_batches with partition 'shard'"),
					 errdetail("A shard's batches run on its node, in transactions of their own."),
					 errhint("Preview the job without sample_batches: it shows each shard's statements and their plans on its node.")));
		iterjob_preview_shards(&spec, &shards, rsinfo);
		SPI_finish();
		PG_RETURN_VOID();
	}
	for (int i = 0; i < spec.instances; i++)
	{
		const IterjobRange *range = ranges ? &ranges[i] : NULL;
		char	   *query = iterjob_keyset_query(&spec, i, range, false, false);
		char	   *next = iterjob_keyset_query(&spec, i, range, true, true);
		Datum		values[13];
		bool		nulls[13] = {false};
		/* the last batch comes back empty and ends the instance */
		int64		batches = (rows + spec.batch_size - 1) / spec.batch_size;

		CHECK_FOR_INTERRUPTS();
		values[0] = Int32GetDatum(i);
		values[1] = CStringGetTextDatum(query);
		values[2] = CStringGetTextDatum(spec.action);
		values[3] = CStringGetTextDatum(explain(query));
		values[4] = Int64GetDatum(rows);
		values[5] = Int64GetDatum(batches);
		values[6] = CStringGetTextDatum(next);
		values[7] = CStringGetTextDatum(explain_next(&spec, next));
		if (sample_batches > 0)
		{
			IterjobSample sample;
			double		estimate;

			iterjob_preview_sample(&spec, i, range, sample_batches, &sample);

			/*
			 * A sample that ran the instance to its end took all of it.
			 * Otherwise the first batch, which also warms the session's
			 * caches, counts once, and the instance's other batches at the
			 * mean time of the sample's others (the first batch's, when it
			 * is the whole sample).
			 */
			if (sample.ended)
				estimate = sample.ms;
			else if (sample.batches == 1)
				estimate = sample.ms * Max(batches, 1);
			else
				estimate = sample.first_ms +
					(sample.ms - sample.first_ms) / (sample.batches - 1) *
					(Max(batches, sample.batches) - 1);
			values[8] = Int32GetDatum(sample.batches);
			values[9] = Int64GetDatum(sample.rows);
			values[10] = interval_ms(sample.ms);
			values[11] = interval_ms(estimate);
			values[12] = sample.touched;
		}
		else
		{
			for (int c = 8; c < 13; c++)
				nulls[c] = true;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
