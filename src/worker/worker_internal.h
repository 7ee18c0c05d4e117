/*-------------------------------------------------------------------------
 *
 * worker_internal.h
 *	  What the files of the worker layer (src/worker/) share among
 *	  themselves: claiming, the batch loop, the bookkeeping of tasks and
 *	  jobs, pacing, and the guards of a job's batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_WORKER_INTERNAL_H
#define ITERJOB_WORKER_INTERNAL_H

#include "worker/worker.h"

/* commit_mode.c */
extern void iterjob_commit_batch_mode(void);
extern void iterjob_commit_durably(void);

/* task_claim.c: claiming, as iterjob */
extern IterjobTask *iterjob_claim_task(MemoryContext parent, Oid owner, bool *busy,
									   bool *others, bool *more);

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

/* owner_statements.c */
extern Datum iterjob_encode_key(IterjobTask *task, IterjobTaskPlans *plans,
								Datum *key);
extern void iterjob_run_instance_hook(IterjobTask *task);
extern void iterjob_free_plans(IterjobTaskPlans *plans);

/* throttle.c: pacing one instance */
extern void iterjob_throttle_init(IterjobThrottle *throttle, const IterjobSpec *spec);
extern void iterjob_throttle_set_pacing(IterjobThrottle *throttle,
										const IterjobPacing *pacing);
extern long iterjob_wal_pace_ms(const IterjobThrottle *throttle, int instances,
								uint64 wal_bytes, long batch_ms);
extern long iterjob_throttle_after_batch(IterjobThrottle *throttle, int instances,
										 uint64 rows, long batch_ms);
extern bool iterjob_throttle_after_timeout(IterjobThrottle *throttle, uint64 keys);
extern char *iterjob_health_check(IterjobThrottle *throttle, Oid relid,
								  char **summary);

/* schema_guard.c: what a job was enqueued against, checked in its batches */
extern void iterjob_check_task_keys(IterjobTask *task);
extern void iterjob_guard_relation(IterjobTask *task);
extern void iterjob_guard_key_types(IterjobTask *task, TupleDesc desc);
extern void iterjob_check_key_json(IterjobTask *task, Datum json);

/* shard_keys.c: a batch of a shard, on its node */
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

/* task_runner.c */
extern void iterjob_run_task(IterjobTask *task);
extern void iterjob_steer_signal_handler(SIGNAL_ARGS);

/* worker_xact.c */
extern bool iterjob_worker_adopt_extension(void);

#endif							/* ITERJOB_WORKER_INTERNAL_H */
