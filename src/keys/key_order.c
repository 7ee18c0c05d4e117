/*-------------------------------------------------------------------------
 *
 * key_order.c
 *	  The order a job walks its keys in, and the SQL that compares keys in
 *	  that order.
 *
 *	  The order is that of the unique btree index iterated: per key column,
 *	  its operator class (so its operator family), its collation and its
 *	  direction.  Every comparison iterjob writes (the cursor's ">", the
 *	  bounds, range boundaries, ORDER BY) names the operators of that
 *	  family, schema-qualified, applied to the column under that collation:
 *	  the keyset query's order, its index condition and the cursor agree by
 *	  construction, whatever the type (citext, text_pattern_ops, a
 *	  non-default collation, a DESC index, a user-defined operator class).
 *
 *	  Resolving the order reads the catalogs only; no function of the key
 *	  type runs here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/stratnum.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "iterjob.h"
#include "keys/keys.h"

/* OPERATOR(schema.name) of an operator */
static char *
qualified_operator(Oid opno, Oid *nspid)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Form_pg_operator op;
	char	   *result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(tup);
	*nspid = op->oprnamespace;
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tup);
	return result;
}

/* the family strategy that is strategy s in the column's walking order */
static int
family_strategy(bool descending, int s)
{
	if (!descending || s == BTEqualStrategyNumber)
		return s;
	return BTMaxStrategyNumber + 1 - s;
}

/*
 * Fill spec->order from spec->key_opclasses, key_collations and
 * key_descending (InvalidOid opclass: the type's default btree class).
 */
void
iterjob_resolve_key_order(IterjobSpec *spec)
{
	IterjobKeyOrder *order = &spec->order;
	Oid			first_nsp[BTMaxStrategyNumber + 1] = {0};
	const char *first_name[BTMaxStrategyNumber + 1] = {0};

	order->row_compare = true;
	for (int i = 0; i < spec->nkeys; i++)
	{
		IterjobKeyColumn *col = &order->columns[i];
		Oid			opclass = spec->key_opclasses[i];
		Oid			family;
		Oid			intype;
		StringInfoData lhs;

		if (!OidIsValid(opclass))
			opclass = GetDefaultOpClass(spec->key_types[i], BTREE_AM_OID);
		if (!OidIsValid(opclass))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("key type %s has no default btree operator class",
							format_type_be(spec->key_types[i]))));
		family = get_opclass_family(opclass);
		intype = get_opclass_input_type(opclass);
		col->opfamily = family;

		/*
		 * Compare as the class's input type (varchar under text_pattern_ops
		 * is compared as text), so that the operator named is exactly the
		 * family's; polymorphic classes (enums) take the value as it is.
		 */
		col->cast = "";
		if (intype != spec->key_types[i] && !IsPolymorphicType(intype) &&
			get_typtype(intype) != TYPTYPE_PSEUDO)
			col->cast = psprintf("::%s", iterjob_type_sql(intype));

		initStringInfo(&lhs);
		appendStringInfo(&lhs, "(%s%s", quote_identifier(spec->key_names[i]), col->cast);
		if (OidIsValid(spec->key_collations[i]))
		{
			HeapTuple	tup = SearchSysCache1(COLLOID,
											  ObjectIdGetDatum(spec->key_collations[i]));
			Form_pg_collation coll;

			if (!HeapTupleIsValid(tup))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("collation with OID %u of key column \"%s\" does not exist",
								spec->key_collations[i], spec->key_names[i])));
			coll = (Form_pg_collation) GETSTRUCT(tup);
			appendStringInfo(&lhs, " COLLATE %s",
							 quote_qualified_identifier(get_namespace_name(coll->collnamespace),
														NameStr(coll->collname)));
			ReleaseSysCache(tup);
		}
		appendStringInfoChar(&lhs, ')');
		col->lhs = lhs.data;
		col->descending = spec->key_descending[i];
		col->nulls_first = spec->key_nulls_first[i];

		for (int s = BTLessStrategyNumber; s <= BTGreaterStrategyNumber; s++)
		{
			int			fs = family_strategy(col->descending, s);
			Oid			opno = get_opfamily_member(family, intype, intype, fs);
			Oid			nsp;

			if (!OidIsValid(opno))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("operator family of key column \"%s\" has no operator of strategy %d for type %s",
								spec->key_names[i], fs, format_type_be(intype))));
			col->ops[s] = qualified_operator(opno, &nsp);
			if (i == 0)
			{
				first_nsp[s] = nsp;
				first_name[s] = get_opname(opno);
			}
			else if (nsp != first_nsp[s] || strcmp(get_opname(opno), first_name[s]) != 0)
				order->row_compare = false;
		}
		if (col->descending)
			order->row_compare = false;
	}
}

/*
 * The key compared with rhs (SQL of each column's value: "$1", a literal)
 * by strategy s of the walking order (BTLessStrategyNumber ...).  A row
 * comparison when one operator name serves every column (an index
 * condition on all columns); otherwise the expanded form, whose first
 * column's condition still bounds the index scan.
 */
