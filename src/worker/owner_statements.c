/*-------------------------------------------------------------------------
 *
 * owner_statements.c
 *	  The SQL a task runs on its owner's behalf: the keyset queries, the
 *	  action, the instance's hook, and the conversions of its keys (the
 *	  cursor read back through the key types' input functions, a batch's
 *	  last key turned into jsonb for the checkpoint).
 *
 *	  All of it runs in owner sections (run_as.c): as the owner, as a
 *	  security-restricted operation, under the search_path captured at
 *	  enqueue.  A batch enters one section for all of the owner's SQL it
 *	  runs (iterjob_enter_owner_statements(): the keyset query, the action,
 *	  the last key's jsonb form, the look for a next batch) and leaves it
 *	  once, for iterjob's checkpoint; each statement in it undoes what it
 *	  set when it ends (iterjob_begin_owner_statement()), as it did in a
 *	  section of its own.  Whatever the owner defined that these reach
 *	  (type I/O, casts to json, domain checks, operators and operator
 *	  classes, triggers, functions in the filter or action) runs with the
 *	  owner's rights and no more.  Plans are prepared once per task and kept until
 *	  the worker leaves it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "citus/citus.h"
#include "worker/worker_internal.h"

/*
 * Enter the task's owner section, for the owner's statements that follow
 * (of a batch, or of its preparation).  Returns the GUC nest level to leave
 * it with.
 */
int
iterjob_enter_owner_statements(IterjobTask *task, IterjobSavedUser *saved)
{
	return iterjob_begin_owner_section(task->owner, task->search_path,
									   task->spec.lock_timeout_ms, false, saved);
}

void
iterjob_leave_owner_statements(int nest, const IterjobSavedUser *saved)
{
	iterjob_end_owner_section(nest, saved);
}

/*
 * The owner's statements below run only in the task's owner section: as
 * the owner, restricted.  Not in iterjob's internal sections, which run as
 * the bootstrap superuser: a caller that got that wrong would hand the
 * owner's SQL (and whatever the owner defined that it reaches) superuser
 * rights.
 */
static void
check_owner_section(const IterjobTask *task)
{
	if (GetUserId() != task->owner || !InSecurityRestrictedOperation())
		elog(ERROR, "the SQL of iterjob job " INT64_FORMAT " may run only as its owner, in its owner's section",
			 task->job_id);
}

static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	return plan;
}


/* a key being converted by the owner's code, for key_conversion_context() */
typedef struct KeyConversion
{
	IterjobTask *task;
	bool		encoding;		/* a batch's last key into jsonb, else the
								 * cursor read back */
	int			column;
} KeyConversion;

/*
 * A key that the key type's functions (input, a domain's check, a cast to
 * json) cannot convert will not convert on a retry either: the job cannot
 * go on from it (an enum label renamed under a cursor, a cast that fails).
 * Only a cancel, a timeout, a lock wait or a deadlock may pass.
 */
static void
key_conversion_context(void *arg)
{
	KeyConversion *ctx = (KeyConversion *) arg;
	IterjobTask *task = ctx->task;
	int			code = geterrcode();
	int			category = ERRCODE_TO_CATEGORY(code);

	if (category != ERRCODE_OPERATOR_INTERVENTION &&
		category != ERRCODE_TRANSACTION_ROLLBACK &&
		code != ERRCODE_LOCK_NOT_AVAILABLE)
		task->broken = true;
	if (ctx->encoding)
		errcontext("computing the jsonb form of the last key of batch " INT64_FORMAT " of instance %d of iterjob job " INT64_FORMAT,
				   task->batches_done + 1, task->instance, task->job_id);
	else
		errcontext("reading back the cursor %s of instance %d of iterjob job " INT64_FORMAT " (key column \"%s\")",
				   task->stored_cursor.json, task->instance, task->job_id,
				   task->spec.key_names[ctx->column]);
}

static void
push_key_conversion(ErrorContextCallback *errcb, KeyConversion *ctx)
{
	errcb->callback = key_conversion_context;
	errcb->arg = ctx;
	errcb->previous = error_context_stack;
	error_context_stack = errcb;
}

/*
 * The committed cursor, from its stored text into values of the key types:
 * their input functions (and a domain's checks) run as the owner.  The
 * text stays: a first batch that fails before its plans are all prepared
 * (a lock timeout, say) decodes it again when it is retried.
 */
static void
decode_cursor(IterjobTask *task)
{
	ErrorContextCallback errcb;
	KeyConversion ctx = {task, false, 0};
	int			nest;

	task->has_cursor = task->stored_cursor.present;
	if (!task->has_cursor)
		return;
	MemoryContextReset(task->cursor_cxt);
	push_key_conversion(&errcb, &ctx);
	nest = iterjob_begin_owner_statement(false);
	for (int i = 0; i < task->spec.nkeys; i++)
	{
		Oid			input;
		Oid			ioparam;
		MemoryContext old = MemoryContextSwitchTo(task->cursor_cxt);

		ctx.column = i;
		getTypeInputInfo(task->spec.key_types[i], &input, &ioparam);
		task->cursor[i] = OidInputFunctionCall(input, task->stored_cursor.text[i],
											   ioparam, -1);
		MemoryContextSwitchTo(old);
	}
	iterjob_end_owner_statement(nest);
	error_context_stack = errcb.previous;
}

