/*-------------------------------------------------------------------------
 *
 * shard_action.c
 *	  The action of a shard's batch, as the node runs it.  Users write the
 *	  action against the distributed table ("UPDATE items SET w = v * 2
 *	  WHERE id = ANY($1)"); run as written on the node, Citus plans it anew
 *	  at every batch (pruning each of the batch's keys to its shard) and
 *	  plans the shard's statement again with the keys as constants.  All
 *	  the keys of a shard's batch are that shard's, so an UPDATE or DELETE
 *	  whose only table is the distributed one is the same statement on the
 *	  shard's table: that is what Citus itself runs locally, and what this
 *	  file makes of such an action, once per session and shard, so that the
 *	  statement is prepared once and its plan kept.  Any other action runs
 *	  as written.
 *
 *	  A batch on a shard takes the lock Citus' executor takes before it
 *	  writes a shard (a share lock on the shard's metadata), which a shard
 *	  move or split takes exclusively while it blocks writes: a batch then
 *	  either commits before the move copies its shard's last changes, or
 *	  waits and finds its shard gone (node_batch.c checks the placement
 *	  after the action).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "storage/lockdefs.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"

#include "iterjob.h"
#include "citus/citus_internal.h"

#define KEPT_SHARD_ACTIONS 16

typedef struct ShardAction
{
	char	   *action;			/* as written; NULL: free slot */
	int64		shard_id;
	Oid			array_type;
	char	   *search_path;	/* names resolve as they did then */
	char	   *sql;			/* what the node runs */
} ShardAction;

static ShardAction shard_actions[KEPT_SHARD_ACTIONS];
static int	next_shard_action = 0;
static bool invalidation_registered = false;
static SPIPlanPtr lock_plan = NULL;

/* Forget every action made for a shard: a table may have changed. */
static void
forget_shard_actions(Datum arg, Oid relid)
{
	for (int i = 0; i < KEPT_SHARD_ACTIONS; i++)
	{
		ShardAction *slot = &shard_actions[i];

		if (slot->action == NULL)
			continue;
		pfree(slot->action);
		pfree(slot->search_path);
		pfree(slot->sql);
		slot->action = NULL;
	}
}

/* query_tree_walker's callback: count the relations a statement reads or writes */
static bool
count_relations(Node *node, int *count)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		if (((RangeTblEntry *) node)->rtekind == RTE_RELATION)
			(*count)++;
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, count_relations, count,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, count_relations, count);
}

/*
 * The distributed table of shard_id and the shard's own table, read from
 * the node's copy of Citus' metadata; false when the node has none.
 */
static bool
shard_relations(int64 shard_id, Oid *table, Oid *shard)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shard_id);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);
	bool		found = false;

	if (SPI_execute_with_args("SELECT s.logicalrelid, pg_catalog.shard_name(s.logicalrelid, s.shardid)"
							  " FROM pg_catalog.pg_dist_shard s"
							  " WHERE s.shardid OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_shard");
	if (SPI_processed == 1)
	{
		bool		isnull;
		char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		*table = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));

		/* the shard's table is in its table's schema (the name may say so) */
		if (!isnull && name != NULL)
			*shard = get_relname_relid(strVal(llast(stringToQualifiedNameList(name, NULL))),
									   get_rel_namespace(*table));
		found = !isnull && name != NULL && OidIsValid(*shard);
	}
	iterjob_end_internal(nest, &saved);
	return found;
}

/*
 * The action on the shard's table, or NULL when it must run as written:
 * not one UPDATE or DELETE of the distributed table alone.  Parsed and
 * analyzed as the caller (the job's owner), as the action itself is.
 */
static char *
rewrite_for_shard(const char *action, Oid array_type, int64 shard_id)
{
	List	   *raw;
	Query	   *query;
	RangeTblEntry *target;
	Oid			table;
	Oid			shard;
	int			relations = 0;

	if (!shard_relations(shard_id, &table, &shard))
		return NULL;
	raw = raw_parser(action, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		return NULL;
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), action,
									  &array_type, 1, NULL);
	if ((query->commandType != CMD_UPDATE && query->commandType != CMD_DELETE) ||
		query->resultRelation == 0 || query->utilityStmt != NULL)
		return NULL;
	target = rt_fetch(query->resultRelation, query->rtable);
	if (target->rtekind != RTE_RELATION || target->relid != table)
		return NULL;
	(void) count_relations((Node *) query, &relations);
	if (relations != 1)
		return NULL;

	/* the shard's table under the table's name, as Citus writes it */
	if (target->alias == NULL)
		target->alias = makeAlias(target->eref->aliasname, NIL);
	target->relid = shard;
	return pg_get_querydef(query, false);
}

/*
 * The statement the node runs as the action of a batch of shard_id, with
 * the batch's keys as $1 (of array_type), in the caller's memory.  SPI
 * connected, as the job's owner.
 */
const char *
iterjob_shard_action(const char *action, Oid array_type, int64 shard_id)
{
	ShardAction *slot;
	const char *search_path = GetConfigOption("search_path", false, false);
	char	   *sql;

	if (!invalidation_registered)
	{
		CacheRegisterRelcacheCallback(forget_shard_actions, (Datum) 0);
		invalidation_registered = true;
	}
	for (int i = 0; i < KEPT_SHARD_ACTIONS; i++)
	{
		slot = &shard_actions[i];
		if (slot->action != NULL && slot->shard_id == shard_id &&
			slot->array_type == array_type && strcmp(slot->action, action) == 0 &&
			strcmp(slot->search_path, search_path) == 0)
			return pstrdup(slot->sql);
	}
	sql = rewrite_for_shard(action, array_type, shard_id);
	slot = &shard_actions[next_shard_action];
	next_shard_action = (next_shard_action + 1) % KEPT_SHARD_ACTIONS;
	if (slot->action != NULL)
	{
		pfree(slot->action);
		pfree(slot->search_path);
		pfree(slot->sql);
	}
	slot->action = MemoryContextStrdup(TopMemoryContext, action);
	slot->search_path = MemoryContextStrdup(TopMemoryContext, search_path);
	slot->shard_id = shard_id;
	slot->array_type = array_type;
	slot->sql = MemoryContextStrdup(TopMemoryContext, sql ? sql : action);
	/* a copy: an invalidation may forget the slot while the caller uses it */
	return pstrdup(slot->sql);
}

/*
 * Take, until the transaction ends, the lock Citus' executor takes before
 * it writes shard_id (its metadata's, or its colocation group's, as Citus
 * decides: Citus' lock_shard_metadata() takes it, as iterjob, for a job
 * owner need not own the table): a move or split of the shard waits for
 * the batch.  SPI connected.
 */
void
iterjob_lock_shard_metadata(int64 shard_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shard_id);
	IterjobSavedUser saved;
	int			nest = iterjob_begin_internal(&saved);

	if (lock_plan == NULL)
	{
		char	   *sql = psprintf("SELECT pg_catalog.lock_shard_metadata(%d,"
								   " ARRAY[$1::pg_catalog.int8])", ShareLock);

		lock_plan = SPI_prepare(sql, 1, &type);
		if (lock_plan == NULL || SPI_keepplan(lock_plan) != 0)
			elog(ERROR, "could not prepare the lock of a shard's metadata");
	}
	if (SPI_execute_plan(lock_plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the metadata of shard " INT64_FORMAT, shard_id);
	iterjob_end_internal(nest, &saved);
}