char *
iterjob_key_compare_sql(const IterjobSpec *spec, int s, char *const *rhs)
{
	const IterjobKeyOrder *order = &spec->order;
	StringInfoData buf;
	int			strict;
	int			loose;

	initStringInfo(&buf);
	if (spec->nkeys == 1)
	{
		appendStringInfo(&buf, "%s %s (%s%s)", order->columns[0].lhs,
						 order->columns[0].ops[s], rhs[0], order->columns[0].cast);
		return buf.data;
	}
	if (order->row_compare)
	{
		appendStringInfoString(&buf, "ROW(");
		for (int i = 0; i < spec->nkeys; i++)
			appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", order->columns[i].lhs);
		appendStringInfo(&buf, ") %s ROW(", order->columns[0].ops[s]);
		for (int i = 0; i < spec->nkeys; i++)
			appendStringInfo(&buf, "%s(%s%s)", i > 0 ? ", " : "", rhs[i],
							 order->columns[i].cast);
		appendStringInfoChar(&buf, ')');
		return buf.data;
	}

	strict = (s == BTLessStrategyNumber || s == BTLessEqualStrategyNumber) ?
		BTLessStrategyNumber : BTGreaterStrategyNumber;
	loose = strict == BTLessStrategyNumber ?
		BTLessEqualStrategyNumber : BTGreaterEqualStrategyNumber;
	/* c0 >= r0 AND (c0 > r0 OR (c0 = r0 AND (c1 > r1 OR (... ck > rk)))) */
	appendStringInfo(&buf, "(%s %s (%s%s) AND ", order->columns[0].lhs,
					 order->columns[0].ops[loose], rhs[0], order->columns[0].cast);
	for (int i = 0; i < spec->nkeys; i++)
	{
		const IterjobKeyColumn *col = &order->columns[i];

		if (i == spec->nkeys - 1)
			appendStringInfo(&buf, "%s %s (%s%s)", col->lhs, col->ops[s], rhs[i], col->cast);
		else
			appendStringInfo(&buf, "(%s %s (%s%s) OR (%s %s (%s%s) AND ",
							 col->lhs, col->ops[strict], rhs[i], col->cast,
							 col->lhs, col->ops[BTEqualStrategyNumber], rhs[i], col->cast);
	}
	for (int i = 0; i < spec->nkeys - 1; i++)
		appendStringInfoString(&buf, "))");
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * Column i compared with rhs by strategy s (walking order): one term of
 * the cursor's branches when the key has no row comparison.
 */
char *
iterjob_key_column_compare_sql(const IterjobSpec *spec, int i, int s, const char *rhs)
{
	const IterjobKeyColumn *col = &spec->order.columns[i];

	return psprintf("%s %s (%s%s)", col->lhs, col->ops[s], rhs, col->cast);
}

/* "k1 USING <, k2 USING <" in the walking order, or its reverse */
char *
iterjob_key_order_by(const IterjobSpec *spec, bool reverse)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < spec->nkeys; i++)
	{
		const IterjobKeyColumn *col = &spec->order.columns[i];
		bool		nulls_first = reverse ? !col->nulls_first : col->nulls_first;

		appendStringInfo(&buf, "%s%s USING %s NULLS %s", i > 0 ? ", " : "", col->lhs,
						 col->ops[reverse ? BTGreaterStrategyNumber : BTLessStrategyNumber],
						 nulls_first ? "FIRST" : "LAST");
	}
	return buf.data;
}

/*
 * Can a value of the key's types carry code of the owner's into its jsonb
 * form (a cast to json of a type the owner created)?  Not when every
 * column's base type is built in: to_jsonb() of those calls built-in
 * output functions only, and looks for no cast.
 */
bool
iterjob_key_types_user_defined(const IterjobSpec *spec)
{
	for (int i = 0; i < spec->nkeys; i++)
		if (getBaseType(spec->key_types[i]) >= FirstNormalObjectId)
			return true;
	return false;
}

/*
 * Is the key a single integer column walked in its natural ascending
 * order?  (Instances can then trail one another by key value.)  Read from
 * the job's stored definition, before its key order is resolved; in a
 * transaction.  An operator class dropped since the enqueue says no (the
 * job's first batch fails it).
 */
bool
iterjob_key_is_ascending_integer(const IterjobSpec *spec)
{
	Oid			type = spec->key_types[0];
	Oid			opclass = spec->key_opclasses[0];
	HeapTuple	tup;
	bool		result;

	if (spec->nkeys != 1 || spec->key_descending[0] ||
		(type != INT2OID && type != INT4OID && type != INT8OID))
		return false;
	/* the integer types' default btree classes are integer_ops' */
	if (!OidIsValid(opclass))
		return true;
	tup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclass));
	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_opclass) GETSTRUCT(tup))->opcfamily == INTEGER_BTREE_FAM_OID;
	ReleaseSysCache(tup);
	return result;
}
