/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher layer (src/launcher/): who starts iteration workers and
 *	  the state they share.  The launcher's rounds, the shared memory
 *	  (shared_state.c), each worker's slot in it (worker_slot.c), warm
 *	  workers waiting for work (idle_workers.c), the wake-ups a committed
 *	  transaction sends (commit_wakeup.c), and the launcher's watches over
 *	  batches and foreground sessions.
 *
 *	  It stands on the ground (iterjob.h) only; the worker and the SQL
 *	  functions call into it.  This header declares what it offers them;
 *	  launcher_internal.h what its own files share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_LAUNCHER_H
#define ITERJOB_LAUNCHER_H

#include "postgres.h"

#include "iterjob.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/* Deaths of workers in the middle of a batch, kept until their task is reclaimed. */
#define ITERJOB_MAX_DEATHS			64
/* Databases marked pending between two rounds of the launcher. */
#define ITERJOB_MAX_DATABASES		128
/* Databases with iterjob installed that a worker can report at once. */
#define ITERJOB_MAX_INSTALLED		4096
/* Prepared transactions that wake the launcher when committed. */
#define ITERJOB_MAX_PREPARED		64
#define ITERJOB_GID_SIZE			200

/* One iteration worker process, as the launcher and the views see it. */
typedef struct IterjobWorkerSlot
{
	bool		in_use;			/* slot reserved by the launcher */
	bool		clean_exit;		/* worker left because it found no work */
	bool		exited;			/* the worker process has ended */
	bool		recheck;		/* its job's state changed: look again */
	bool		yield;			/* another job waits: leave the task */
	bool		yield_exit;		/* ... for another database: and exit */
	bool		report_installed;	/* report the databases with iterjob */
	bool		idle;			/* waits for work (iterjob.worker_idle_time) */
	bool		woken;			/* work came while it waited */
	bool		dismissed;		/* the launcher needs its slot: exit */
	uint32		generation;		/* of this use of the slot (launcher.c) */
	TimestampTz registered_at;	/* when the launcher registered the worker */
	Latch	   *latch;			/* the worker's latch, to wake it */
	pid_t		pid;			/* 0 until the worker has started */
	Oid			dboid;			/* database the worker serves */
	Oid			owner;			/* role it runs jobs of; 0 until its first claim */
	int64		held_task;		/* task it holds (under iterjob_shared->lock) */
	int64		batch_task;		/* task whose batch it runs now (same lock) */
	int64		batch_no;		/* and that batch's number in the task */
	int64		job_id;			/* task being worked on, or 0 */
	int32		instance;
	int64		batches;		/* batches committed in this task */
	TimestampTz since;			/* when the current task was claimed */
	/* the batch in flight, for the launcher's watch (batch_watchdog.c) */
	TimestampTz batch_started;	/* 0: none */
	int32		batch_timeout_ms;	/* its statement timeout */
	uint8		interrupt;		/* ITERJOB_INTERRUPT_*: why it was interrupted */
	TimestampTz interrupt_at;	/* and when */
	int32		foreground_pid; /* ITERJOB_INTERRUPT_FOREGROUND: the session */
	int32		foreground_wait_ms; /* and how long it had waited */
	uint8		terminated;		/* ITERJOB_INTERRUPT_*: why the launcher ended it */
	TimestampTz fairness_at;	/* when it last looked for jobs without a worker */
	char		phase[16];		/* what the worker is doing */
	/* where its instance is, for the next instance to trail (instance_trail.c) */
	bool		trail_active;	/* running batches of a trailing job */
	bool		trail_has_key;	/* trail_key holds a committed key */
	int64		trail_key;		/* the instance's last committed key */
	TimestampTz trail_at;		/* when it started or last advanced */
} IterjobWorkerSlot;

/*
 * Why a worker's batch was interrupted from outside, or why the launcher
 * terminated the worker.
 */
#define ITERJOB_INTERRUPT_NONE		0
#define ITERJOB_INTERRUPT_STEER		1	/* its job was paused or cancelled */
#define ITERJOB_INTERRUPT_OVERRAN	2	/* past its statement timeout */
#define ITERJOB_INTERRUPT_FOREGROUND 3	/* a foreground session waits for it */

/* A prepared transaction that made work runnable in its database. */
typedef struct IterjobPreparedWake
{
	Oid			dboid;			/* InvalidOid: entry unused */
	char		gid[ITERJOB_GID_SIZE];
} IterjobPreparedWake;

/* Turns of jobs: a worker left job_id of dboid for another job at a time. */
#define ITERJOB_MAX_TURNS			64
typedef struct IterjobTurn
{
	Oid			dboid;			/* InvalidOid: entry unused */
	int64		job_id;
	TimestampTz at;
} IterjobTurn;

/*
 * Jobs that a committed transaction made runnable (enqueued, resumed,
 * retried, let run by the job they waited for) in dboid, the lowest first
 * (0: not known), for fairness.c's hints.
 */
#define ITERJOB_MAX_ACTIVATIONS		64
typedef struct IterjobActivation
{
	Oid			dboid;
	int64		job_id;
} IterjobActivation;

