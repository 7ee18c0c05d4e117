/*-------------------------------------------------------------------------
 *
 * task.h
 *	  A claimed task (one instance of a job) as a worker holds it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_TASK_H
#define ITERJOB_TASK_H

#include "postgres.h"

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
	Oid			owner;			/* role the filter, action and hooks run as */
	char	   *search_path;	/* owner's search_path captured at enqueue */
	bool		has_cursor;		/* false until the first batch commits */
	Datum		cursor[ITERJOB_MAX_KEYS];	/* last committed key */
	MemoryContext cursor_cxt;	/* holds cursor[] */
	int64		batches_done;
	uint64		last_batch_rows;	/* keys in the last committed batch */
	IterjobThrottle throttle;
	int64		trail_span;		/* keys its last batch spanned; 0: unknown */
} IterjobTask;

/* task_claim.c */
extern IterjobTask *iterjob_claim_task(MemoryContext parent, bool *busy);
extern void iterjob_finish_task(IterjobTask *task, const char *state,
								const char *error);
extern void iterjob_settle_job(int64 job_id);
extern bool iterjob_load_job(int64 job_id, IterjobSpec *spec, Oid *owner,
							 char **search_path);

/* instance_trail.c */
extern void iterjob_trail_before_batch(IterjobTask *task);
extern void iterjob_trail_advanced(IterjobTask *task, bool had_cursor,
								   Datum old_key);
extern void iterjob_trail_stop(void);

/* task_runner.c */
extern void iterjob_run_task(IterjobTask *task);

#endif							/* ITERJOB_TASK_H */
