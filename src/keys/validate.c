/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Enqueue-time checks of a job's relation, key, filter and action, so
 *	  that bad input fails in the caller's session with a clear error
 *	  instead of later in a background worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/varlena.h"

#include "iterjob.h"
#include "keys/keys.h"

static List *parse_argument(const char *sql, const char *what, const char *text,
							int offset);

void
iterjob_check_relation(Oid relid)
{
	char		relkind = get_rel_relkind(relid);
	AclResult	aclresult;

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_MATVIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table or materialized view", get_rel_name(relid)),
				 relkind == RELKIND_VIEW ?
				 errhint("Iterate a view with query => 'SELECT ... FROM %s' and key => its key columns.",
						 get_rel_name(relid)) :
				 errdetail("iterjob iterates tables, partitioned tables, materialized views and queries.")));

	if (get_rel_persistence(relid) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot iterate temporary table \"%s\"", get_rel_name(relid)),
				 errdetail("Jobs run in background workers, which cannot see this session's temporary tables.")));

	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
}

static Oid
relation_am(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			am;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	am = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	return am;
}

/*
 * Record the order of index indexoid's key columns in spec: operator
 * classes, collations and directions.  Walked forwards, or backwards when
 * every column is DESC (so a DESC index on one column is walked in
 * ascending key order).
 */
static void
record_index_order(Relation rel, HeapTuple tup, IterjobSpec *spec)
{
	Form_pg_index idx = (Form_pg_index) GETSTRUCT(tup);
	bool		isnull;
	oidvector  *classes;
	oidvector  *collations;
	int2vector *options;
	bool		all_desc = true;

	classes = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															Anum_pg_index_indclass, &isnull));
	collations = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															   Anum_pg_index_indcollation, &isnull));
	options = (int2vector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															 Anum_pg_index_indoption, &isnull));
	for (int i = 0; i < spec->nkeys; i++)
		if ((options->values[i] & INDOPTION_DESC) == 0)
			all_desc = false;
	spec->key_natural_order = true;
	for (int i = 0; i < spec->nkeys; i++)
	{
		bool		desc = (options->values[i] & INDOPTION_DESC) != 0;
		bool		nulls_first = (options->values[i] & INDOPTION_NULLS_FIRST) != 0;

		spec->key_opclasses[i] = classes->values[i];
		spec->key_collations[i] = collations->values[i];
		spec->key_descending[i] = all_desc ? false : desc;
		spec->key_nulls_first[i] = all_desc ? !nulls_first : nulls_first;
		if (classes->values[i] != GetDefaultOpClass(spec->key_types[i], BTREE_AM_OID) ||
			desc != all_desc ||
			collations->values[i] !=
			TupleDescAttr(RelationGetDescr(rel), idx->indkey.values[i] - 1)->attcollation)
			spec->key_natural_order = false;
	}
}

/*
 * The valid, non-partial btree indexes on plain columns of rel whose key
 * columns are exactly attnums[0..nkeys-1], in order, and which enforce
 * uniqueness: the primary key first.  Also used by schema_guard.c.
 */
List *
iterjob_unique_key_indexes(Relation rel, const AttrNumber *attnums, int nkeys)
{
	List	   *indexes = RelationGetIndexList(rel);
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel, false);
	List	   *found = NIL;
	ListCell   *lc;

	if (OidIsValid(pkoid))
		indexes = lcons_oid(pkoid, list_delete_oid(indexes, pkoid));
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID,
										  ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;
		bool		match;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		match = idx->indisunique && idx->indisvalid && idx->indnkeyatts == nkeys &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			relation_am(idx->indexrelid) == BTREE_AM_OID;
		for (int i = 0; match && i < nkeys; i++)
			if (idx->indkey.values[i] != attnums[i])
				match = false;
		if (match)
			found = lappend_oid(found, idx->indexrelid);
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return found;
}

/*
 * Find the unique index the key is walked by (iterjob_unique_key_indexes'
 * first), and record its order in spec.  False if none.
 */
