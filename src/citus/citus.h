/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  The Citus layer (src/citus/): what iterjob needs to know about Citus
 *	  in a database that has it (citus.c), the connections a worker keeps
 *	  to the nodes (node_connection.c), and the node's side of a shard's
 *	  batch (iterjob.node_batch(), node_batch.c and shard_action.c).
 *
 *	  It stands on the ground and the keys layer; the worker and the SQL
 *	  functions use it.  Which shards an instance iterates and how its
 *	  batches are recorded is the worker's (worker/shard_keys.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_CITUS_H
#define ITERJOB_CITUS_H

#include "postgres.h"

#include "keys/keys.h"

/* citus.c */
extern bool iterjob_citus_installed(void);
extern char iterjob_citus_partmethod(Oid relid);
extern void iterjob_citus_coordinate(void);
extern bool iterjob_citus_can_coordinate(void);
extern void iterjob_citus_check_coordination(const IterjobSpec *spec, const char *partition);

/* node_connection.c: the connections a worker keeps to the nodes */
typedef struct IterjobNodeConn IterjobNodeConn;

/* a command's rows as text, row by row; NULL for SQL NULL */
typedef struct IterjobNodeResult
{
	int			ntuples;
	int			nfields;
	char	  **values;
} IterjobNodeResult;

extern IterjobNodeConn *iterjob_node_connection(const char *host, int port,
												int32 nodeid, const char *role);
extern void iterjob_node_execute(IterjobNodeConn *nc, const char *sql,
								 int nparams, const char *const *params,
								 IterjobNodeResult *result);
extern void iterjob_node_close_all(void);
extern bool iterjob_node_settings_differ(IterjobNodeConn *nc, const char *settings);
extern void iterjob_node_remember_settings(IterjobNodeConn *nc, const char *settings);

#endif							/* ITERJOB_CITUS_H */
