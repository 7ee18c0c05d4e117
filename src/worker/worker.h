/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The worker layer (src/worker/): an iteration worker and its batch
 *	  loop.  A worker claims a task (task_claim.c, fairness.c), runs it
 *	  batch by batch (task_runner.c): the owner's SQL in one owner section
 *	  per batch (owner_statements.c), iterjob's checkpoint and bookkeeping
 *	  as iterjob (task_record.c), paced (throttle.c, health_check.c,
 *	  instance_trail.c) and watched for changes under the job
 *	  (schema_guard.c); a job's end lets the jobs waiting for it run
 *	  (dependencies.c); shard_keys.c runs a Citus job's shards.
 *
 *	  It stands on the launcher layer (its slot, the shared state), the
 *	  Citus and keys layers and the ground.  This header declares what it
 *	  offers the SQL functions (src/api/): a task and its owner
 *	  statements, for iterjob.preview()'s sample batches, the worker's
 *	  transactions, and the checks enqueue shares with the workers.
 *	  worker_internal.h declares what its own files share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_WORKER_H
#define ITERJOB_WORKER_H

#include "postgres.h"

#include "executor/spi.h"
#include "iterjob.h"
#include "keys/keys.h"
#include "launcher/launcher.h"

/* the job's pacing settings, as iterjob.set() may change them */
typedef struct IterjobPacing
{
	int32		batch_size;
	int32		batch_pause_ms;
	int32		max_rows_per_second;
	int32		target_batch_ms;
	int64		max_wal_per_second; /* bytes; 0: none */
} IterjobPacing;

typedef struct IterjobThrottle
{
	IterjobPacing pacing;
	int32		batch_size;		/* this instance's current batch size */
	bool		held;			/* the last health check said hold */
	TimestampTz vacuum_hold_since;	/* held for autovacuum since; 0: not */
	TimestampTz next_user_check;	/* of the user's health checks */
	bool		user_held;		/* the last of those said hold */
} IterjobThrottle;

typedef struct IterjobTask
{
	MemoryContext cxt;			/* lives as long as the worker holds the task */
	int64		task_id;
	int64		job_id;
	int32		instance;
	IterjobSpec spec;
	IterjobRange range;			/* under range partitioning */
	Oid			owner;			/* role the job runs as */
	bool		owner_is_superuser;
	char	   *search_path;	/* owner's search_path captured at enqueue */
	IterjobKeyValue stored_cursor;	/* the cursor as claimed, until decoded */
	bool		has_cursor;		/* false until the first batch commits */
	Datum		cursor[ITERJOB_MAX_KEYS];	/* last committed key */
	MemoryContext cursor_cxt;	/* holds cursor[] */
	int64		batches_done;
	uint64		last_batch_rows;	/* keys in the last committed batch */
	uint64		batch_keys;		/* keys fetched by the batch running */
	IterjobThrottle throttle;
	bool		trails;			/* a single ascending integer key (instance_trail.c) */
	int64		trail_span;		/* keys its last batch spanned; 0: unknown */
	/* its worker died in a batch (worker_slot.c): counted at the claim */
	bool		died;
	IterjobDeath death;
	long		retry_ms;		/* backoff before its first batch */
	bool		failed;			/* that death was its last attempt */
	char	   *death_message;	/* a death that is not a plain one: why */
	int64		retry_batch;	/* the batch that failed last, until it commits */
	/* pgWalUsage.wal_bytes as counted in the task's wal_bytes (committed) */
	uint64		wal_counted;
	uint64		wal_checkpointed;	/* ... by the batch in flight */
	bool		yielded;		/* left running for a worker of another database */
	bool		foreground_paced;	/* paced for the foreground since its last
									 * batch (foreground_pacing.c) */
	/*
	 * What its job was enqueued against changed, or a stored key is unusable
	 * (schema_guard.c): the batch's error fails the whole job at once.
	 */
	bool		broken;
	char	   *source_name;	/* the relation as its keyset query names it */
	/* partition => 'shard': the shards it iterates, one after another */
	int			nshards;
	int64	   *shards;
	int			shard_index;	/* the one it is on */
	int32		shard_node;		/* the node that keeps its cursor (0: none yet) */
	char	   *shard_seed;		/* where its cursor starts on that node */
	int64		job_stamp;		/* the job's enqueue time, in microseconds */
	/*
	 * The database has Citus: plans are custom (Citus plans only constants),
	 * batches commit durably and through two-phase commit (citus.c).
	 */
	bool		on_citus;
	/* ... and its batches change a hash-distributed table through Citus */
	bool		citus_coordinates;
} IterjobTask;

/* The statements a task runs, prepared once per task (in its first batch). */
typedef struct IterjobTaskPlans
{
	bool		ready;
	SPIPlanPtr	first;			/* keyset query without a lower bound */
	SPIPlanPtr	next;			/* keyset query after $1.. */
	SPIPlanPtr	action;
	SPIPlanPtr	encode;			/* a key's jsonb form, computed as the owner */
	SPIPlanPtr	checkpoint;		/* iterjob's, shared with other tasks */
	int16		keylen[ITERJOB_MAX_KEYS];
	bool		keybyval[ITERJOB_MAX_KEYS];
	char		keyalign[ITERJOB_MAX_KEYS];
	MemoryContext pending_cxt;	/* the batch's last key, until it commits */
} IterjobTaskPlans;

/* worker.c */
extern PGDLLEXPORT void iterjob_worker_main(Datum main_arg);

/* task_claim.c */
extern bool iterjob_load_job(int64 job_id, IterjobSpec *spec, Oid *owner,
							 char **search_path);

/* owner_statements.c: the job's SQL, as its owner */
extern void iterjob_prepare_owner_plans(IterjobTask *task, IterjobTaskPlans *plans,
										bool keep);
extern int	iterjob_enter_owner_statements(IterjobTask *task, IterjobSavedUser *saved);
extern void iterjob_leave_owner_statements(int nest, const IterjobSavedUser *saved);
extern uint64 iterjob_fetch_keys(IterjobTask *task, IterjobTaskPlans *plans,
								 const Datum *after, int32 limit);
extern void iterjob_batch_key_arrays(IterjobTask *task, IterjobTaskPlans *plans,
									 uint64 n, Datum *arrays, Datum *pending);
extern void iterjob_run_action(IterjobTask *task, IterjobTaskPlans *plans,
							   Datum *arrays);

/* worker_xact.c: the worker's transactions */
extern void iterjob_worker_begin(bool with_spi);
extern void iterjob_worker_commit(bool with_spi);

/* dependencies.c */
extern Datum iterjob_check_after(struct ArrayType *after);
extern void iterjob_end_dependents(int64 job_id, const char *state);
extern void iterjob_check_retry_after(int64 job_id);

/* health_check.c */
extern void iterjob_check_health_check(const char *expr);

/* shard_keys.c */
extern void iterjob_assign_shards(IterjobSpec *spec, IterjobShards *shards);
extern void iterjob_shard_placement(const IterjobSpec *spec, int64 shardid, char **host,
									int32 *port, char **name, int32 *nodeid);

#endif							/* ITERJOB_WORKER_H */
