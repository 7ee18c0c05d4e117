/*-------------------------------------------------------------------------
 *
 * task_runner.c
 *	  Runs one claimed task batch by batch: the batch loop.
 *
 *	  Each batch is one transaction: the keyset query fetches the next
 *	  batch_size keys of the instance's partition after its cursor, the
 *	  action runs on them, and the cursor and counters are checkpointed;
 *	  then the transaction commits.  The work and its checkpoint therefore
 *	  commit together or not at all.  Between batches the loop paces the
 *	  task (throttling, retry backoff, the health gate, trailing) and
 *	  leaves it when it is paused, cancelled or ends, or when another job
 *	  should have its worker (fairness.c).  A pause or cancel interrupts
 *	  the batch in flight: it rolls back, and counts as no failed attempt.
 *
 *	  The owner's SQL is in owner_statements.c, iterjob's bookkeeping in
 *	  task_record.c; this file only sequences them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus.h"
#include "launcher/launcher.h"
#include "worker/worker_internal.h"

typedef enum BatchOutcome
{
	BATCH_MORE,					/* a batch committed; go on */
	BATCH_LAST,					/* the task ended and that was committed */
	BATCH_STOPPED,				/* paused, cancelled or gone: leave the task */
	BATCH_RETRY,				/* the batch failed and will be retried */
	BATCH_HELD,					/* the health gate said hold: nothing ran */
	BATCH_LEFT,					/* paused or cancelled while held: leave */
	BATCH_NEXT_SHARD,			/* on to the task's next shard; go on */
	BATCH_NEXT_SHARD_STOPPED,	/* the same, then leave the task */
	BATCH_NODE_RECORDED			/* which node keeps the shard's cursor; go on */
} BatchOutcome;

/* how long a held instance waits before looking at the health gate again */
#define HOLD_RECHECK_MS 1000
/* a worker paced for the foreground reads the pace again this often */
#define PACE_RECHECK_MS 100

/* a batch of one key that blocked a foreground session waits this, at least */
#define MIN_FOREGROUND_RETRY_MS 100

/*
 * A batch cancelled for a foreground session runs again after this: the
 * session, woken by the rollback, takes the rows it waited for first (a
 * batch run again at once would lock them again before it could).
 */
#define FOREGROUND_YIELD_MS 20

/* a SIGUSR2 came: a pause or cancel of our job (see below) */
static volatile sig_atomic_t steer_signalled = false;

/*
 * pg_cancel_backend() and a statement timeout cancel a batch, never the
 * worker.  Outside a batch's statements a worker holds cancel interrupts
 * (from its start, worker.c): a cancel that arrives while it claims, sleeps
 * between batches or records a failure stays pending (an ERROR there would
 * end the process), and is dropped when the next batch begins, as an idle
 * backend drops one.  The count is set, not stepped: an error inside the
 * batch has reset it already (errfinish).
 *
 * A pause or cancel of the job that committed after the worker last looked
 * at the job's state, and whose signal was dropped that way, still cancels
 * the batch as it begins: the worker's slot says so (commit_wakeup.c).
 */
static void
accept_cancel(bool accept)
{
	QueryCancelHoldoffCount = accept ? 0 : 1;
	QueryCancelPending = false;
	steer_signalled = false;
	if (accept && iterjob_slot_interrupted())
	{
		steer_signalled = true;
		QueryCancelPending = true;
		InterruptPending = true;
	}
}

/*
 * SIGUSR2: a pause or cancel of the worker's job committed
 * (commit_wakeup.c).  It cancels the batch in flight like a query cancel,
 * and says that it was this, not a pg_cancel_backend() (SIGINT) nor a
 * statement timeout.  A signal that comes late, when the worker has moved
 * on to another batch, cancels that one: it is run again, and nothing
 * failed.
 */
