/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  The keys layer (src/keys/): what a job iterates and does (its spec,
 *	  validated at enqueue, read back by the workers), the order it walks
 *	  its keys in, the stored form of a key, the keyset queries, and the
 *	  bounds and ranges computed at enqueue.
 *
 *	  It builds SQL text and checks a job's definition; it runs no batch
 *	  and reaches no other layer.  The worker, Citus and the SQL functions
 *	  use it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_KEYS_H
#define ITERJOB_KEYS_H

#include "postgres.h"

#include "iterjob.h"
#include "access/htup.h"
#include "access/tupdesc.h"

#define ITERJOB_MAX_BATCH_SIZE	1000000
#define ITERJOB_MAX_KEYS		8
#define ITERJOB_MAX_FAILURE_WINDOW	10000

typedef enum IterjobPartition
{
	ITERJOB_PARTITION_MODULO,	/* key % N (integer key) or hash(key) % N */
	ITERJOB_PARTITION_RANGE,	/* N contiguous key ranges */
	ITERJOB_PARTITION_SHARD		/* whole shards of a Citus table */
} IterjobPartition;

/*
 * A key value (a bound or a cursor): its jsonb form as stored (a scalar for
 * one column, an array for several), and each column as text (key_form.c).
 */
typedef struct IterjobKeyValue
{
	bool		present;		/* false: no such bound */
	char	   *json;
	char	   *text[ITERJOB_MAX_KEYS];
	/* set when the stored form is not one non-null scalar per column: why */
	const char *problem;
} IterjobKeyValue;

/* One key column's place in the walking order (key_order.c). */
typedef struct IterjobKeyColumn
{
	char	   *lhs;			/* the column as compared: (k::type COLLATE c) */
	char	   *cast;			/* "::type" for the compared value, or "" */
	char	   *ops[6];			/* OPERATOR(s.op) by strategy 1..5 of the walk */
	Oid			opfamily;
	bool		descending;		/* walked in the family's descending order */
	bool		nulls_first;	/* where the index walk puts NULLs */
} IterjobKeyColumn;

typedef struct IterjobKeyOrder
{
	bool		row_compare;	/* one operator name serves every column */
	IterjobKeyColumn columns[ITERJOB_MAX_KEYS];
} IterjobKeyOrder;

typedef struct IterjobSpec
{
	Oid			relid;			/* relation iterated, or InvalidOid */
	char	   *query;			/* or the SELECT iterated */
	int			nkeys;
	char	   *key_names[ITERJOB_MAX_KEYS];	/* unquoted column names */
	Oid			key_types[ITERJOB_MAX_KEYS];
	/* the key's order: the iterated index's, or the types' default */
	Oid			key_opclasses[ITERJOB_MAX_KEYS];	/* InvalidOid: default */
	Oid			key_collations[ITERJOB_MAX_KEYS];	/* InvalidOid: the column's */
	bool		key_descending[ITERJOB_MAX_KEYS];
	bool		key_nulls_first[ITERJOB_MAX_KEYS];
	bool		key_natural_order;	/* default class and collation, ascending
									 * (known at enqueue only) */
	IterjobKeyOrder order;		/* resolved by iterjob_resolve_key_order() */
	char	   *filter;			/* boolean expression, or NULL */
	char	   *action;			/* one SQL statement taking $1..$nkeys */
	int32		instances;
	int32		batch_size;
	int32		max_attempts;	/* failed attempts of a batch before the task fails */
	int32		statement_timeout_ms;	/* per batch; 0: none */
	int32		lock_timeout_ms;	/* per lock wait; 0: none */
	IterjobPartition partition;
	bool		follow;			/* no upper bound: follow new keys */
	IterjobKeyValue upper_bound;	/* largest key at enqueue (inclusive) */
	char	   *on_complete;	/* statement run when the job succeeds */
	char	   *on_instance_complete;	/* statement run when an instance
										 * succeeds, $1 = instance */
	int64		rows_total;		/* estimated rows to iterate */
	int32		batch_pause_ms; /* sleep between an instance's batches */
	int32		max_rows_per_second;	/* across the job's instances; 0: none */
	int64		max_wal_per_second; /* WAL bytes, across the job's instances;
									 * 0: none */
	int32		target_batch_ms;	/* adapt batch_size to this; 0: fixed */
	double		max_failure_ratio;	/* of the last failure_window attempts; 0: off */
	int32		failure_window; /* batch attempts looked at; 0: off */
	char	   *health_check;	/* expression run as the owner before each
								 * batch: non-null text or true holds */
} IterjobSpec;

