/*-------------------------------------------------------------------------
 *
 * task.h
 *	  A claimed task (one instance of a job) as a worker holds it, and the
 *	  modules that run it: the batch loop (task_runner.c), the owner's
 *	  statements (owner_statements.c) and iterjob's bookkeeping
 *	  (task_claim.c, task_record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_TASK_H
#define ITERJOB_TASK_H

#include "postgres.h"

#include "executor/spi.h"

#include "iterjob.h"
#include "job_spec.h"
#include "throttle.h"

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

/* task_claim.c: claiming, as iterjob */
extern IterjobTask *iterjob_claim_task(MemoryContext parent, Oid owner, bool *busy,
									   bool *others, bool *more);
extern bool iterjob_load_job(int64 job_id, IterjobSpec *spec, Oid *owner,
							 char **search_path);

/* fairness.c: which job a worker claims from, and which leaves its task */
typedef struct IterjobActiveJob
{
	int64		job_id;
	Oid			owner;
	TimestampTz turn_at;		/* a worker last left it for another job then;
								 * 0: none did lately */
	int			owner_workers;	/* workers on tasks of its owner here */
	int			job_workers;	/* workers on its tasks */
	bool		stands_for_owner;	/* the first of its owner's jobs with no
									 * worker and no turn: the later ones are
									 * read when it is passed */
} IterjobActiveJob;

typedef struct IterjobRanking
{
	IterjobActiveJob *jobs;		/* in rank order from next on */
	int			n;
	int			next;			/* the current job */
	bool		started;
	Oid			owner;			/* ranked for a worker bound to it */
	Datum		excluded;		/* int8[]: jobs with workers or turns */
} IterjobRanking;

typedef struct IterjobJobTasks
{
	int64		queued;			/* its first queued task, or 0 */
	int			norphans;		/* its tasks marked running that no worker holds */
	int64	   *orphans;
} IterjobJobTasks;

extern void iterjob_rank_begin(IterjobRanking *ranking, Oid owner);
extern IterjobActiveJob *iterjob_next_ranked_job(IterjobRanking *ranking,
												 bool whole_owner,
												 IterjobJobTasks *tasks);
extern void iterjob_rank_jobs(IterjobActiveJob *jobs, int n, Oid owner);
extern bool iterjob_job_tasks(int64 job_id, IterjobJobTasks *tasks);
extern void iterjob_note_turn(int64 job_id);
extern void iterjob_fairness_check(void);

/* task_record.c: a task's bookkeeping, as iterjob */
extern SPIPlanPtr iterjob_checkpoint_plan(const IterjobSpec *spec);
extern bool iterjob_record_checkpoint(IterjobTask *task, SPIPlanPtr plan,
									  uint64 rows, Datum cursor, const Datum *key,
									  bool last);
extern bool iterjob_record_hold(IterjobTask *task, const char *reason,
								const char *summary);
extern bool iterjob_record_next_shard(IterjobTask *task);
extern bool iterjob_record_shard_node(IterjobTask *task, int32 node, const char *seed);
extern bool iterjob_record_node_checkpoint(IterjobTask *task, int64 shard, uint64 rows,
										   Datum cursor, int64 shard_rows);
extern char *iterjob_check_failure_ratio(IterjobTask *task);
extern bool iterjob_record_failure(IterjobTask *task, ErrorData *edata,
								   int32 *attempts);
extern void iterjob_record_foreground_cancel(IterjobTask *task, int32 pid, int32 waited_ms);
extern void iterjob_record_foreground_pacing(IterjobTask *task, const char *reason);
extern void iterjob_record_death(IterjobTask *task);
extern long iterjob_retry_backoff_ms(int32 attempts);
extern bool iterjob_task_still_running(IterjobTask *task);
extern bool iterjob_finish_task(IterjobTask *task, const char *state,
								const char *error);
extern void iterjob_lock_job(int64 job_id, const char *error);
extern void iterjob_settle_job(int64 job_id);
extern void iterjob_fail_job(int64 job_id, const char *why);

/* health_check.c: the user's health checks, as the owner */
extern char *iterjob_user_health_check(IterjobTask *task);

/* owner_statements.c: the job's SQL, as its owner */
extern void iterjob_prepare_owner_plans(IterjobTask *task, IterjobTaskPlans *plans,
										bool keep);
extern uint64 iterjob_fetch_keys(IterjobTask *task, IterjobTaskPlans *plans,
								 const Datum *after, int32 limit);
extern void iterjob_batch_key_arrays(IterjobTask *task, IterjobTaskPlans *plans,
									 uint64 n, Datum *arrays, Datum *pending);
extern void iterjob_run_action(IterjobTask *task, IterjobTaskPlans *plans,
							   Datum *arrays);
extern Datum iterjob_encode_key(IterjobTask *task, IterjobTaskPlans *plans,
								Datum *key);
extern void iterjob_run_instance_hook(IterjobTask *task);
extern void iterjob_free_plans(IterjobTaskPlans *plans);

/* schema_guard.c: what a job was enqueued against, checked in its batches */
extern void iterjob_check_task_keys(IterjobTask *task);
extern void iterjob_guard_relation(IterjobTask *task);
extern void iterjob_guard_key_types(IterjobTask *task, TupleDesc desc);
extern void iterjob_check_key_json(IterjobTask *task, Datum json);

/* shard_keys.c */
typedef struct IterjobNodeBatch
{
	int64		rows;			/* keys the batch did */
	int64		shard_rows;		/* keys done in the shard so far, the batch's too */
	char	   *cursor;			/* the shard's cursor after it, as text */
	bool		done;			/* the shard has no key left */
	bool		stopped;		/* the task is no longer running */
} IterjobNodeBatch;
extern void iterjob_run_node_batch(IterjobTask *task, bool durable, IterjobNodeBatch *r,
								   bool *recorded);

/* instance_trail.c */
extern void iterjob_trail_before_batch(IterjobTask *task);
extern void iterjob_trail_advanced(IterjobTask *task, bool had_cursor,
								   Datum old_key);
extern void iterjob_trail_stop(void);

/* preview_sample.c: iterjob.preview()'s sample batches, as the caller */
typedef struct IterjobSample
{
	int32		batches;		/* batches run */
	int64		rows;			/* keys they fetched */
	double		ms;				/* time they took */
	double		first_ms;		/* the first batch's share of it */
	bool		ended;			/* the instance ran out of keys */
	Datum		touched;		/* jsonb: rows changed per table */
} IterjobSample;

extern void iterjob_preview_sample(const IterjobSpec *spec, int32 instance,
								   const IterjobRange *range, int32 limit,
								   IterjobSample *sample);

/* task_runner.c */
extern void iterjob_run_task(IterjobTask *task);
extern void iterjob_steer_signal_handler(SIGNAL_ARGS);

/* worker_xact.c: the worker's transactions */
extern bool iterjob_worker_adopt_extension(void);
extern void iterjob_worker_begin(bool with_spi);
extern void iterjob_worker_commit(bool with_spi);

#endif							/* ITERJOB_TASK_H */