void
iterjob_steer_signal_handler(SIGNAL_ARGS)
{
	int			save_errno = errno;

	steer_signalled = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * The batch's deferred constraint triggers fire at the end of the action
 * (its one statement), as its owner.  PostgreSQL refuses to defer a
 * trigger past a security-restricted operation, and the commit, where it
 * would fire, is iterjob's.
 */
static void
set_constraints_immediate(void)
{
	ConstraintsSetStmt *stmt = makeNode(ConstraintsSetStmt);

	stmt->constraints = NIL;
	stmt->deferred = false;
	AfterTriggerSetState(stmt);
}

/*
 * The instance's last batch came back empty: end it, and only if that
 * took (it was not cancelled meanwhile) run its hook, in the same
 * transaction; then end the job if it was the last.
 */
static BatchOutcome
finish_instance(IterjobTask *task)
{
	iterjob_set_phase("finishing");
	if (iterjob_finish_task(task, "succeeded", NULL))
		iterjob_run_instance_hook(task);
	iterjob_settle_job(task->job_id);
	return BATCH_LAST;
}

/*
 * The body of one batch, inside its transaction with SPI connected.  The
 * batch's last key goes to plans->pending_cxt and into pending[]; the
 * task's cursor only moves once the transaction has committed.
 */
/*
 * partition => 'shard': the batch runs on the shard's node and commits
 * there with the shard's cursor (shard_keys.c); this transaction keeps the
 * task's figures (and a copy of the shard's cursor, for the views) and
 * steps to the next shard when this one is done.
 */
static BatchOutcome
do_node_batch(IterjobTask *task, IterjobTaskPlans *plans, Datum *pending)
{
	IterjobNodeBatch r;
	bool		recorded;
	bool		durable = iterjob_synchronous_commit ||
		(task->retry_batch > 0 && task->batches_done < task->retry_batch);

	/*
	 * Once a batch is sent to a node, it runs to its end there and is
	 * recorded here: a pause or cancel (or pg_cancel_backend()) waits for
	 * it, as the node may commit it at any moment; the job's timeouts
	 * bound it on the node, and the launcher's watchdog ends a worker that
	 * waits too long (the node's cursor stays right either way).
	 */
	QueryCancelHoldoffCount = 1;
	iterjob_set_phase("node batch");
	task->batch_keys = task->throttle.batch_size;
	iterjob_run_node_batch(task, durable, &r, &recorded);
	if (r.stopped)
		return BATCH_STOPPED;
	if (recorded)
	{
		/* which node keeps the shard's cursor must survive a crash */
		iterjob_commit_durably();
		return BATCH_NODE_RECORDED;
	}
	task->batch_keys = (uint64) r.rows;
	if (r.rows > 0)
	{
		Oid			input;
		Oid			ioparam;
		MemoryContext old;
		IterjobSavedUser saved;
		Datum		cursor;
		int			section;
		int			nest;

		/*
		 * The node's cursor, as a key, and its jsonb form, as the owner (the
		 * key type's input and cast to json)
		 */
		MemoryContextReset(plans->pending_cxt);
		section = iterjob_enter_owner_statements(task, &saved);
		nest = iterjob_begin_owner_statement(false);
		getTypeInputInfo(task->spec.key_types[0], &input, &ioparam);
		old = MemoryContextSwitchTo(plans->pending_cxt);
		pending[0] = OidInputFunctionCall(input, r.cursor, ioparam, -1);
		MemoryContextSwitchTo(old);
		iterjob_end_owner_statement(nest);
		cursor = iterjob_encode_key(task, plans, pending);
		iterjob_leave_owner_statements(section, &saved);

		task->last_batch_rows = (uint64) r.rows;
		if (!iterjob_record_node_checkpoint(task, task->shards[task->shard_index],
											(uint64) r.rows, cursor, r.shard_rows))
			return BATCH_STOPPED;
		if (!r.done)
			return BATCH_MORE;
	}
	if (!r.done)
		return BATCH_MORE;
	if (task->shard_index + 1 < task->nshards)
		return iterjob_record_next_shard(task) ? BATCH_NEXT_SHARD : BATCH_NEXT_SHARD_STOPPED;
	return finish_instance(task);
}

static BatchOutcome
do_batch(IterjobTask *task, IterjobTaskPlans *plans, Datum *pending)
{
	IterjobSpec *spec = &task->spec;
	Datum		arrays[ITERJOB_MAX_KEYS];
	char	   *held;
	char	   *held_summary;
	Datum		cursor;
	bool		last;
	bool		ended;			/* or, unless last, still running */
	uint64		n;
	IterjobSavedUser saved;
	int			section;

	iterjob_check_owner(task->owner, task->job_id);
	if (!plans->ready)
	{
		iterjob_check_task_keys(task);
		iterjob_prepare_owner_plans(task, plans, true);
	}

	held = iterjob_health_check(&task->throttle, spec->relid, &held_summary);
	if (held == NULL)
		held = held_summary = iterjob_user_health_check(task);
	if (held != NULL)
	{
		iterjob_set_phase("held");
		return iterjob_record_hold(task, held, held_summary) ? BATCH_HELD : BATCH_LEFT;
	}

	if (spec->partition == ITERJOB_PARTITION_SHARD)
		return do_node_batch(task, plans, pending);

	/*
	 * All of the owner's SQL of the batch in one owner section, left once
	 * for iterjob's checkpoint.
	 */
	section = iterjob_enter_owner_statements(task, &saved);
	iterjob_set_phase("keyset query");
	n = iterjob_fetch_keys(task, plans, task->has_cursor ? task->cursor : NULL,
						   task->throttle.batch_size);
	task->batch_keys = n;
	if (n == 0)
	{
		iterjob_leave_owner_statements(section, &saved);
		return finish_instance(task);
	}

	iterjob_batch_key_arrays(task, plans, n, arrays, pending);

	iterjob_set_phase("action");
	if (task->citus_coordinates)
		iterjob_citus_coordinate();
	iterjob_run_action(task, plans, arrays);

	iterjob_set_phase("checkpoint");
	task->last_batch_rows = n;
	cursor = iterjob_encode_key(task, plans, pending);

	/*
	 * A short batch was probably the last: look for the next one in this
	 * transaction, and if it is empty, the checkpoint ends the instance too,
	 * saving a transaction (and a WAL flush) per instance, and a write of
	 * the task row.
	 */
	last = n < (uint64) task->throttle.batch_size &&
		spec->partition != ITERJOB_PARTITION_SHARD &&
		iterjob_fetch_keys(task, plans, pending, 1) == 0;
	iterjob_leave_owner_statements(section, &saved);
	if (last)
	{
		/* the end of an instance must survive a crash */
		iterjob_commit_durably();
		iterjob_set_phase("finishing");
	}
	ended = iterjob_record_checkpoint(task, plans->checkpoint, n, cursor, pending, last);
	if (!ended)
		return BATCH_STOPPED;
	if (!last)
		return BATCH_MORE;
	iterjob_run_instance_hook(task);
	iterjob_lock_job(task->job_id, NULL);
	iterjob_settle_job(task->job_id);
	return BATCH_LAST;
}

/* After a commit: the batch's last key becomes the task's cursor. */
static void
advance_cursor(IterjobTask *task, IterjobTaskPlans *plans, const Datum *pending)
{
	MemoryContext swap = task->cursor_cxt;

	for (int k = 0; k < task->spec.nkeys; k++)
		task->cursor[k] = pending[k];
	task->cursor_cxt = plans->pending_cxt;
	plans->pending_cxt = swap;
	task->has_cursor = true;
	task->batches_done++;
}

static void
report_activity(IterjobTask *task)
{
	char		activity[128];

	snprintf(activity, sizeof(activity),
			 "iterjob job " INT64_FORMAT " instance %d: batch " INT64_FORMAT,
			 task->job_id, task->instance, task->batches_done + 1);
	pgstat_report_activity(STATE_RUNNING, activity);
	iterjob_slot_set_batches(task->batches_done);
}

/*
 * After a failed batch (rolled back already): log the error, and either
 * schedule a retry or, once max_attempts attempts failed, fail the task.
 * Sets *retry_ms to the backoff before the retry.
 */
static BatchOutcome
after_failure(IterjobTask *task, ErrorData *edata, long *retry_ms)
{
	BatchOutcome outcome = BATCH_RETRY;
	int32		attempts;
	char	   *too_many = NULL;
	char	   *job_error = NULL;	/* the whole job fails with it */
	MemoryContext cxt = CurrentMemoryContext;

	/* now(), for finished_at and updated_at, is when the failure is recorded */
	iterjob_worker_begin(true);
	if (!iterjob_record_failure(task, edata, &attempts))
		outcome = BATCH_STOPPED;
	else if (attempts >= task->spec.max_attempts || task->broken ||
			 ERRCODE_TO_CATEGORY(edata->sqlerrcode) ==
			 ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION ||
			 (too_many = iterjob_check_failure_ratio(task)) != NULL)
	{
		/*
		 * Retrying cannot help a missing object or privilege, nor a job
		 * whose batches keep failing (the failure-ratio stop), nor one whose
		 * relation or keys changed under it (schema_guard.c).  The last two
		 * end the whole job.
		 */
		job_error = task->broken ? edata->message : too_many;
		/* (kept past this transaction's SPI memory, for the log) */
		if (job_error != NULL)
			job_error = MemoryContextStrdup(cxt, job_error);
		(void) iterjob_finish_task(task, "failed", job_error ? job_error : edata->message);
		iterjob_settle_job(task->job_id);
		outcome = BATCH_LAST;
	}
	else
		*retry_ms = iterjob_retry_backoff_ms(attempts);
	iterjob_worker_commit(true);

	ereport(LOG,
			(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch failed (attempt %d of %d): %s",
					task->job_id, task->instance, attempts,
					task->spec.max_attempts, edata->message),
			 outcome == BATCH_RETRY ?
			 errdetail("Retrying in %ld ms.", *retry_ms) :
			 outcome != BATCH_LAST ? 0 : too_many ?
			 errdetail("The instance has failed: %s.", too_many) :
			 task->broken ?
			 errdetail("The job has failed: it cannot go on after that change.") :
			 errdetail("The instance has failed.")));
	if (job_error != NULL)
	{
		/* and so does the job, with every other instance */
		iterjob_worker_begin(true);
		iterjob_fail_job(task->job_id, job_error);
		iterjob_worker_commit(true);
	}
	return outcome;
}