/* the kept plans, in the order iterjob_prepare_owner_plans() makes them */
#define NPLANS 4

/* Free the plans in made[] (kept or not), and clear the array. */
static void
free_plan_array(SPIPlanPtr *made)
{
	for (int i = 0; i < NPLANS; i++)
	{
		if (made[i] != NULL)
			SPI_freeplan(made[i]);
		made[i] = NULL;
	}
}

/*
 * Prepare the task's statements (in its first batch's transaction) and
 * read its cursor.  The plans are kept only once all are prepared, all
 * together: a statement that fails to prepare leaves nothing kept behind
 * (the others die with the aborted transaction's SPI context), and the
 * retry prepares them all again.  Without keep (iterjob.preview()'s
 * sample), the plans live until SPI_finish() and there is no checkpoint.
 */
void
iterjob_prepare_owner_plans(IterjobTask *task, IterjobTaskPlans *plans, bool keep)
{
	IterjobSpec *spec = &task->spec;
	IterjobSavedUser saved;
	Oid			arraytypes[ITERJOB_MAX_KEYS];
	Oid			next_types[ITERJOB_MAX_KEYS + 1];
	SPIPlanPtr	made[NPLANS] = {0};
	SPIPlanPtr	checkpoint;
	int			keyset_options;
	int			section;
	int			nest;

	Assert(!plans->ready);
	for (int i = 0; i < spec->nkeys; i++)
	{
		get_typlenbyvalalign(spec->key_types[i], &plans->keylen[i],
							 &plans->keybyval[i], &plans->keyalign[i]);
		arraytypes[i] = iterjob_key_array_type(spec->key_types[i]);
		next_types[i] = spec->key_types[i];
	}
	next_types[spec->nkeys] = INT4OID;	/* the batch size */

	if (OidIsValid(spec->relid))
		task->source_name = MemoryContextStrdup(task->cxt, iterjob_source_sql(spec));

	/*
	 * Citus cannot plan a statement on a distributed table whose keys are
	 * parameters: there, each execution is planned with its values.
	 */
	task->on_citus = iterjob_citus_installed();
	task->citus_coordinates = task->on_citus && spec->partition != ITERJOB_PARTITION_SHARD &&
		(OidIsValid(spec->relid) ? iterjob_citus_partmethod(spec->relid) == 'h' :
		 iterjob_citus_can_coordinate());
	keyset_options = task->on_citus ? CURSOR_OPT_CUSTOM_PLAN : CURSOR_OPT_GENERIC_PLAN;

	/* the cursor read back and the statements prepared in one owner section */
	section = iterjob_enter_owner_statements(task, &saved);
	decode_cursor(task);

	/* partition => 'shard' runs its keyset queries on the shards' nodes */
	if (spec->partition != ITERJOB_PARTITION_SHARD)
	{
		nest = iterjob_begin_owner_statement(true);
		made[0] = prepare(iterjob_keyset_query(spec, task->instance, &task->range, false, true),
						  1, next_types + spec->nkeys, keyset_options);
		made[1] = prepare(iterjob_keyset_query(spec, task->instance, &task->range, true, true),
						  spec->nkeys + 1, next_types, keyset_options);
		iterjob_end_owner_statement(nest);
	}

	nest = iterjob_begin_owner_statement(false);
	made[2] = prepare(spec->action, spec->nkeys, arraytypes,
					  task->on_citus ? CURSOR_OPT_CUSTOM_PLAN : 0);
	if (iterjob_key_types_user_defined(spec))
		made[3] = prepare(psprintf("SELECT %s", iterjob_key_jsonb_sql(spec, true)), spec->nkeys, next_types, 0);
	iterjob_end_owner_statement(nest);
	iterjob_leave_owner_statements(section, &saved);

	/* iterjob's, kept already (a failure here leaves the others unkept) */
	checkpoint = keep ? iterjob_checkpoint_plan(spec) : NULL;

	for (int i = 0; keep && i < NPLANS; i++)
	{
		if (made[i] != NULL && SPI_keepplan(made[i]) != 0)
		{
			free_plan_array(made);
			elog(ERROR, "SPI_keepplan failed: %s", SPI_result_code_string(SPI_result));
		}
	}
	plans->first = made[0];
	plans->next = made[1];
	plans->action = made[2];
	plans->encode = made[3];
	plans->checkpoint = checkpoint;
	plans->pending_cxt = AllocSetContextCreate(task->cxt, "iterjob pending cursor",
											   ALLOCSET_SMALL_SIZES);
	plans->ready = true;
}

void
iterjob_free_plans(IterjobTaskPlans *plans)
{
	SPIPlanPtr	kept[NPLANS] = {plans->first, plans->next, plans->action,
	plans->encode};

	free_plan_array(kept);
	memset(plans, 0, sizeof(*plans));
}

