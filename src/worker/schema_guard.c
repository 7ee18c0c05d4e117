/*-------------------------------------------------------------------------
 *
 * schema_guard.c
 *	  Notices, in a job's batches, when what the job was enqueued against
 *	  has changed under it, and fails the job instead of going on wrong.
 *
 *	  A worker keeps a task's plans for many batches; PostgreSQL re-plans
 *	  them when a relation they read changes, and a re-planned keyset query
 *	  may return another type than the one the job's keys were stored and
 *	  packed as, or walk another order.  So a batch checks, before it uses
 *	  anything its keyset query returned:
 *	  - the types of the keyset query's result columns against the job's
 *		key types (every batch: it costs a comparison per key column);
 *	  - for a job over a relation, with the relation locked for the batch
 *		(so nothing can change until it commits), once per task and again
 *		whenever the relation's cache entry was invalidated: that the
 *		relation still exists under the name its statements use, that each
 *		key column exists with the job's key type, and that a valid unique
 *		btree index on exactly the key columns still has the job's operator
 *		families and collations (the walk's order and uniqueness).
 *	  And at a task's first batch: the key types (through domains, as at
 *	  enqueue), the key's operator classes and collations, and every stored
 *	  key value of the task (cursor, range, largest key) as one non-null
 *	  scalar per key column (key_form.c).
 *
 *	  What the job does not rely on may change freely: columns added or
 *	  dropped beside the key, an index re-created identically, rows
 *	  truncated or added (like any insert, those behind the cursor are not
 *	  visited), partitions attached or detached.  A change it relies on
 *	  marks the task broken and raises an error naming the job, the key and
 *	  the change; the batch rolls back and the whole job fails at once
 *	  (task_runner.c), no datum ever read as another type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "iterjob.h"
#include "keys/keys.h"
#include "worker/worker_internal.h"

/* the task whose relation was last checked, and whether it changed since */
static int64 checked_task = 0;
static Oid	checked_relid = InvalidOid;
static bool relation_changed = true;
static bool callback_registered = false;

static void
relcache_invalidated(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == checked_relid)
		relation_changed = true;
}

static const char *
type_name(Oid type)
{
	return format_type_extended(type, -1, FORMAT_TYPE_ALLOW_INVALID);
}

static const char *
relation_name(const IterjobTask *task)
{
	if (task->source_name != NULL)
		return task->source_name;
	return psprintf("with OID %u", task->spec.relid);
}

/* Key column i of the job now has type found: the job cannot go on. */
pg_noreturn static void
key_type_changed(IterjobTask *task, int i, Oid found)
{
	const IterjobSpec *spec = &task->spec;

	task->broken = true;
	if (OidIsValid(spec->relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the type of key column \"%s\" of relation %s changed from %s to %s since iterjob job " INT64_FORMAT " was enqueued",
						spec->key_names[i], relation_name(task),
						type_name(spec->key_types[i]), type_name(found), task->job_id),
				 errdetail("Instance %d stopped before its batch " INT64_FORMAT "; the job's keys are stored and compared as %s.",
						   task->instance, task->batches_done + 1,
						   type_name(spec->key_types[i]))));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("key column \"%s\" of the query of iterjob job " INT64_FORMAT " now has type %s, not %s as when the job was enqueued",
					spec->key_names[i], task->job_id, type_name(found),
					type_name(spec->key_types[i])),
			 errdetail("Instance %d stopped before its batch " INT64_FORMAT "; a relation the query reads has changed.",
					   task->instance, task->batches_done + 1)));
}

/* A stored key value of the task (what names it) must have a usable form. */
static void
check_stored_value(IterjobTask *task, const IterjobKeyValue *value, const char *what)
{
	if (!value->present || value->problem == NULL)
		return;
	task->broken = true;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the stored %s of instance %d of iterjob job " INT64_FORMAT " is not one non-null scalar per key column",
					what, task->instance, task->job_id),
			 errdetail("The %s of key (%s) is %s, which %s.", what,
					   iterjob_key_list(&task->spec, "", false), value->json,
					   value->problem)));
}