/* Is the task still ours to run?  In its own transaction. */
static bool
still_running(IterjobTask *task)
{
	bool		running;

	iterjob_worker_begin(true);
	running = iterjob_task_still_running(task);
	iterjob_worker_commit(true);
	return running;
}

/*
 * Sleep between batches, waking for interrupts (SIGTERM, reload) and when
 * the job's state changes.  A held instance also ends its sleep on a
 * reload: a setting of the health gate may release it (iterjob.enabled
 * turned on again), and the loop applies the reload before its next look.
 */
static void
pause_for(long ms, const char *phase, IterjobWaitEvent event)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	iterjob_set_phase(phase);
	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = (long) ((end - GetCurrentTimestamp()) / 1000);
		if (left <= 0 || iterjob_slot_recheck_pending() ||
			(event == ITERJOB_WAIT_HELD && ConfigReloadPending))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, iterjob_wait_event(event));
		ResetLatch(MyLatch);
	}
}

/*
 * Paced for foreground sessions that wait for WAL (foreground_pacing.c):
 * after a batch that took batch_us, pause that times the pace, less the
 * paused_ms the other limits paused already.  The pace is read again as
 * the pause goes on (it falls as the sessions stop waiting).  The first
 * pause after a batch that was not paced says why in the task's row and
 * the log.
 */
