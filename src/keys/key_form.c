/*-------------------------------------------------------------------------
 *
 * key_form.c
 *	  The stored form of a key, and the key types that have one.
 *
 *	  A key value (a cursor, a range boundary, the largest key at enqueue)
 *	  is stored as jsonb: one scalar for a one-column key, an array of one
 *	  scalar per column otherwise, each a string, a number or a boolean,
 *	  never JSON null.  That form comes from to_jsonb(), which a cast of the
 *	  key's type to json or jsonb (the owner's own code) may decide, so
 *	  every stored form is checked before C code takes its texts: when it is
 *	  made (at enqueue and at each checkpoint) and when it is read back.  A
 *	  form that breaks the rule is kept with its problem, for the caller to
 *	  report; no NULL or missing text ever reaches a string function.
 *
 *	  Key types are checked through domains: a domain over an array, a
 *	  composite, json or jsonb has no scalar form and is refused as the
 *	  type it stands for.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "iterjob.h"
#include "keys/keys.h"

/*
 * Why type cannot be a key column's (through domains), or NULL.  Types
 * without a btree order are left to the caller, which says so in its own
 * words.
 */
const char *
iterjob_key_type_problem(Oid type)
{
	Oid			base;
	char		typtype;

	if (get_typtype(type) == '\0')
		return "does not exist";
	base = getBaseType(type);
	typtype = get_typtype(base);
	if (type_is_array(base))
		return base == type ? "is an array" : "is a domain over an array";
	if (typtype == TYPTYPE_COMPOSITE || typtype == TYPTYPE_PSEUDO)
		return base == type ? "is a composite type" : "is a domain over a composite type";
	if (base == JSONOID || base == JSONBOID)
		return base == type ? "is json or jsonb" : "is a domain over json or jsonb";
	return NULL;
}

/*
 * Does to_jsonb() turn values of type into json through a cast (of the
 * owner's: only types that are not built in are looked at, as to_jsonb()
 * does)?
 */
static bool
has_json_cast(Oid type)
{
	Oid			base = getBaseType(type);
	Oid			castfunc;

	if (base < FirstNormalObjectId)
		return false;
	return find_coercion_pathway(JSONOID, base, COERCION_EXPLICIT, &castfunc) ==
		COERCION_PATH_FUNC && OidIsValid(castfunc);
}

/*
 * SQL computing a key's stored form from its columns (with params, $1..;
 * else the key columns by name): to_jsonb(k) for one column,
 * jsonb_build_array(k1, k2) for several.  A column whose type to_jsonb()
 * converts through a cast to json goes through that cast explicitly,
 * CAST(k AS pg_catalog.json): the same form, but a cast that returns NULL
 * then gives a NULL that iterjob reports with the key, where to_jsonb()
 * would fail with an internal error.
 */
char *
iterjob_key_jsonb_sql(const IterjobSpec *spec, bool params)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, spec->nkeys == 1 ? "pg_catalog.to_jsonb(" :
						   "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < spec->nkeys; i++)
	{
		char	   *value = params ? psprintf("$%d", i + 1) :
			(char *) quote_identifier(spec->key_names[i]);

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (has_json_cast(spec->key_types[i]))
			appendStringInfo(&buf, "CAST(%s AS pg_catalog.json)", value);
		else
			appendStringInfoString(&buf, value);
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/* Element i of a key's stored form as text, or a problem. */
static const char *
scalar_text(JsonbValue *v, char **text)
{
	switch (v->type)
	{
		case jbvString:
			*text = pnstrdup(v->val.string.val, v->val.string.len);
			return NULL;
		case jbvNumeric:
			*text = DatumGetCString(DirectFunctionCall1(numeric_out,
														NumericGetDatum(v->val.numeric)));
			return NULL;
		case jbvBool:
			*text = pstrdup(v->val.boolean ? "true" : "false");
			return NULL;
		case jbvNull:
			return "holds a JSON null";
		default:
			return "holds an array or an object where a scalar belongs";
	}
}

/*
 * Check the stored form json (a jsonb datum) of a key of spec and fill texts[] with its
 * columns as text (in the current memory context).  Returns NULL, or why
 * it is not one non-null scalar per key column (texts[] is then unset).
 */
const char *
iterjob_key_form_texts(const IterjobSpec *spec, Datum json, char **texts)
{
	JsonbContainer *root = &DatumGetJsonbP(json)->root;
	uint32		n = JsonContainerSize(root);

	if (JsonContainerIsScalar(root))
	{
		if (spec->nkeys != 1)
			return psprintf("is one scalar for a key of %d columns", spec->nkeys);
		return scalar_text(getIthJsonbValueFromContainer(root, 0), &texts[0]);
	}
	if (!JsonContainerIsArray(root))
		return "is an object";
	if (spec->nkeys == 1)
		return "is an array where one scalar belongs";
	if (n != (uint32) spec->nkeys)
		return psprintf("is an array of %u elements for a key of %d columns",
						n, spec->nkeys);
	for (int i = 0; i < spec->nkeys; i++)
	{
		const char *problem = scalar_text(getIthJsonbValueFromContainer(root, i),
										  &texts[i]);

		if (problem != NULL)
			return psprintf("%s (element %d)", problem, i + 1);
	}
	return NULL;
}

/*
 * Fill value from column col of an SPI row: a key's stored form (jsonb),
 * allocating in cxt.  SQL NULL is an absent value; a form that is not one
 * non-null scalar per key column is present with its problem set, and no
 * texts.
 */
void
iterjob_key_value_from_row(const IterjobSpec *spec, HeapTuple tup, TupleDesc desc,
						   int col, IterjobKeyValue *value, MemoryContext cxt)
{
	bool		isnull;
	Datum		json;
	MemoryContext old;

	memset(value, 0, sizeof(*value));
	if (SPI_gettypeid(desc, col) != JSONBOID)
		elog(ERROR, "a key's stored form must be jsonb, not %s",
			 format_type_be(SPI_gettypeid(desc, col)));
	json = SPI_getbinval(tup, desc, col, &isnull);
	if (isnull)
		return;
	old = MemoryContextSwitchTo(cxt);
	value->present = true;
	value->json = SPI_getvalue(tup, desc, col);
	value->problem = iterjob_key_form_texts(spec, json, value->text);
	if (value->problem != NULL)
		memset(value->text, 0, sizeof(value->text));
	MemoryContextSwitchTo(old);
}

/*
 * At enqueue: refuse a key value computed as the caller from a key that
 * exists (what names it, e.g. "the largest key") whose stored form is SQL
 * NULL or breaks the rule.
 */
void
iterjob_check_key_form(const IterjobSpec *spec, const IterjobKeyValue *value,
					   const char *what)
{
	if (value->present && value->problem == NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the jsonb form of key (%s) is not one non-null scalar per key column",
					iterjob_key_list(spec, "", false)),
			 value->present ?
			 errdetail("to_jsonb() of %s returned %s, which %s.",
					   what, value->json, value->problem) :
			 errdetail("to_jsonb() of %s returned NULL.", what),
			 errhint("A cast of the key's type to json or jsonb decides its jsonb form.")));
}