/*
 * At a task's first batch (its plans not made yet): the key types, the
 * key's order and the stored key values, before any SQL is built from
 * them.
 */
void
iterjob_check_task_keys(IterjobTask *task)
{
	IterjobSpec *spec = &task->spec;
	MemoryContext old;

	/* a new claim: its first batch looks at the relation whatever happened */
	relation_changed = true;
	if (OidIsValid(spec->relid) &&
		!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(spec->relid)))
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u of iterjob job " INT64_FORMAT " was dropped",
						spec->relid, task->job_id)));
	}
	for (int i = 0; i < spec->nkeys; i++)
	{
		const char *problem = iterjob_key_type_problem(spec->key_types[i]);

		if (problem != NULL)
		{
			task->broken = true;
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("key column \"%s\" of iterjob job " INT64_FORMAT " has type %s, which %s",
							spec->key_names[i], task->job_id,
							type_name(spec->key_types[i]), problem),
					 errdetail("A key is stored as one JSON scalar per column.")));
		}
		if ((OidIsValid(spec->key_opclasses[i]) &&
			 !SearchSysCacheExists1(CLAOID, ObjectIdGetDatum(spec->key_opclasses[i]))) ||
			(OidIsValid(spec->key_collations[i]) &&
			 !SearchSysCacheExists1(COLLOID, ObjectIdGetDatum(spec->key_collations[i]))))
		{
			task->broken = true;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the order of key column \"%s\" of iterjob job " INT64_FORMAT " no longer exists",
							spec->key_names[i], task->job_id),
					 errdetail("Its operator class or collation was dropped since the job was enqueued.")));
		}
	}

	/*
	 * Anything else missing from the key's order is a change too.  The
	 * order's SQL lives as long as the task: batches build statements from
	 * it (partition => 'shard' in each one).
	 */
	task->broken = true;
	old = MemoryContextSwitchTo(task->cxt);
	iterjob_resolve_key_order(spec);
	MemoryContextSwitchTo(old);
	task->broken = false;

	check_stored_value(task, &task->stored_cursor, "cursor");
	check_stored_value(task, &task->range.lower, "range start");
	check_stored_value(task, &task->range.upper, "range end");
	check_stored_value(task, &spec->upper_bound, "largest key");
}

/* Does index indexoid walk the key in the job's order? */
static bool
index_has_order(const IterjobSpec *spec, Oid indexoid)
{
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	bool		isnull;
	oidvector  *classes;
	oidvector  *collations;
	bool		same = true;

	if (!HeapTupleIsValid(tup))
		return false;
	classes = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															Anum_pg_index_indclass, &isnull));
	collations = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															   Anum_pg_index_indcollation, &isnull));
	for (int i = 0; same && i < spec->nkeys; i++)
	{
		if (get_opclass_family(classes->values[i]) != spec->order.columns[i].opfamily)
			same = false;
		else if (OidIsValid(spec->key_collations[i]) &&
				 collations->values[i] != spec->key_collations[i])
			same = false;
	}
	ReleaseSysCache(tup);
	return same;
}