/* A worker that died in the middle of a batch of task_id. */
typedef struct IterjobDeath
{
	Oid			dboid;			/* InvalidOid: entry unused */
	int64		task_id;
	int64		batch_no;		/* the batch it died in */
	bool		crash;			/* the server restarted after a crash */
	int			exit_code;		/* of a worker that exited by itself */
	int32		overran_ms;		/* > 0: terminated by the launcher, its batch
								 * still running this long past its
								 * statement timeout */
} IterjobDeath;

typedef struct IterjobShared
{
	LWLock	   *lock;			/* protects the slots' held_task and
								 * batch_task, and deaths */
	IterjobDeath deaths[ITERJOB_MAX_DEATHS];
	int			next_death;		/* the entry to use next when all are taken */
	LWLock	   *state_lock;		/* protects everything below but the CV */
	Latch	   *launcher_latch; /* NULL while no launcher runs */
	bool		rescan_all;		/* every database must be looked at */
	bool		slot_wanted;	/* the launcher waits for a worker slot */
	Oid			slot_wanted_for;	/* for this database's work */
	int			npending;		/* databases marked pending, for the launcher */
	Oid			pending[ITERJOB_MAX_DATABASES];
	IterjobPreparedWake prepared[ITERJOB_MAX_PREPARED];
	/* the databases with iterjob installed, as a worker last read them */
	uint32		installed_generation;	/* counts reports */
	int			ninstalled;		/* -1: more than ITERJOB_MAX_INSTALLED */
	Oid			installed[ITERJOB_MAX_INSTALLED];
	IterjobWorkerSlot workers[ITERJOB_MAX_WORKER_SLOTS];
	IterjobTurn turns[ITERJOB_MAX_TURNS];	/* the latest, for fairness.c */
	int			next_turn;		/* the entry to use next when all are taken */
	uint64		nactivations;	/* counts activations, the latest in: */
	IterjobActivation activations[ITERJOB_MAX_ACTIVATIONS];
	ConditionVariable job_state_cv; /* broadcast when a job may have ended */
	/* pacing for foreground sessions' commits (foreground_pacing.c) */
	pg_atomic_uint64 worker_wal_bytes;	/* WAL written by committed batches */
	pg_atomic_uint32 foreground_pace;	/* pause per batch time, in quarters */
	int32		pace_pid;		/* the session whose wait set it last */
	int32		pace_wait_ms;	/* how long it had waited */
	uint32		pace_wait_event;	/* for what */
} IterjobShared;

/* shared_state.c */
extern IterjobShared *iterjob_shared;
extern void iterjob_shmem_request(void);
extern void iterjob_shmem_startup(void);
extern void iterjob_mark_database_pending(Oid dboid);
extern void iterjob_report_installed(const Oid *dboids, int n);
extern void iterjob_wake_launcher(void);

/* launcher.c */
extern void iterjob_register_launcher(void);
extern PGDLLEXPORT void iterjob_launcher_main(Datum main_arg);

/* worker_slot.c: a worker's own slot */
extern IterjobWorkerSlot *iterjob_my_slot;
extern void iterjob_slot_attach(int slotno, uint32 generation);
extern void iterjob_set_phase(const char *phase);
extern void iterjob_slot_set_task(int64 job_id, int32 instance, int64 batches);
extern void iterjob_slot_set_batches(int64 batches);
extern void iterjob_slot_set_owner(Oid owner);
extern bool iterjob_slot_take_recheck(void);
extern bool iterjob_slot_recheck_pending(void);
extern bool iterjob_slot_yield_requested(void);
extern bool iterjob_slot_take_yield(void);
extern bool iterjob_slot_interrupted(void);
extern bool iterjob_slot_take_interrupt(void);
extern bool iterjob_slot_take_foreground(int32 *pid, int32 *waited_ms);
extern int	iterjob_busy_workers(void);
extern bool iterjob_hold_task(int64 task_id);
extern void iterjob_release_task(void);
extern bool iterjob_task_is_held(Oid dboid, int64 task_id);
extern void iterjob_slot_begin_batch(int64 task_id, int64 batch_no, int32 timeout_ms);
extern void iterjob_slot_end_batch(void);
extern bool iterjob_take_death(int64 task_id, IterjobDeath *death);
pg_noreturn extern void iterjob_worker_exit_clean(void);

/* idle_workers.c */
extern bool iterjob_slot_wait_for_work(long idle_ms);
extern bool iterjob_slot_between_tasks(bool between);
extern bool iterjob_wake_idle_worker(Oid dboid, Oid owner);

/* worker_yield.c */
extern long iterjob_request_yield(Oid dboid, Oid for_owner, bool exit,
								  TimestampTz now);

/* foreground_pacing.c: the workers' side */
extern void iterjob_count_batch_wal(uint64 wal_bytes);
extern uint32 iterjob_foreground_pace(void);
extern char *iterjob_foreground_pace_reason(void);

/* commit_wakeup.c */
extern void iterjob_register_commit_wakeup(void);
extern void iterjob_wake_at_commit(Oid owner, int64 job_id);
extern void iterjob_wake_at_end(void);
extern void iterjob_notify_waiters_at_commit(void);
extern void iterjob_signal_workers_at_commit(int64 job_id);
extern void iterjob_interrupt_workers_at_commit(int64 job_id);

#endif							/* ITERJOB_LAUNCHER_H */
