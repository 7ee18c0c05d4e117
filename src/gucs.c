/*-------------------------------------------------------------------------
 *
 * gucs.c
 *	  iterjob's configuration parameters.
 *
 *	  A process can hold a second copy of the library: the server preloads
 *	  iterjob from one file and a backend or worker loads '$libdir/iterjob'
 *	  from another (a package that moved or replaced it).  The GUCs are
 *	  the first copy's; the second defines none, and reads their values
 *	  into its own variables when it is loaded and after every reload of
 *	  the configuration (iterjob_reload_config), or they would stay at
 *	  their built-in defaults.  (Where the second copy's symbols are not
 *	  hidden, as on PostgreSQL 15, its code uses the first copy's variables
 *	  anyway.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "iterjob.h"

bool		iterjob_enabled = true;
char	   *iterjob_health_check_expr = NULL;
int			iterjob_max_workers = 4;
int			iterjob_retention_s = 7 * 24 * 3600;
bool		iterjob_log_batches = false;
int			iterjob_max_replication_lag_ms = -1;
int			iterjob_max_replication_lag_kb = -1;
bool		iterjob_hold_for_autovacuum = true;
int			iterjob_max_archive_backlog = 64;
int			iterjob_autovacuum_hold_max_ms = 600000;
int			iterjob_test_replication_lag_ms = -1;
bool		iterjob_synchronous_commit = false;
bool		iterjob_trail_instances = true;
int			iterjob_trail_max_wait_ms = 1000;
int			iterjob_worker_idle_time_ms = 1000;
int			iterjob_rescan_interval_ms = 10000;
int			iterjob_time_slice_ms = 10000;
int			iterjob_worker_nice = 0;
int			iterjob_max_workers_per_node = 4;
int			iterjob_max_statement_timeout_ms = 3600000;
int			iterjob_max_foreground_wait = 100;
int			iterjob_max_foreground_commit_wait = -1;
int			iterjob_max_wal_per_second_kb = 0;

/* this copy of the library reads the GUCs another copy defined */
static bool gucs_borrowed = false;

