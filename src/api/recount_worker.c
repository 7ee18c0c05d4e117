/*-------------------------------------------------------------------------
 *
 * recount_worker.c
 *	  The process iterjob.recount() counts in: a dynamic background worker
 *	  started by the calling backend (recount.c) and bound to the job's
 *	  owner for its whole life, as iteration workers are (run_as.c).  The
 *	  owner's query, filter and key types run there, never in the caller's
 *	  session: no temporary object, setting, prepared statement or session
 *	  user of the caller's reaches them.
 *
 *	  It connects as the bootstrap superuser, reads the job (iterjob's
 *	  bookkeeping, in an internal section), becomes the owner between two
 *	  transactions, and counts each instance's keys in a transaction of its
 *	  own, in an owner section (the owner's search_path captured at
 *	  enqueue, pg_temp last).  The counts go to the caller's dynamic shared
 *	  memory (recount.h); an error or notice goes to the caller through the
 *	  message queue there, as a parallel worker's does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "worker/worker.h"
#include "api/api.h"
#include "api/recount.h"

/*
 * Read the job into spec (in an internal section, SPI connected), and
 * check that it is still the one the caller checked its access to.
 */
static void
load_job(const IterjobRecountShared *shared, IterjobSpec *spec, char **search_path)
{
	Oid			owner;

	/* DROP EXTENSION waits for this transaction */
	if (!OidIsValid(iterjob_lock_extension()) ||
		!iterjob_load_job(shared->job_id, spec, &owner, search_path))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("iterjob job " INT64_FORMAT " does not exist", shared->job_id)));
	if (owner != shared->owner || spec->instances != shared->instances)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("iterjob job " INT64_FORMAT " changed while it was recounted",
						shared->job_id)));
}

/* The instance's key range, under range partitioning (internal section). */
static void
read_range(const IterjobSpec *spec, int64 job_id, int32 instance, IterjobRange *range)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2] = {Int64GetDatum(job_id), Int32GetDatum(instance)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT range_start, iterjob.key_texts(range_start),"
							  "       range_end, iterjob.key_texts(range_end), range_empty"
							  "  FROM iterjob.task WHERE job_id OPERATOR(pg_catalog.=) $1"
							  "   AND instance OPERATOR(pg_catalog.=) $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read iterjob task");
	iterjob_key_value_from_row(spec, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							   1, &range->lower, CurrentMemoryContext);
	iterjob_key_value_from_row(spec, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							   3, &range->upper, CurrentMemoryContext);
	range->empty = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 5, &isnull));
}

/* partition => 'shard': count_sql restricted to the instance's shards */
static char *
restrict_to_shards(const IterjobSpec *spec, int64 job_id, int32 instance,
				   const char *count_sql)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2] = {Int64GetDatum(job_id), Int32GetDatum(instance)};
	char	   *shards;

	if (SPI_execute_with_args("SELECT shards::pg_catalog.text FROM iterjob.task"
							  " WHERE job_id OPERATOR(pg_catalog.=) $1"
							  "   AND instance OPERATOR(pg_catalog.=) $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read iterjob task");
	shards = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return psprintf("%s AND pg_catalog.get_shard_id_for_distribution_column(%s, %s)"
					" OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.int8[])",
					count_sql,
					quote_literal_cstr(iterjob_source_sql(spec)),
					quote_identifier(spec->key_names[0]),
					quote_literal_cstr(shards ? shards : "{}"));
}

/*
 * Count the keys one instance iterates, cursor aside: the query is built
 * as iterjob, run as the owner.  In a transaction, SPI connected.
 */
static int64
count_instance(const IterjobRecountShared *shared, int32 instance)
{
	IterjobSpec spec;
	IterjobRange range;
	IterjobSavedUser saved;
	char	   *search_path;
	char	   *count_sql;
	int64		count;
	bool		isnull;
	int			nest;

	memset(&range, 0, sizeof(range));
	nest = iterjob_begin_internal(&saved);
	load_job(shared, &spec, &search_path);
	if (spec.partition == ITERJOB_PARTITION_RANGE)
		read_range(&spec, shared->job_id, instance, &range);
	count_sql = iterjob_count_query(&spec, instance, &range);
	if (spec.partition == ITERJOB_PARTITION_SHARD)
		count_sql = restrict_to_shards(&spec, shared->job_id, instance, count_sql);
	iterjob_end_internal(nest, &saved);

	nest = iterjob_begin_owner_section(shared->owner, search_path, 0, false, &saved);
	if (SPI_execute(count_sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the rows of instance %d", instance);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull));
	iterjob_end_owner_section(nest, &saved);
	return isnull ? 0 : count;
}

void
iterjob_recount_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	IterjobRecountShared *shared;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	bool		owner_is_superuser;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* the caller's segment, and its queue for this process's messages */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "iterjob recount");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map the dynamic shared memory segment of iterjob.recount()")));
	shared = dsm_segment_address(seg);
	mq = (shm_mq *) ((char *) shared + shared->queue_offset);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, mqh);

	BackgroundWorkerInitializeConnectionByOid(shared->dboid, InvalidOid, 0);
	pgstat_report_appname("iterjob recount");
	SetConfigOption("search_path", ITERJOB_INTERNAL_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION);

	/* the owner, read as iterjob before this process becomes it */
	iterjob_worker_begin(true);
	{
		IterjobSpec spec;
		IterjobSavedUser saved;
		char	   *search_path;
		int			nest = iterjob_begin_internal(&saved);

		load_job(shared, &spec, &search_path);
		iterjob_check_owner(shared->owner, shared->job_id);
		owner_is_superuser = superuser_arg(shared->owner);
		iterjob_end_internal(nest, &saved);
	}
	iterjob_worker_commit(true);
	iterjob_bind_to_owner(shared->owner, owner_is_superuser);

	for (int32 i = 0; i < shared->instances; i++)
	{
		char		activity[96];

		CHECK_FOR_INTERRUPTS();
		snprintf(activity, sizeof(activity),
				 "iterjob recount of job " INT64_FORMAT ": instance %d",
				 shared->job_id, i);
		pgstat_report_activity(STATE_RUNNING, activity);
		iterjob_worker_begin(true);
		shared->counts[i] = count_instance(shared, i);
		iterjob_worker_commit(true);
	}
	pgstat_report_activity(STATE_IDLE, NULL);

	/* the counts before the flag that says they are all there */
	pg_write_barrier();
	shared->done = true;
}
