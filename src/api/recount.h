/*-------------------------------------------------------------------------
 *
 * recount.h
 *	  iterjob.recount()'s dynamic shared memory, shared by the calling
 *	  backend (recount.c) and the worker that counts as the job's owner
 *	  (recount_worker.c): the job, where to count, the counts, and after
 *	  them a message queue that carries the worker's errors and notices.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_RECOUNT_H
#define ITERJOB_RECOUNT_H

#include "postgres.h"

/* the queue for the worker's error and notice messages */
#define ITERJOB_RECOUNT_QUEUE_SIZE	16384

typedef struct IterjobRecountShared
{
	Oid			dboid;			/* the database to count in */
	Oid			owner;			/* the job's owner, as the caller read it */
	int64		job_id;
	int32		instances;		/* as the caller read them */
	bool		done;			/* every instance counted (set last) */
	Size		queue_offset;	/* of the message queue, from the start */
	int64		counts[FLEXIBLE_ARRAY_MEMBER];
} IterjobRecountShared;

/* the segment's size for a job of instances instances, and the queue's offset */
static inline Size
iterjob_recount_queue_offset(int32 instances)
{
	return MAXALIGN(offsetof(IterjobRecountShared, counts) +
					sizeof(int64) * (Size) instances);
}

static inline Size
iterjob_recount_segment_size(int32 instances)
{
	return iterjob_recount_queue_offset(instances) + ITERJOB_RECOUNT_QUEUE_SIZE;
}

/* recount_worker.c */
extern PGDLLEXPORT void iterjob_recount_worker_main(Datum main_arg);

#endif							/* ITERJOB_RECOUNT_H */