/*
 * The instance's next limit keys, after the key in after[] (NULL: from
 * the start), in SPI_tuptable.  Returns how many.  In the owner's section
 * (iterjob_enter_owner_statements()), as are the action and the key's
 * jsonb form below.
 */
uint64
iterjob_fetch_keys(IterjobTask *task, IterjobTaskPlans *plans, const Datum *after,
				   int32 limit)
{
	Datum		args[ITERJOB_MAX_KEYS + 1];
	int			nkeys = task->spec.nkeys;
	int			nest;
	int			ret;

	check_owner_section(task);
	if (after != NULL)
		for (int k = 0; k < nkeys; k++)
			args[k] = after[k];
	args[nkeys] = Int32GetDatum(limit);
	nest = iterjob_begin_owner_statement(true);
	iterjob_guard_relation(task);
	if (after != NULL)
		ret = SPI_execute_plan(plans->next, args, NULL, false, limit);
	else
		ret = SPI_execute_plan(plans->first, args + nkeys, NULL, false, limit);
	iterjob_end_owner_statement(nest);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "keyset query failed: %s", SPI_result_code_string(ret));
	/* a re-planned query may return other types than the keys' */
	iterjob_guard_key_types(task, SPI_tuptable->tupdesc);
	return SPI_processed;
}

/*
 * The n keys fetched (in SPI_tuptable) as one array per key column, for
 * the action; the last key goes to pending[], copied into
 * plans->pending_cxt (detoasted: a cursor must not point into a table the
 * next transaction may not see).
 */
void
iterjob_batch_key_arrays(IterjobTask *task, IterjobTaskPlans *plans, uint64 n,
						 Datum *arrays, Datum *pending)
{
	IterjobSpec *spec = &task->spec;
	Datum	   *keys = palloc(sizeof(Datum) * n);

	Assert(n > 0);
	MemoryContextReset(plans->pending_cxt);
	for (int k = 0; k < spec->nkeys; k++)
	{
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			keys[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
									k + 1, &isnull);
			if (isnull)
				elog(ERROR, "keyset query returned a NULL key");
		}
		arrays[k] = PointerGetDatum(construct_array(keys, (int) n, spec->key_types[k],
													plans->keylen[k], plans->keybyval[k],
													plans->keyalign[k]));
		pending[k] = keys[n - 1];
		if (!plans->keybyval[k])
		{
			MemoryContext old = MemoryContextSwitchTo(plans->pending_cxt);

			if (plans->keylen[k] == -1)
				pending[k] = PointerGetDatum(PG_DETOAST_DATUM_COPY(keys[n - 1]));
			else
				pending[k] = datumCopy(keys[n - 1], false, plans->keylen[k]);
			MemoryContextSwitchTo(old);
		}
	}
	pfree(keys);
}

/* The action, on one array of the batch's keys per key column. */
void
iterjob_run_action(IterjobTask *task, IterjobTaskPlans *plans, Datum *arrays)
{
	int			nest;
	int			ret;

	check_owner_section(task);
	nest = iterjob_begin_owner_statement(false);
	ret = SPI_execute_plan(plans->action, arrays, NULL, false, 0);
	iterjob_end_owner_statement(nest);
	if (ret < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(ret));
}

/*
 * A key's jsonb form (to_jsonb(), which may use a cast of the key type to
 * json), computed as the owner; it lives until SPI_finish().  (Datum) 0
 * for keys of built-in types, which the checkpoint encodes itself.
 */
Datum
iterjob_encode_key(IterjobTask *task, IterjobTaskPlans *plans, Datum *key)
{
	ErrorContextCallback errcb;
	KeyConversion ctx = {task, true, 0};
	int			nest;
	int			ret;
	bool		isnull = true;
	Datum		json = (Datum) 0;

	if (plans->encode == NULL)
		return (Datum) 0;
	check_owner_section(task);
	push_key_conversion(&errcb, &ctx);
	nest = iterjob_begin_owner_statement(false);
	ret = SPI_execute_plan(plans->encode, key, NULL, false, 1);

	if (ret == SPI_OK_SELECT && SPI_processed == 1)
		json = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	iterjob_end_owner_statement(nest);
	error_context_stack = errcb.previous;
	if (isnull)
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the jsonb form of a key of iterjob job " INT64_FORMAT " is null",
						task->job_id),
				 errdetail("A cast of the key type to json or jsonb returned NULL.")));
	}
	iterjob_check_key_json(task, json);
	return datumCopy(json, false, -1);
}

/*
 * on_instance_complete, with $1 = the instance: after the checkpoint that
 * ended it (which took only if the instance was still running), in an
 * owner section of its own, once per instance.
 */
void
iterjob_run_instance_hook(IterjobTask *task)
{
	IterjobSavedUser saved;
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(task->instance);
	int			nest;

	if (task->spec.on_instance_complete == NULL)
		return;
	nest = iterjob_enter_owner_statements(task, &saved);
	if (SPI_execute_with_args(task->spec.on_instance_complete, 1, &type,
							  &arg, NULL, false, 0) < 0)
		elog(ERROR, "on_instance_complete failed");
	iterjob_leave_owner_statements(nest, &saved);
}