static void
pace_for_foreground(IterjobTask *task, int64 batch_us, long paused_ms)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		uint32		pace = iterjob_foreground_pace();
		int64		due_us;

		if (pace == 0)
		{
			task->foreground_paced = false;
			break;
		}
		if (!task->foreground_paced)
		{
			MemoryContext cxt = CurrentMemoryContext;
			char	   *reason = iterjob_foreground_pace_reason();

			task->foreground_paced = true;
			ereport(LOG,
					(errmsg("iterjob: job " INT64_FORMAT " instance %d: slowing down for the foreground: %s",
							task->job_id, task->instance, reason)));
			iterjob_worker_begin(true);
			iterjob_record_foreground_pacing(task, reason);
			iterjob_worker_commit(true);
			MemoryContextSwitchTo(cxt);
			pfree(reason);
		}
		due_us = batch_us * pace / 4 - (int64) paused_ms * 1000 -
			(GetCurrentTimestamp() - start);
		if (due_us < 1000 || iterjob_slot_recheck_pending())
			break;
		pause_for(Min(due_us / 1000, PACE_RECHECK_MS), "foreground", ITERJOB_WAIT_THROTTLED);
	}
}

/*
 * Did the batch fail by a timeout, saying it was too big?  A lock timeout
 * (lock_not_available, also from NOWAIT), or a statement timeout: a
 * query_canceled after the batch's statement timeout had passed, not a
 * pg_cancel_backend() before.
 */
static bool
timed_out(ErrorData *edata, TimestampTz start, int32 timeout_ms)
{
	if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
		return true;
	return edata->sqlerrcode == ERRCODE_QUERY_CANCELED && timeout_ms > 0 &&
		TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms);
}

