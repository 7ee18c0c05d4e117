/*-------------------------------------------------------------------------
 *
 * citus_internal.h
 *	  What the files of the Citus layer (src/citus/) share among
 *	  themselves: a shard's action as the node runs it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_CITUS_INTERNAL_H
#define ITERJOB_CITUS_INTERNAL_H

#include "citus/citus.h"

/* shard_action.c */
extern const char *iterjob_shard_action(const char *action, Oid array_type, int64 shard_id);
extern void iterjob_lock_shard_metadata(int64 shard_id);

#endif							/* ITERJOB_CITUS_INTERNAL_H */