static bool
find_unique_index(Relation rel, const AttrNumber *attnums, IterjobSpec *spec)
{
	List	   *indexes = iterjob_unique_key_indexes(rel, attnums, spec->nkeys);
	HeapTuple	tup;

	if (indexes == NIL)
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(linitial_oid(indexes)));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", linitial_oid(indexes));
	record_index_order(rel, tup, spec);
	ReleaseSysCache(tup);
	list_free(indexes);
	return true;
}

/* A query's key: the types' default order, under the output columns' collations. */
static void
record_default_order(IterjobSpec *spec, int i, Oid collation)
{
	spec->key_opclasses[i] = GetDefaultOpClass(spec->key_types[i], BTREE_AM_OID);
	spec->key_collations[i] = collation;
	spec->key_descending[i] = false;
	spec->key_nulls_first[i] = false;
}

/* The relation's primary key columns, in index order. */
static List *
primary_key_columns(Relation rel)
{
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel, false);
	HeapTuple	tup;
	Form_pg_index idx;
	List	   *names = NIL;

	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" has no primary key",
						RelationGetRelationName(rel)),
				 errhint("Name the key columns with the \"key\" parameter.")));

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", pkoid);
	idx = (Form_pg_index) GETSTRUCT(tup);
	for (int i = 0; i < idx->indnkeyatts; i++)
		names = lappend(names, get_attname(RelationGetRelid(rel),
										   idx->indkey.values[i], false));
	ReleaseSysCache(tup);
	return names;
}

/* "tenant_id, id" → list of column names, parsed like SQL identifiers */
static List *
parse_key_list(const char *key)
{
	char	   *raw = pstrdup(key);
	List	   *names = NIL;

	if (!SplitIdentifierString(raw, ',', &names) || names == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid key: \"%s\"", key),
				 errhint("Give one column name, or a comma-separated list of column names.")));
	return names;
}

/* Check one key column's type and record it. */
static void
add_key_column(IterjobSpec *spec, const char *name, Oid type)
{
	TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_BTREE_OPFAMILY);

	if (spec->nkeys >= ITERJOB_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_COLUMNS),
				 errmsg("a key has at most %d columns", ITERJOB_MAX_KEYS)));
	for (int i = 0; i < spec->nkeys; i++)
		if (strcmp(spec->key_names[i], name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("key column \"%s\" is named twice", name)));
	if (!OidIsValid(tc->btree_opf))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" has type %s, which has no btree ordering",
						name, format_type_be(type))));
	/*
	 * A cursor stores a key as its jsonb form (to_jsonb()); keys whose jsonb
	 * form is itself an array or an object would not read back as one value.
	 * Domains are looked through (key_form.c).
	 */
	if (type_is_array(getBaseType(type)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" is an array", name),
				 type_is_array(type) ?
				 errdetail("Array-typed key columns are not supported.") :
				 errdetail("Its type %s is a domain over an array; array-typed key columns are not supported.",
						   format_type_be(type))));
	if (iterjob_key_type_problem(type) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" has type %s", name, format_type_be(type)),
				 errdetail("Composite, json and jsonb key columns are not supported, nor domains over them.")));
	(void) iterjob_key_array_type(type);
	spec->key_names[spec->nkeys] = pstrdup(name);
	spec->key_types[spec->nkeys] = type;
	spec->nkeys++;
}

void
iterjob_resolve_key(const char *key, IterjobSpec *spec)
{
	Relation	rel = table_open(spec->relid, AccessShareLock);
	List	   *names = key ? parse_key_list(key) : primary_key_columns(rel);
	AttrNumber	attnums[ITERJOB_MAX_KEYS] = {0};
	ListCell   *lc;

	foreach(lc, names)
	{
		char	   *column = lfirst(lc);
		AttrNumber	attnum = get_attnum(spec->relid, column);

		if (attnum == InvalidAttrNumber || attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							column, RelationGetRelationName(rel))));
		if (spec->nkeys < ITERJOB_MAX_KEYS)
			attnums[spec->nkeys] = attnum;
		add_key_column(spec, column, get_atttype(spec->relid, attnum));
	}

	if (!find_unique_index(rel, attnums, spec))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key (%s) of relation \"%s\" is not covered by a unique index",
						iterjob_key_list(spec, "", false), RelationGetRelationName(rel)),
				 errdetail("Keyset iteration needs a valid, non-partial unique btree index on exactly the key columns, in key order."),
				 errhint("Create one (CREATE UNIQUE INDEX ... ON %s (%s)), or name the columns of such an index with the \"key\" parameter.",
						 RelationGetRelationName(rel), iterjob_key_list(spec, "", false))));

	table_close(rel, AccessShareLock);
}

