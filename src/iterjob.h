/*-------------------------------------------------------------------------
 *
 * iterjob.h
 *	  The ground every layer of iterjob stands on (src/): the configuration
 *	  parameters, whose rights code runs with (run_as.c), who may see and
 *	  steer a job (access.c), the schema version the library needs,
 *	  iterjob's kept plans, interval arguments and wait events.
 *
 *	  The layers above, each in a folder of its own with one header that
 *	  declares what it offers to the others (see README.md, "How the code
 *	  is laid out"), include this; of src/ only iterjob.c, the module's entry
 *	  point, includes one of theirs (the launcher's, to start it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_H
#define ITERJOB_H

#include "postgres.h"

#include "compat.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"

/* Upper bound of worker slots kept in shared memory (iterjob.max_workers). */
#define ITERJOB_MAX_WORKER_SLOTS	64
/* Instances of one job, at most. */
#define ITERJOB_MAX_INSTANCES	1024

/* gucs.c */
extern int	iterjob_max_workers;
extern int	iterjob_retention_s;
extern bool iterjob_log_batches;
extern int	iterjob_max_replication_lag_ms;
extern int	iterjob_max_replication_lag_kb;
extern bool iterjob_hold_for_autovacuum;
extern bool iterjob_enabled;
extern char *iterjob_health_check_expr;
extern int	iterjob_max_archive_backlog;
extern int	iterjob_autovacuum_hold_max_ms;
extern int	iterjob_test_replication_lag_ms;
extern bool iterjob_synchronous_commit;
extern bool iterjob_trail_instances;
extern int	iterjob_trail_max_wait_ms;
extern int	iterjob_worker_idle_time_ms;
extern int	iterjob_rescan_interval_ms;
extern int	iterjob_time_slice_ms;
extern int	iterjob_worker_nice;
extern int	iterjob_max_workers_per_node;
extern int	iterjob_max_foreground_wait;
extern int	iterjob_max_foreground_commit_wait;
extern int	iterjob_max_wal_per_second_kb;
extern int	iterjob_max_statement_timeout_ms;
extern void iterjob_define_gucs(void);
extern int32 iterjob_batch_timeout_ms(int32 job_timeout_ms);
extern void iterjob_borrow_gucs(void);
extern void iterjob_sync_gucs(void);
extern void iterjob_reload_config(void);

/* the extension version this library's SQL needs */
#define ITERJOB_SCHEMA_VERSION "0.12"

/* schema_version.c */
extern Oid	iterjob_lock_extension(void);
extern char *iterjob_installed_version(void);
extern void iterjob_require_schema_version(void);

/* kept_plans.c */
extern SPIPlanPtr iterjob_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs,
									 Oid *argtypes);
extern int	iterjob_execute_kept(SPIPlanPtr plan, Datum *args, const char *nulls,
								 bool read_only, long count);
extern Portal iterjob_open_kept(SPIPlanPtr plan, Datum *args, bool read_only);

/* wait_events.c */
typedef enum IterjobWaitEvent
{
	ITERJOB_WAIT_LAUNCHER,		/* the launcher between its rounds */
	ITERJOB_WAIT_TRAILING,		/* an instance behind the one before it */
	ITERJOB_WAIT_RETRY_BACKOFF, /* after a failed attempt */
	ITERJOB_WAIT_HELD,			/* the health gate holds the instance */
	ITERJOB_WAIT_THROTTLED,		/* batch_pause, max_rows_per_second */
	ITERJOB_WAIT_JOB_END,		/* iterjob.wait() */
	ITERJOB_WAIT_TASK_HANDOVER, /* a queued task's last worker lets go */
	ITERJOB_WAIT_RECOUNT,		/* iterjob.recount() waits for its worker */
	ITERJOB_WAIT_IDLE,			/* a worker waits for work before it exits */
	ITERJOB_WAIT_NODE,			/* a Citus node runs a batch */
	ITERJOB_WAIT_EVENTS
} IterjobWaitEvent;
extern uint32 iterjob_wait_event(IterjobWaitEvent event);

/* access.c */
extern bool iterjob_may_steer(Oid caller, Oid owner);
extern void iterjob_check_job_access(Oid caller, int64 job_id, Oid owner,
									 const char *what);
extern void iterjob_check_owner(Oid owner, int64 job_id);

/* intervals.c */
extern int64 iterjob_interval_ms(const Interval *interval, const char *name,
								 int64 max_ms);
extern int64 iterjob_wal_per_second_arg(text *arg, bool zero_is_off);

/* run_as.c */

/*
 * iterjob's own SQL runs with this search_path: pg_temp named, and last,
 * so that the temporary schema is never searched first for a relation or
 * a type.
 */
#define ITERJOB_INTERNAL_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct IterjobSavedUser
{
	Oid			userid;
	int			sec_context;
} IterjobSavedUser;
extern void iterjob_bind_to_owner(Oid owner, bool is_superuser);
extern void iterjob_enter_owner_restriction(void);
extern void iterjob_leave_owner_restriction(void);
extern int	iterjob_begin_owner_section(Oid owner, const char *search_path,
										int lock_timeout_ms, bool keyset_planner,
										IterjobSavedUser *saved);
extern void iterjob_end_owner_section(int nest, const IterjobSavedUser *saved);
extern int	iterjob_begin_owner_statement(bool keyset_planner);
extern void iterjob_end_owner_statement(int nest);
extern int	iterjob_begin_internal(IterjobSavedUser *saved);
extern void iterjob_end_internal(int nest, const IterjobSavedUser *saved);
extern char *iterjob_owner_search_path(const char *search_path);

#endif							/* ITERJOB_H */
