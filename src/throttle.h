/*-------------------------------------------------------------------------
 *
 * throttle.h
 *	  Pacing one instance so a backfill does not hurt production: pauses
 *	  between batches, job-wide rows-per-second and WAL-per-second caps
 *	  (and the cluster's WAL limit), batch sizes adapted to a target batch
 *	  time, and the health gate (replication lag, WAL archiving falling
 *	  behind, autovacuum of the relation, the iterjob.enabled switch).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_THROTTLE_H
#define ITERJOB_THROTTLE_H

#include "postgres.h"

#include "job_spec.h"

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

#endif							/* ITERJOB_THROTTLE_H */
