/*-------------------------------------------------------------------------
 *
 * run_as.c
 *	  Whose rights iterjob's code runs with: the one place that switches
 *	  identity.
 *
 *	  An iteration worker runs the jobs of one owner.  Its first claim, in
 *	  which no SQL of any job runs, is made as the bootstrap superuser it
 *	  connected as; then iterjob_bind_to_owner() makes the owner its session
 *	  user and its current user, as a security-restricted operation, for
 *	  the rest of the process's life.  That is the identity everything runs
 *	  with by default: the owner's filter, action and hooks, the type I/O,
 *	  casts, operators and triggers they reach, the deferred triggers that
 *	  fire at commit, whatever iterjob did not foresee.  An aborted
 *	  transaction returns to it.  PostgreSQL refuses SET ROLE, RESET ROLE,
 *	  SET SESSION AUTHORIZATION and temporary tables within a
 *	  security-restricted operation, so the owner's SQL can neither switch
 *	  back to the identity the worker connected with nor plant session state
 *	  for what runs next.
 *
 *	  Elevation is the exception: iterjob's own bookkeeping on its own
 *	  tables (claims, checkpoints, states, errors) runs in an "internal
 *	  section" as the bootstrap superuser with search_path = pg_catalog,
 *	  pg_temp, and its SQL names no function, operator, cast or type the
 *	  owner could have defined: a key reaches it only as jsonb computed as
 *	  the owner.
 *	  Backends use the same sections (enqueue writes the job elevated).
 *
 *	  An "owner section" runs the owner's SQL with the search_path captured
 *	  at enqueue, pg_temp moved to its end (PostgreSQL searches the
 *	  temporary schema first for relations and types unless the path
 *	  names it), and iterjob's per-statement settings; every setting
 *	  changed in it, by iterjob or by the owner's SQL, is undone when it
 *	  ends.  A section may run several statements (a batch's), each in a
 *	  level of its own whose settings are undone when it ends
 *	  (iterjob_begin_owner_statement()).  Only processes bound to the
 *	  owner enter owner sections for the owner's SQL (iteration workers,
 *	  recount's worker); a backend enters
 *	  one only for its caller's own SQL (enqueue's and preview's checks and
 *	  plans, preview's sample).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "iterjob.h"

static void
switch_user(Oid userid, IterjobSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(userid,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
become_owner(Oid owner, IterjobSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
restore_user(const IterjobSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/* the owner this process is bound to, once it is */
static Oid	bound_owner = InvalidOid;

/*
 * Make this worker process the owner's, for good (called between
 * transactions; is_superuser says whether the owner is one).
 * PostgreSQL allows a security-restricted operation only inside a
 * transaction: each of the process's transactions enters it as it starts
 * and leaves it once committed (iterjob_enter_owner_restriction() and
 * iterjob_leave_owner_restriction(), worker_xact.c); an aborted one
 * returns to the owner without it by itself.
 */
void
iterjob_bind_to_owner(Oid owner, bool is_superuser)
{
	Assert(!IsTransactionState());
	SetSessionAuthorization(owner, is_superuser);
	SetUserIdAndSecContext(owner, 0);
	bound_owner = owner;
}

/* Right after a transaction starts, in a process bound to an owner. */
void
iterjob_enter_owner_restriction(void)
{
	if (OidIsValid(bound_owner))
		SetUserIdAndSecContext(bound_owner, SECURITY_RESTRICTED_OPERATION);
}

/* Right after it committed. */
void
iterjob_leave_owner_restriction(void)
{
	if (OidIsValid(bound_owner))
		SetUserIdAndSecContext(bound_owner, 0);
}

static void
set_local(const char *name, const char *value)
{
	const char *current = GetConfigOption(name, true, false);

	/* saves the assignment (a search_path's resets a cached lookup) */
	if (current != NULL && strcmp(current, value) == 0)
		return;
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * The owner's search_path as an owner section sets it: the schemas
 * captured at enqueue, in their order, with pg_temp named last (where the
 * owner put it is dropped), so that no temporary object is found before
 * the owner's own.
 */
char *
iterjob_owner_search_path(const char *search_path)
{
	char	   *raw = pstrdup(search_path ? search_path : "");
	List	   *names = NIL;
	ListCell   *lc;
	StringInfoData buf;

	initStringInfo(&buf);
	if (!SplitIdentifierString(raw, ',', &names))
	{
		/* not a list PostgreSQL would accept: it fails as it is */
		appendStringInfo(&buf, "%s, pg_temp", search_path);
		return buf.data;
	}
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strcmp(name, "pg_temp") == 0)
			continue;
		appendStringInfo(&buf, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&buf, "pg_temp");
	return buf.data;
}

/* For a keyset query: the planner can only choose an ordered index scan. */
static void
set_keyset_planner(void)
{
	set_local("enable_seqscan", "off");
	set_local("enable_bitmapscan", "off");
	set_local("enable_sort", "off");
	set_local("enable_hashagg", "off");
	set_local("max_parallel_workers_per_gather", "0");
}

/*
 * Enter an owner section.  lock_timeout_ms > 0 bounds each lock wait.
 * With keyset_planner, the planner can only choose an ordered index scan
 * for the keyset query.  Returns the GUC nest level to end it with.
 */
int
iterjob_begin_owner_section(Oid owner, const char *search_path,
							int lock_timeout_ms, bool keyset_planner,
							IterjobSavedUser *saved)
{
	int			nest = NewGUCNestLevel();

	set_local("search_path", iterjob_owner_search_path(search_path));
	if (lock_timeout_ms > 0)
	{
		char		value[32];

		snprintf(value, sizeof(value), "%dms", lock_timeout_ms);
		set_local("lock_timeout", value);
	}
	if (keyset_planner)
		set_keyset_planner();
	become_owner(owner, saved);
	return nest;
}

void
iterjob_end_owner_section(int nest, const IterjobSavedUser *saved)
{
	restore_user(saved);
	/* false: also undo settings the user's SQL changed, SET or not */
	AtEOXact_GUC(false, nest);
}

/*
 * One statement of an owner section that runs several: whatever it sets
 * is undone when it ends, so that each statement starts from the
 * section's settings, as if it had a section of its own; no identity
 * changes.  With keyset_planner, as iterjob_begin_owner_section()'s.
 * Returns the GUC nest level to end it with.
 */
int
iterjob_begin_owner_statement(bool keyset_planner)
{
	int			nest = NewGUCNestLevel();

	if (keyset_planner)
		set_keyset_planner();
	return nest;
}

void
iterjob_end_owner_statement(int nest)
{
	AtEOXact_GUC(false, nest);
}

/*
 * Enter iterjob's own bookkeeping: as the superuser, with search_path =
 * pg_catalog, pg_temp.  Returns the GUC nest level to end it with.
 */
int
iterjob_begin_internal(IterjobSavedUser *saved)
{
	int			nest = NewGUCNestLevel();

	set_local("search_path", ITERJOB_INTERNAL_SEARCH_PATH);
	switch_user(BOOTSTRAP_SUPERUSERID, saved);
	return nest;
}

void
iterjob_end_internal(int nest, const IterjobSavedUser *saved)
{
	restore_user(saved);
	AtEOXact_GUC(true, nest);
}