/*
 * A query source: one SELECT whose output has the key columns.  Their
 * uniqueness cannot be checked; it is the caller's promise.
 */
void
iterjob_check_query(IterjobSpec *spec, const char *key)
{
	List	   *stmts = parse_argument(spec->query, "query", spec->query, 0);
	RawStmt    *raw;
	SPIPlanPtr	plan;
	CachedPlanSource *source;
	TupleDesc	desc;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be exactly one SELECT statement")));
	raw = linitial_node(RawStmt, stmts);
	if (!IsA(raw->stmt, SelectStmt) || ((SelectStmt *) raw->stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a SELECT statement")));
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key is required with query"),
				 errhint("Name the query's key columns, whose values must be unique.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(spec->query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare query: %s", SPI_result_code_string(SPI_result));
	source = linitial(SPI_plan_get_plan_sources(plan));
	desc = source->resultDesc;

	foreach(lc, parse_key_list(key))
	{
		char	   *column = lfirst(lc);
		int			found = -1;

		for (int i = 0; i < desc->natts; i++)
			if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), column) == 0)
			{
				if (found >= 0)
					ereport(ERROR,
							(errcode(ERRCODE_AMBIGUOUS_COLUMN),
							 errmsg("query returns more than one column named \"%s\"", column)));
				found = i;
			}
		if (found < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("query has no output column \"%s\"", column),
					 errhint("The query's output must include every key column.")));
		{
			/* spec outlives SPI's memory */
			MemoryContext old = MemoryContextSwitchTo(cxt);

			add_key_column(spec, column, TupleDescAttr(desc, found)->atttypid);
			record_default_order(spec, spec->nkeys - 1,
								 TupleDescAttr(desc, found)->attcollation);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
}

typedef struct ParseContext
{
	const char *what;			/* "action", "filter", ... */
	const char *text;			/* the argument as given */
	int			offset;			/* where it starts in the parsed string */
} ParseContext;

/*
 * A syntax error in an argument points into that argument (as an internal
 * query), not into the caller's statement, and says which argument it was.
 */
static void
parse_error_callback(void *arg)
{
	ParseContext *ctx = (ParseContext *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(Max(1, pos - ctx->offset));
		internalerrquery(ctx->text);
	}
	errcontext("iterjob %s: %s", ctx->what, ctx->text);
}

/* raw_parser() of sql, which holds text (what) at offset */
static List *
parse_argument(const char *sql, const char *what, const char *text, int offset)
{
	ErrorContextCallback errcb;
	ParseContext ctx = {what, text, offset};
	List	   *stmts;

	errcb.callback = parse_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	error_context_stack = errcb.previous;
	return stmts;
}

/* Parse text that must be exactly one SQL statement. */
static RawStmt *
parse_one_statement(const char *sql, const char *what, const char *text, int offset)
{
	List	   *stmts = parse_argument(sql, what, text, offset);

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be exactly one SQL statement", what),
				 errdetail("It contains %d statements.", list_length(stmts))));
	return linitial_node(RawStmt, stmts);
}

/*
 * Text that must be one SQL expression (what follows WHERE, or SELECT):
 * what names it in errors, kind says what it must be ("boolean
 * expression"), hint what to write.
 */
void
iterjob_check_expression_syntax(const char *expr, const char *what, const char *kind,
								const char *hint)
{
	char	   *sql = psprintf("SELECT\n%s\n", expr);
	RawStmt    *raw;
	SelectStmt *sel;
	ResTarget  *target;

	raw = parse_one_statement(sql, what, expr, (int) strlen("SELECT\n"));
	sel = (SelectStmt *) raw->stmt;
	if (!IsA(sel, SelectStmt) || sel->op != SETOP_NONE ||
		list_length(sel->targetList) != 1 || sel->fromClause != NIL ||
		sel->whereClause != NULL || sel->groupClause != NIL ||
		sel->havingClause != NULL || sel->windowClause != NIL ||
		sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->limitOffset != NULL || sel->lockingClause != NIL ||
		sel->withClause != NULL || sel->distinctClause != NIL ||
		sel->intoClause != NULL || sel->valuesLists != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a single %s", what, kind),
				 errhint("%s", hint)));
	target = linitial_node(ResTarget, sel->targetList);
	if (target->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a single %s", what, kind),
				 errdetail("It has a column alias.")));
}