void
iterjob_define_gucs(void)
{
	DefineCustomBoolVariable("iterjob.enabled",
							 "Iteration workers run batches.",
							 "Off: every running job holds at its next batch boundary, still running, "
							 "until this is turned on again (a reload is enough).",
							 &iterjob_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("iterjob.health_check",
							   "An SQL expression every job's workers evaluate before a batch, as the job's owner.",
							   "A non-null text (the reason) or true holds the job at its batch boundary; "
							   "an error holds it too. Empty: no check.",
							   &iterjob_health_check_expr,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_workers",
							"Maximum number of iteration workers running at once, cluster-wide.",
							"Each worker is a background worker process and takes a slot of max_worker_processes.",
							&iterjob_max_workers,
							4, 0, ITERJOB_MAX_WORKER_SLOTS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.retention",
							"How long finished jobs and their history are kept.",
							"Workers purge older finished jobs; -1 keeps them forever.",
							&iterjob_retention_s,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("iterjob.log_batches",
							 "Logs every committed batch.",
							 NULL,
							 &iterjob_log_batches,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_replication_lag",
							"Workers hold at batch boundaries while a standby's replay lag exceeds this.",
							"The replay_lag of pg_stat_replication, the worst connected standby's. "
							"-1 turns the check off.",
							&iterjob_max_replication_lag_ms,
							-1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_replication_lag_bytes",
							"Workers hold at batch boundaries while a standby is more WAL than this behind.",
							"The distance from the current WAL position to the worst connected standby's replay_lsn, "
							"or to the restart_lsn of an inactive physical replication slot. -1 turns the check off.",
							&iterjob_max_replication_lag_kb,
							-1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("iterjob.hold_for_autovacuum",
							 "Workers hold at batch boundaries while autovacuum processes their relation.",
							 NULL,
							 &iterjob_hold_for_autovacuum,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_archive_backlog",
							"Workers hold at batch boundaries while more WAL files than this wait for archiving.",
							"The .ready files in pg_wal/archive_status, looked at only when archive_mode is on. "
							"-1 turns the check off.",
							&iterjob_max_archive_backlog,
							64, -1, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.autovacuum_hold_max",
							"Longest a worker holds for one autovacuum run on its relation.",
							"After it, the job goes on beside the vacuum. -1: as long as the vacuum runs. "
							"Anti-wraparound vacuums never hold a job.",
							&iterjob_autovacuum_hold_max_ms,
							600000, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("iterjob.synchronous_commit",
							 "Batches commit with the server's synchronous_commit instead of asynchronously.",
							 "A batch's work and its checkpoint commit together, so an asynchronous commit lost "
							 "in a crash only makes the batch run again. The commit that ends an instance is always synchronous.",
							 &iterjob_synchronous_commit,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("iterjob.trail_instances",
							 "Under the modulo partition with an integer key, each instance runs behind the one before it.",
							 "Instances then never modify the same pages at the same moment; "
							 "a stalled instance is not waited for.",
							 &iterjob_trail_instances,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.trail_max_wait",
							"Longest an instance waits behind the instance before it while that one does not advance.",
							"After it, the instance goes on without trailing until the one before it commits again.",
							&iterjob_trail_max_wait_ms,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.worker_idle_time",
							"How long a worker with nothing to do waits for work before it exits.",
							"An enqueue of its owner in its database wakes it when the enqueue commits, "
							"so that a stream of small jobs needs no process start per job. At most 4 s, "
							"below the 5 s DROP DATABASE waits for sessions to leave; 0: exit at once.",
							&iterjob_worker_idle_time_ms,
							1000, 0, 4000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.rescan_interval",
							"How often the launcher looks at one database with iterjob installed.",
							"A safety net for wake-ups that cannot reach the launcher (a prepared transaction "
							"committed after a restart, a request for another worker lost in a race): each "
							"interval, the database looked at longest ago gets a worker that checks for runnable jobs.",
							&iterjob_rescan_interval_ms,
							10000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.time_slice",
							"How long a worker keeps its task while another database waits for a worker.",
							"When all iterjob.max_workers are busy and a database with runnable jobs has fewer "
							"workers than another, a worker of the database with the most that has run this long "
							"leaves its task at its next batch boundary (the task resumes later from its checkpoint).",
							&iterjob_time_slice_ms,
							10000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.worker_nice",
							"The scheduling priority (nice value) iteration workers run at.",
							"0 leaves the priority workers inherit from the server; higher values let foreground sessions have the CPU first. "
							"Applied when a worker claims a task; unprivileged processes can only raise it, "
							"so lowering it takes effect in workers started afterwards.",
							&iterjob_worker_nice,
							0, 0, 19,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_foreground_wait",
							"Longest a session that is not a background process may wait for a lock a batch holds.",
							"Past it the batch is cancelled and runs again at half its size; -1 never cancels a batch for that.",
							&iterjob_max_foreground_wait,
							100, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_foreground_commit_wait",
							"Longest a session that is not a background process may wait for WAL before the iteration workers slow down.",
							"A session seen waiting this long to write or flush WAL, or for a synchronous standby, while the workers wrote most of the WAL, "
							"doubles the time workers pause per unit of batch time; it halves again after each second without such a wait. -1 never paces for that.",
							&iterjob_max_foreground_commit_wait,
							-1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_wal_per_second",
							"Most WAL the iteration workers write per second, all together.",
							"Each worker running a task takes an equal share, and waits after a batch that wrote more than its share allows; 0 sets no limit.",
							&iterjob_max_wal_per_second_kb,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_workers_per_node",
							"Most instances of a job over a distributed Citus table that work on one node's shards.",
							"Applied when such a job is enqueued with partition 'shard'; 0 sets no limit.",
							&iterjob_max_workers_per_node,
							4, 0, ITERJOB_MAX_INSTANCES,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.max_statement_timeout",
							"Longest any job's batch may run, whatever statement_timeout the job asked for.",
							"A job enqueued with statement_timeout 0 gets this limit; a larger one is cut to it. "
							"Workers apply a new value from their next batch. There is no value for no limit.",
							&iterjob_max_statement_timeout_ms,
							3600000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("iterjob.test_replication_lag",
							"For tests only: the replication lag the health gate sees, instead of pg_stat_replication's.",
							"-1 (the default) uses pg_stat_replication.",
							&iterjob_test_replication_lag_ms,
							-1, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("iterjob");
}

static void
read_int(const char *name, int *variable)
{
	const char *value = GetConfigOption(name, true, false);

	/* an integer in its base unit, as GetConfigOption() prints it */
	if (value != NULL)
		*variable = pg_strtoint32(value);
}

static void
read_bool(const char *name, bool *variable)
{
	const char *value = GetConfigOption(name, true, false);

	if (value != NULL)
		(void) parse_bool(value, variable);
}

/*
 * In a second copy of the library (see above): read the values of the GUCs
 * the first copy defined.  Nothing to do in the copy that defined them.
 */
void
iterjob_sync_gucs(void)
{
	if (!gucs_borrowed)
		return;
	read_int("iterjob.max_workers", &iterjob_max_workers);
	read_int("iterjob.retention", &iterjob_retention_s);
	read_bool("iterjob.log_batches", &iterjob_log_batches);
	read_int("iterjob.max_replication_lag", &iterjob_max_replication_lag_ms);
	read_bool("iterjob.hold_for_autovacuum", &iterjob_hold_for_autovacuum);
	read_int("iterjob.autovacuum_hold_max", &iterjob_autovacuum_hold_max_ms);
	read_int("iterjob.test_replication_lag", &iterjob_test_replication_lag_ms);
	read_bool("iterjob.synchronous_commit", &iterjob_synchronous_commit);
	read_bool("iterjob.trail_instances", &iterjob_trail_instances);
	read_int("iterjob.trail_max_wait", &iterjob_trail_max_wait_ms);
	read_int("iterjob.worker_idle_time", &iterjob_worker_idle_time_ms);
	read_int("iterjob.worker_nice", &iterjob_worker_nice);
	read_int("iterjob.max_workers_per_node", &iterjob_max_workers_per_node);
	read_int("iterjob.max_foreground_wait", &iterjob_max_foreground_wait);
	read_int("iterjob.max_foreground_commit_wait", &iterjob_max_foreground_commit_wait);
	read_int("iterjob.max_wal_per_second", &iterjob_max_wal_per_second_kb);
	read_int("iterjob.max_statement_timeout", &iterjob_max_statement_timeout_ms);
	read_int("iterjob.time_slice", &iterjob_time_slice_ms);
}

/*
 * The statement timeout of a batch of a job that asked for job_timeout_ms
 * (0: no limit of its own): that, at most iterjob.max_statement_timeout.
 */
int32
iterjob_batch_timeout_ms(int32 job_timeout_ms)
{
	if (job_timeout_ms <= 0 || job_timeout_ms > iterjob_max_statement_timeout_ms)
		return iterjob_max_statement_timeout_ms;
	return job_timeout_ms;
}

/* Called instead of iterjob_define_gucs() by a second copy of the library. */
void
iterjob_borrow_gucs(void)
{
	gucs_borrowed = true;
	iterjob_sync_gucs();
}

/* A background process's SIGHUP: reload the configuration files. */
void
iterjob_reload_config(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	iterjob_sync_gucs();
}
