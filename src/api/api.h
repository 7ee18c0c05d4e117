/*-------------------------------------------------------------------------
 *
 * api.h
 *	  The SQL functions users call (src/api/): enqueue, steering
 *	  (pause, resume, cancel, retry, set), monitoring and purge, preview
 *	  and its sample batches, wait, and recount with its worker.
 *
 *	  The top layer: it calls into the worker, launcher, Citus and keys
 *	  layers and the ground, and nothing calls into it.  This header
 *	  declares what its own files share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_API_H
#define ITERJOB_API_H

#include "postgres.h"

#include "keys/keys.h"

/* enqueue.c */
struct FunctionCallInfoBaseData;
extern void iterjob_prepare_job(struct FunctionCallInfoBaseData *fcinfo,
								bool for_enqueue, IterjobSpec *spec, char **name,
								IterjobRange **ranges, IterjobShards *shards);
extern void iterjob_check_max_failure_ratio(double ratio);
extern void iterjob_check_failure_window(int32 window);

/* shard_preview.c */
struct ReturnSetInfo;
extern void iterjob_preview_shards(const IterjobSpec *spec, const IterjobShards *shards,
								   struct ReturnSetInfo *rsinfo);

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

#endif							/* ITERJOB_API_H */
