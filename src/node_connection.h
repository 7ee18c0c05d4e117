/*-------------------------------------------------------------------------
 *
 * node_connection.h
 *	  The connections a worker keeps to the nodes of a Citus cluster
 *	  (node_connection.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_NODE_CONNECTION_H
#define ITERJOB_NODE_CONNECTION_H

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

#endif							/* ITERJOB_NODE_CONNECTION_H */
