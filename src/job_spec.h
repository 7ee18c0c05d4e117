/*-------------------------------------------------------------------------
 *
 * job_spec.h
 *	  What a job iterates and does: validated at enqueue, read back by the
 *	  workers, and turned into the per-instance keyset query.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_JOB_SPEC_H
#define ITERJOB_JOB_SPEC_H

#include "postgres.h"

#define ITERJOB_MAX_INSTANCES	1024
#define ITERJOB_MAX_BATCH_SIZE	1000000

typedef struct IterjobSpec
{
	Oid			relid;			/* relation iterated */
	char	   *key_column;		/* key column's name, unquoted */
	Oid			key_type;		/* int2, int4 or int8 */
	char	   *filter;			/* boolean expression, or NULL */
	char	   *action;			/* one SQL statement taking $1 */
	int32		instances;
	int32		batch_size;
	int32		max_attempts;	/* failed attempts of a batch before the task fails */
	int32		statement_timeout_ms;	/* per batch; 0: none */
	int32		lock_timeout_ms;	/* per lock wait; 0: none */
} IterjobSpec;

/* validate.c */
extern void iterjob_check_relation(Oid relid);
extern void iterjob_resolve_key(Oid relid, const char *key, IterjobSpec *spec);
extern void iterjob_check_filter_syntax(const char *filter);
extern void iterjob_check_action_syntax(const char *action);
extern void iterjob_check_plans(const IterjobSpec *spec);

/* keyset_query.c */
extern char *iterjob_keyset_query(const IterjobSpec *spec, int32 instance,
								  bool after_cursor);
extern Oid	iterjob_key_array_type(Oid key_type);

#endif							/* ITERJOB_JOB_SPEC_H */