static BatchOutcome
run_batch(IterjobTask *task, IterjobTaskPlans *plans, long *retry_ms)
{
	volatile BatchOutcome outcome = BATCH_MORE;
	Datum		pending[ITERJOB_MAX_KEYS] = {0};
	ErrorData  *volatile edata = NULL;
	MemoryContext worker_cxt = CurrentMemoryContext;
	TimestampTz start;
	bool		steered;

	/* the job's own limit, within iterjob.max_statement_timeout as it is now */
	int32		timeout_ms = iterjob_batch_timeout_ms(task->spec.statement_timeout_ms);

	report_activity(task);
	task->batch_keys = 0;
	task->broken = false;
	iterjob_slot_begin_batch(task->task_id, task->batches_done + 1, timeout_ms);
	iterjob_worker_begin(true);

	/*
	 * After a failed attempt, the batches up to the one that failed commit
	 * durably: a crash (a batch that kills its worker again) must not take
	 * back the way to it, and the failed attempts count on until that
	 * batch commits (task_record.c).
	 */
	if (!plans->ready)
		task->on_citus = iterjob_citus_installed();
	if ((task->on_citus && task->spec.partition != ITERJOB_PARTITION_SHARD) ||
		(task->retry_batch > 0 && task->batches_done < task->retry_batch))
		iterjob_commit_durably();
	else
		iterjob_commit_batch_mode();
	set_constraints_immediate();
	start = GetCurrentTimestamp();
	enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	accept_cancel(true);

	PG_TRY();
	{
		outcome = do_batch(task, plans, pending);
		/* deferred constraints of the action are checked at commit */
		iterjob_worker_commit(true);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(task->cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	disable_timeout(STATEMENT_TIMEOUT, false);
	steered = steer_signalled;
	/* also drops a timeout that fired as the batch committed */
	accept_cancel(false);

	if (edata != NULL)
	{
		int32		waiter;
		int32		waited_ms;

		AbortCurrentTransaction();
		iterjob_slot_end_batch();
		MemoryContextSwitchTo(worker_cxt);
		if (iterjob_slot_take_foreground(&waiter, &waited_ms))
		{
			/*
			 * It blocked a foreground session too long: not a failed
			 * attempt; run again soon at half its size (a batch of one key
			 * waits longer), growing back as batches succeed.
			 */
			bool		halved = iterjob_throttle_after_timeout(&task->throttle,
																task->batch_keys);

			ereport(LOG,
					(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch of " UINT64_FORMAT " keys cancelled, rolled back: session %d had waited %d ms for a lock it held",
							task->job_id, task->instance, task->batch_keys, waiter, waited_ms),
					 errdetail("Retrying at batch size %d (iterjob.max_foreground_wait is %d ms).",
							   task->throttle.batch_size, iterjob_max_foreground_wait)));
			iterjob_worker_begin(true);
			iterjob_record_foreground_cancel(task, waiter, waited_ms);
			iterjob_worker_commit(true);
			outcome = BATCH_RETRY;
			*retry_ms = halved ? FOREGROUND_YIELD_MS :
				Max(iterjob_max_foreground_wait, MIN_FOREGROUND_RETRY_MS);
		}
		else if (iterjob_slot_take_interrupt() || steered)
		{
			/*
			 * A pause or cancel of the job interrupted it: nothing failed.
			 * The loop looks at the job's state before anything else, and
			 * leaves the task (from its last checkpoint, for a resume), or
			 * runs the batch again if the job still runs (the signal was
			 * late, for a job this worker had left).
			 */
			ereport(LOG,
					(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch interrupted by a pause or cancel, rolled back",
							task->job_id, task->instance)));
			outcome = BATCH_RETRY;
			*retry_ms = 0;
		}
		else if (timed_out(edata, start, timeout_ms) &&
				 iterjob_throttle_after_timeout(&task->throttle, task->batch_keys))
		{
			/* split it: not a failed attempt, retried at once */
			ereport(LOG,
					(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch of " UINT64_FORMAT " keys timed out, retrying at batch size %d: %s",
							task->job_id, task->instance, task->batch_keys,
							task->throttle.batch_size, edata->message)));
			outcome = BATCH_RETRY;
			*retry_ms = 0;
		}
		else
		{
			task->retry_batch = task->batches_done + 1;
			outcome = after_failure(task, edata, retry_ms);
		}
		FreeErrorData(edata);
	}
	else
	{
		iterjob_slot_end_batch();
		MemoryContextSwitchTo(worker_cxt);
		if (outcome == BATCH_NEXT_SHARD || outcome == BATCH_NEXT_SHARD_STOPPED)
		{
			task->shard_index++;
			task->has_cursor = false;
			task->stored_cursor.present = false;
			task->shard_node = 0;
			task->shard_seed = NULL;
			outcome = outcome == BATCH_NEXT_SHARD ? BATCH_MORE : BATCH_STOPPED;
		}
		else if (outcome == BATCH_NODE_RECORDED)
			outcome = BATCH_MORE;
		else if (outcome == BATCH_MORE || outcome == BATCH_STOPPED)
		{
			bool		had_cursor = task->has_cursor;
			Datum		old_key = task->cursor[0];

			advance_cursor(task, plans, pending);
			task->wal_counted = task->wal_checkpointed;
			if (task->batches_done >= task->retry_batch)
				task->retry_batch = 0;
			iterjob_trail_advanced(task, had_cursor, old_key);
			if (iterjob_log_batches)
				ereport(LOG,
						(errmsg("iterjob: job " INT64_FORMAT " instance %d: batch " INT64_FORMAT " committed",
								task->job_id, task->instance, task->batches_done)));
		}
	}

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return outcome;
}