/* The key range of one instance under range partitioning. */
typedef struct IterjobRange
{
	bool		empty;			/* holds no key at all */
	IterjobKeyValue lower;		/* inclusive; absent: unbounded */
	IterjobKeyValue upper;		/* exclusive; absent: unbounded */
} IterjobRange;

/* The shards of a job over a distributed table, and their instances. */
typedef struct IterjobShards
{
	int			n;
	int64	   *ids;			/* in the order each instance iterates them */
	int32	   *instance;
} IterjobShards;

/* validate.c */
struct RelationData;
extern void iterjob_check_relation(Oid relid);
extern List *iterjob_unique_key_indexes(struct RelationData *rel,
										const AttrNumber *attnums, int nkeys);
extern void iterjob_resolve_key(const char *key, IterjobSpec *spec);
extern void iterjob_check_query(IterjobSpec *spec, const char *key);
extern void iterjob_check_expression_syntax(const char *expr, const char *what,
											const char *kind, const char *hint);
extern void iterjob_check_filter_syntax(const char *filter);
extern void iterjob_check_statement_syntax(const char *sql, const char *what);
extern void iterjob_check_plans(const IterjobSpec *spec);

/* key_order.c */
extern void iterjob_resolve_key_order(IterjobSpec *spec);
extern char *iterjob_key_compare_sql(const IterjobSpec *spec, int s, char *const *rhs);
extern char *iterjob_key_column_compare_sql(const IterjobSpec *spec, int i, int s,
											const char *rhs);
extern char *iterjob_key_order_by(const IterjobSpec *spec, bool reverse);
extern bool iterjob_key_is_ascending_integer(const IterjobSpec *spec);
extern bool iterjob_key_types_user_defined(const IterjobSpec *spec);

/* keyset_query.c */
extern char *iterjob_type_sql(Oid type);
extern char *iterjob_source_sql(const IterjobSpec *spec);
extern char *iterjob_key_list(const IterjobSpec *spec, const char *prefix,
							  bool descending);
extern char *iterjob_keyset_query(const IterjobSpec *spec, int32 instance,
								  const IterjobRange *range, bool after_cursor,
								  bool limit_param);
extern char *iterjob_shard_keyset_query(const IterjobSpec *spec, const char *shard,
										bool after);
extern char *iterjob_count_query(const IterjobSpec *spec, int32 instance,
								 const IterjobRange *range);
extern void iterjob_key_literals(const IterjobSpec *spec,
								 const IterjobKeyValue *value, char **literals);
extern char *iterjob_keys_not_null(const IterjobSpec *spec);
extern Oid	iterjob_key_array_type(Oid key_type);

/* key_form.c */
extern const char *iterjob_key_type_problem(Oid type);
extern char *iterjob_key_jsonb_sql(const IterjobSpec *spec, bool params);
extern const char *iterjob_key_form_texts(const IterjobSpec *spec, Datum json,
										  char **texts);
extern void iterjob_key_value_from_row(const IterjobSpec *spec, HeapTuple tup,
									   TupleDesc desc, int col,
									   IterjobKeyValue *value, MemoryContext cxt);
extern void iterjob_check_key_form(const IterjobSpec *spec,
								   const IterjobKeyValue *value, const char *what);

/* bounds.c */
extern void iterjob_find_upper_bound(IterjobSpec *spec);
extern IterjobRange *iterjob_split_ranges(const IterjobSpec *spec);
extern int64 iterjob_estimate_rows(const IterjobSpec *spec);

#endif							/* ITERJOB_KEYS_H */