void
iterjob_check_filter_syntax(const char *filter)
{
	iterjob_check_expression_syntax(filter, "filter", "boolean expression",
									"Write what follows WHERE, for example: status = 'active'.");
}

/* action and the hooks: one statement, which must not end the transaction */
void
iterjob_check_statement_syntax(const char *sql, const char *what)
{
	RawStmt    *raw = parse_one_statement(sql, what, sql, 0);

	if (IsA(raw->stmt, TransactionStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not control transactions", what),
				 errdetail("Each batch runs in a transaction that iterjob commits together with its checkpoint.")));
}

/*
 * Check the permissions a planned statement's range table needs, without
 * running it.
 */
static void
check_plan_permissions(SPIPlanPtr plan)
{
	CachedPlan *cplan = SPI_plan_get_cached_plan(plan);
	ListCell   *lc;

	if (cplan == NULL)
		return;
	foreach(lc, cplan->stmt_list)
	{
		PlannedStmt *stmt = lfirst_node(PlannedStmt, lc);

		ListCell   *rc;

		if (stmt->commandType == CMD_UTILITY)
			continue;
		ExecCheckPermissions(stmt->rtable, stmt->permInfos, true);
		foreach(rc, stmt->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, rc);

			if (rte->rtekind == RTE_RELATION &&
				get_rel_persistence(rte->relid) == RELPERSISTENCE_TEMP)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot use temporary table \"%s\" in a job",
								get_rel_name(rte->relid)),
						 errdetail("Jobs run in background workers, which cannot see this session's temporary tables.")));
		}
	}
	ReleaseCachedPlan(cplan, NULL);	/* the plan is not saved */
}

typedef struct PlanCheckContext
{
	const char *what;
	const char *text;
} PlanCheckContext;

static void
plan_check_error_callback(void *arg)
{
	PlanCheckContext *ctx = (PlanCheckContext *) arg;

	errcontext("iterjob %s: %s", ctx->what, ctx->text);
}

static void
check_one_plan(PlanCheckContext *ctx, const char *what, const char *text,
			   const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;

	ctx->what = what;
	ctx->text = text;
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare %s: %s", what,
			 SPI_result_code_string(SPI_result));
	check_plan_permissions(plan);
	SPI_freeplan(plan);
}

/*
 * Parse, analyze and plan the keyset query, the action and the hooks as the
 * calling role, and check that role's permissions on what they touch.
 */
void
iterjob_check_plans(const IterjobSpec *spec)
{
	Oid			arraytypes[ITERJOB_MAX_KEYS];
	Oid			int4type = INT4OID;
	ErrorContextCallback errcb;
	PlanCheckContext ctx;
	char	   *keyset;

	for (int i = 0; i < spec->nkeys; i++)
		arraytypes[i] = iterjob_key_array_type(spec->key_types[i]);
	/* built before the context below names it: building it may fail too */
	keyset = iterjob_keyset_query(spec, 0, NULL, true, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	ctx.what = "keyset query";
	ctx.text = keyset;
	errcb.callback = plan_check_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	check_one_plan(&ctx, "keyset query", keyset, keyset,
				   spec->nkeys, (Oid *) spec->key_types);
	check_one_plan(&ctx, "action", spec->action, spec->action,
				   spec->nkeys, arraytypes);
	if (spec->on_complete)
		check_one_plan(&ctx, "on_complete", spec->on_complete,
					   spec->on_complete, 0, NULL);
	if (spec->on_instance_complete)
		check_one_plan(&ctx, "on_instance_complete", spec->on_instance_complete,
					   spec->on_instance_complete, 1, &int4type);

	error_context_stack = errcb.previous;
	SPI_finish();
}
