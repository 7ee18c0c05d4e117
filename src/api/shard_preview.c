/*-------------------------------------------------------------------------
 *
 * shard_preview.c
 *	  iterjob.preview() of a job with partition 'shard': one row per shard,
 *	  in the order its instance would iterate them, with the keyset
 *	  queries a batch runs on the shard's node and their plans there (the
 *	  second batch's after the first batch's last key), and the rows the
 *	  node estimates in the shard.  The nodes are reached as the caller,
 *	  as a job's worker reaches them as its owner; the connections close
 *	  when the preview ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus.h"
#include "worker/worker.h"
#include "api/api.h"

/* the plan the node makes of sql with these parameters, one line a row */
static char *
node_plan(IterjobNodeConn *conn, const char *sql, int nparams, const char *const *params)
{
	IterjobNodeResult result;
	StringInfoData plan;

	iterjob_node_execute(conn, psprintf("EXPLAIN %s", sql), nparams, params, &result);
	initStringInfo(&plan);
	for (int i = 0; i < result.ntuples; i++)
		appendStringInfo(&plan, "%s%s", i > 0 ? "\n" : "",
						 result.values[i * result.nfields] ? result.values[i * result.nfields] : "");
	return plan.data;
}

/* One shard's row of the preview. */
static void
preview_shard(const IterjobSpec *spec, int64 shardid, int32 instance,
			  ReturnSetInfo *rsinfo)
{
	char	   *host;
	int32		port;
	char	   *name;
	int32		nodeid;
	char		batch_size[16];
	const char *params[2];
	char	   *query;
	char	   *next;
	IterjobNodeConn *conn;
	IterjobNodeResult result;
	int64		rows = 0;
	Datum		values[13];
	bool		nulls[13] = {false};

	iterjob_shard_placement(spec, shardid, &host, &port, &name, &nodeid);
	query = iterjob_shard_keyset_query(spec, name, false);
	next = iterjob_shard_keyset_query(spec, name, true);
	conn = iterjob_node_connection(host, port, nodeid, GetUserNameFromId(GetUserId(), false));

	/* Citus hides shards from queries of pg_class, but for its own sessions */
	iterjob_node_execute(conn, "SELECT pg_catalog.set_config('citus.override_table_visibility',"
						 " 'off', false)", 0, NULL, &result);
	params[0] = name;
	iterjob_node_execute(conn, "SELECT GREATEST(c.reltuples, 0)::pg_catalog.int8"
						 " FROM pg_catalog.pg_class c"
						 " WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
						 1, params, &result);
	if (result.ntuples == 1 && result.values[0] != NULL)
		rows = pg_strtoint64(result.values[0]);

	snprintf(batch_size, sizeof(batch_size), "%d", spec->batch_size);
	params[0] = batch_size;
	values[0] = Int32GetDatum(instance);
	values[1] = CStringGetTextDatum(query);
	values[2] = CStringGetTextDatum(spec->action);
	values[3] = CStringGetTextDatum(node_plan(conn, query, 1, params));
	values[4] = Int64GetDatum(rows);
	/* the last batch comes back short, or empty, and ends the shard */
	values[5] = Int64GetDatum((rows + spec->batch_size - 1) / spec->batch_size);
	values[6] = CStringGetTextDatum(next);

	/* the second batch's plan, after the first batch's last key */
	iterjob_node_execute(conn, query, 1, params, &result);
	if (result.ntuples > 0 && result.values[(result.ntuples - 1) * result.nfields] != NULL)
	{
		params[1] = result.values[(result.ntuples - 1) * result.nfields];
		values[7] = CStringGetTextDatum(node_plan(conn, next, 2, params));
	}
	else
		nulls[7] = true;
	for (int c = 8; c < 13; c++)
		nulls[c] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * The preview's rows for spec, whose shards are dealt to its instances as
 * shards says, instance by instance.  SPI connected.
 */
void
iterjob_preview_shards(const IterjobSpec *spec, const IterjobShards *shards,
					   ReturnSetInfo *rsinfo)
{
	PG_TRY();
	{
		for (int instance = 0; instance < spec->instances; instance++)
			for (int i = 0; i < shards->n; i++)
			{
				CHECK_FOR_INTERRUPTS();
				if (shards->instance[i] == instance)
					preview_shard(spec, shards->ids[i], instance, rsinfo);
			}
	}
	PG_CATCH();
	{
		iterjob_node_close_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	iterjob_node_close_all();
}