void
iterjob_run_task(IterjobTask *task)
{
	IterjobTaskPlans plans;
	bool		must_recheck = false;

	memset(&plans, 0, sizeof(plans));
	/* its checkpoints count the WAL this process writes from now on */
	task->wal_counted = task->wal_checkpointed = pgWalUsage.wal_bytes;
	/* its last worker died in a batch: back off as after any failure */
	if (task->retry_ms > 0)
	{
		pause_for(task->retry_ms, "retry backoff", ITERJOB_WAIT_RETRY_BACKOFF);
		must_recheck = true;
	}
	for (;;)
	{
		BatchOutcome outcome;
		long		retry_ms = 0;
		TimestampTz start = GetCurrentTimestamp();
		uint64		wal_before = pgWalUsage.wal_bytes;
		long		batch_ms;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		/* GUCs of the health gate and logging apply from the next batch */
		if (ConfigReloadPending)
			iterjob_reload_config();

		/* under the modulo partition, stay behind the instance before */
		iterjob_trail_before_batch(task);

		/*
		 * No batch starts after a pause or cancel has committed; after a
		 * failed attempt's backoff, look too (no signal may have come).
		 */
		if ((iterjob_slot_take_recheck() || must_recheck) && !still_running(task))
			break;
		must_recheck = false;

		/*
		 * A job without a worker waits, here or in another database: leave
		 * the task, still running, for a worker to resume later.
		 */
		iterjob_fairness_check();
		if (iterjob_slot_yield_requested())
		{
			task->yielded = true;
			break;
		}

		outcome = run_batch(task, &plans, &retry_ms);
		iterjob_count_batch_wal(pgWalUsage.wal_bytes - wal_before);
		if (outcome == BATCH_RETRY || outcome == BATCH_HELD)
			iterjob_trail_stop();
		if (outcome == BATCH_RETRY)
		{
			pause_for(retry_ms, "retry backoff", ITERJOB_WAIT_RETRY_BACKOFF);
			must_recheck = true;
		}
		else if (outcome == BATCH_HELD)
			pause_for(HOLD_RECHECK_MS, "held", ITERJOB_WAIT_HELD);
		else if (outcome != BATCH_MORE)
			break;
		else
		{
			long		wal_ms;
			int64		batch_us = GetCurrentTimestamp() - start;

			batch_ms = (long) (batch_us / 1000);
			wal_ms = iterjob_wal_pace_ms(&task->throttle, task->spec.instances,
										 pgWalUsage.wal_bytes - wal_before, batch_ms);
			sleep_ms = iterjob_throttle_after_batch(&task->throttle, task->spec.instances,
													task->last_batch_rows, batch_ms);
			/* the workers' phase says which limit holds it */
			if (wal_ms > sleep_ms)
				pause_for(wal_ms, "wal paced", ITERJOB_WAIT_THROTTLED);
			else if (sleep_ms > 0)
				pause_for(sleep_ms, "throttled", ITERJOB_WAIT_THROTTLED);
			pace_for_foreground(task, batch_us, Max(wal_ms, sleep_ms));
		}
	}
	iterjob_trail_stop();
	iterjob_free_plans(&plans);
}