/* The catalog check of a job over a relation (locked by the caller). */
static void
check_relation(IterjobTask *task)
{
	const IterjobSpec *spec = &task->spec;
	AttrNumber	attnums[ITERJOB_MAX_KEYS];
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(spec->relid));
	Form_pg_class form;
	char	   *name;
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	bool		walked = false;

	if (!HeapTupleIsValid(tup))
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation %s of iterjob job " INT64_FORMAT " was dropped",
						relation_name(task), task->job_id)));
	}
	form = (Form_pg_class) GETSTRUCT(tup);
	name = quote_qualified_identifier(get_namespace_name(form->relnamespace),
									  NameStr(form->relname));
	ReleaseSysCache(tup);
	if (task->source_name != NULL && strcmp(name, task->source_name) != 0)
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation %s of iterjob job " INT64_FORMAT " was renamed to %s",
						task->source_name, task->job_id, name),
				 errdetail("The job's statements name the relation; renamed, they would read another relation or none."),
				 errhint("Enqueue the job again under the new name.")));
	}

	for (int i = 0; i < spec->nkeys; i++)
	{
		Form_pg_attribute att;

		tup = SearchSysCacheAttName(spec->relid, spec->key_names[i]);
		if (!HeapTupleIsValid(tup))
		{
			task->broken = true;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("key column \"%s\" of relation %s no longer exists",
							spec->key_names[i], name),
					 errdetail("It was dropped or renamed since iterjob job " INT64_FORMAT " was enqueued.",
							   task->job_id)));
		}
		att = (Form_pg_attribute) GETSTRUCT(tup);
		attnums[i] = att->attnum;
		if (att->atttypid != spec->key_types[i])
		{
			Oid			found = att->atttypid;

			ReleaseSysCache(tup);
			key_type_changed(task, i, found);
		}
		ReleaseSysCache(tup);
	}

	rel = relation_open(spec->relid, NoLock);
	indexes = iterjob_unique_key_indexes(rel, attnums, spec->nkeys);
	relation_close(rel, NoLock);
	foreach(lc, indexes)
		if (index_has_order(spec, lfirst_oid(lc)))
			walked = true;
	list_free(indexes);
	if (!walked)
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("key (%s) of relation %s lost the unique index iterjob job " INT64_FORMAT " walks it by",
						iterjob_key_list(spec, "", false), name, task->job_id),
				 errdetail("The index was dropped, made invalid, or re-created with another operator class or collation; the job relies on its order and uniqueness.")));
	}
}

/*
 * Before a batch runs its keyset query: lock the job's relation for the
 * rest of the batch, and check it when it may have changed.  Called in an
 * owner section (the job's lock_timeout bounds the wait).
 */
void
iterjob_guard_relation(IterjobTask *task)
{
	Oid			relid = task->spec.relid;

	if (!OidIsValid(relid))
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(relcache_invalidated, (Datum) 0);
		callback_registered = true;
	}
	if (checked_task != task->task_id || checked_relid != relid)
	{
		checked_task = task->task_id;
		checked_relid = relid;
		relation_changed = true;
	}
	/* takes in the invalidations of what committed before */
	LockRelationOid(relid, AccessShareLock);
	if (!relation_changed)
		return;
	check_relation(task);
	relation_changed = false;
}

/* After the keyset query: its key columns must have the job's key types. */
void
iterjob_guard_key_types(IterjobTask *task, TupleDesc desc)
{
	if (desc->natts < task->spec.nkeys)
	{
		task->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the keyset query of iterjob job " INT64_FORMAT " returns %d columns for a key of %d",
						task->job_id, desc->natts, task->spec.nkeys)));
	}
	for (int i = 0; i < task->spec.nkeys; i++)
		if (TupleDescAttr(desc, i)->atttypid != task->spec.key_types[i])
			key_type_changed(task, i, TupleDescAttr(desc, i)->atttypid);
}

/*
 * A batch's last key as the owner's to_jsonb() made it, before it becomes
 * the cursor: one non-null scalar per key column.
 */
void
iterjob_check_key_json(IterjobTask *task, Datum json)
{
	char	   *texts[ITERJOB_MAX_KEYS];
	const char *problem = iterjob_key_form_texts(&task->spec, json, texts);
	Jsonb	   *jb;

	if (problem == NULL)
		return;
	task->broken = true;
	jb = DatumGetJsonbP(json);
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the jsonb form of key (%s) of iterjob job " INT64_FORMAT " is not one non-null scalar per key column",
					iterjob_key_list(&task->spec, "", false), task->job_id),
			 errdetail("Instance %d: to_jsonb() of the last key of batch " INT64_FORMAT " returned %s, which %s.",
					   task->instance, task->batches_done + 1,
					   JsonbToCString(NULL, &jb->root, VARSIZE(jb)), problem),
			 errhint("A cast of the key's type to json or jsonb decides its jsonb form.")));
}
