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
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "job_spec.h"

void
iterjob_check_relation(Oid relid)
{
	char		relkind = get_rel_relkind(relid);
	AclResult	aclresult;

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("iterjob iterates ordinary tables only.")));

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
 * Is there a valid, non-partial btree index whose only key column is attnum
 * and which enforces uniqueness?
 */
static bool
has_unique_index_on(Relation rel, AttrNumber attnum)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID,
										  ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indisvalid && idx->indnkeyatts == 1 &&
			idx->indkey.values[0] == attnum &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			relation_am(idx->indexrelid) == BTREE_AM_OID)
			found = true;
		ReleaseSysCache(tup);
		if (found)
			break;
	}
	list_free(indexes);
	return found;
}

/* The relation's primary key column, when it has a one-column one. */
static char *
primary_key_column(Relation rel)
{
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tup;
	Form_pg_index idx;
	char	   *attname;

	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" has no primary key",
						RelationGetRelationName(rel)),
				 errhint("Name the key column with the \"key\" parameter.")));

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", pkoid);
	idx = (Form_pg_index) GETSTRUCT(tup);
	if (idx->indnkeyatts != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("primary key of table \"%s\" has %d columns",
						RelationGetRelationName(rel), idx->indnkeyatts),
				 errdetail("Composite keys are not supported."),
				 errhint("Name a single unique integer column with the \"key\" parameter.")));
	attname = get_attname(RelationGetRelid(rel), idx->indkey.values[0], false);
	ReleaseSysCache(tup);
	return attname;
}

void
iterjob_resolve_key(Oid relid, const char *key, IterjobSpec *spec)
{
	Relation	rel = table_open(relid, AccessShareLock);
	char	   *column;
	AttrNumber	attnum;
	Oid			typid;

	column = key ? pstrdup(key) : primary_key_column(rel);
	attnum = get_attnum(relid, column);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, RelationGetRelationName(rel)),
				 errhint("The key is a single column name, matched exactly (quote nothing).")));

	typid = get_atttype(relid, attnum);
	if (typid != INT2OID && typid != INT4OID && typid != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" has type %s", column,
						format_type_be(typid)),
				 errdetail("The key column must be of type smallint, integer or bigint.")));

	if (!has_unique_index_on(rel, attnum))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key column \"%s\" of relation \"%s\" is not covered by a unique index",
						column, RelationGetRelationName(rel)),
				 errdetail("Keyset iteration needs a valid, non-partial, one-column unique btree index on the key.")));

	table_close(rel, AccessShareLock);
	spec->key_column = column;
	spec->key_type = typid;
}

/* Parse text that must be exactly one SQL statement. */
static RawStmt *
parse_one_statement(const char *sql, const char *what)
{
	List	   *stmts = raw_parser(sql, RAW_PARSE_DEFAULT);

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be exactly one SQL statement", what),
				 errdetail("It contains %d statements.", list_length(stmts))));
	return linitial_node(RawStmt, stmts);
}

void
iterjob_check_filter_syntax(const char *filter)
{
	char	   *sql = psprintf("SELECT\n%s\n", filter);
	RawStmt    *raw;
	SelectStmt *sel;
	ResTarget  *target;

	raw = parse_one_statement(sql, "filter");
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
				 errmsg("filter must be a single boolean expression"),
				 errhint("Write what follows WHERE, for example: status = 'active'.")));
	target = linitial_node(ResTarget, sel->targetList);
	if (target->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filter must be a single boolean expression"),
				 errdetail("It has a column alias.")));
}

void
iterjob_check_action_syntax(const char *action)
{
	RawStmt    *raw = parse_one_statement(action, "action");

	if (IsA(raw->stmt, TransactionStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("action must not control transactions"),
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

		if (stmt->commandType != CMD_UTILITY)
			ExecCheckRTPerms(stmt->rtable, true);
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

/*
 * Parse, analyze and plan the keyset query and the action as the calling
 * role, and check that role's permissions on what they touch.
 */
void
iterjob_check_plans(const IterjobSpec *spec)
{
	Oid			keytype = spec->key_type;
	Oid			arraytype = iterjob_key_array_type(spec->key_type);
	ErrorContextCallback errcb;
	PlanCheckContext ctx;
	SPIPlanPtr	plan;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	errcb.callback = plan_check_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	ctx.what = "filter";
	ctx.text = spec->filter ? spec->filter : "";
	plan = SPI_prepare(iterjob_keyset_query(spec, 0, true), 1, &keytype);
	if (plan == NULL)
		elog(ERROR, "could not prepare keyset query: %s",
			 SPI_result_code_string(SPI_result));
	check_plan_permissions(plan);

	ctx.what = "action";
	ctx.text = spec->action;
	plan = SPI_prepare(spec->action, 1, &arraytype);
	if (plan == NULL)
		elog(ERROR, "could not prepare action: %s",
			 SPI_result_code_string(SPI_result));
	check_plan_permissions(plan);

	error_context_stack = errcb.previous;
	SPI_finish();
}
