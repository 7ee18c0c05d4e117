/*-------------------------------------------------------------------------
 *
 * run_as.c
 *	  Switching the current user the way a SECURITY DEFINER function does.
 *
 *	  iterjob's own bookkeeping runs as the bootstrap superuser (its tables
 *	  grant nothing to PUBLIC), with search_path = pg_catalog.  A job's
 *	  filter, action and hooks run in an "owner section": as the job's owner,
 *	  with the search_path captured at enqueue, as a security-restricted
 *	  operation (as VACUUM runs index functions): PostgreSQL then refuses
 *	  SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION and the creation of
 *	  temporary tables, so user SQL can neither switch back to the worker's
 *	  own identity nor plant session state (a temporary table that shadows
 *	  a table name) for whatever runs next in the same process.  Every
 *	  setting changed in the section, by iterjob or by the user's SQL, is
 *	  undone when it ends; aborting the transaction also restores the
 *	  previous user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "iterjob.h"

static void
switch_user(Oid userid, IterjobSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(userid,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
iterjob_become_superuser(IterjobSavedUser *saved)
{
	switch_user(BOOTSTRAP_SUPERUSERID, saved);
}

void
iterjob_become_owner(Oid owner, IterjobSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
iterjob_restore_user(const IterjobSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

static void
set_local(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
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

	set_local("search_path", search_path);
	if (lock_timeout_ms > 0)
	{
		char		value[32];

		snprintf(value, sizeof(value), "%dms", lock_timeout_ms);
		set_local("lock_timeout", value);
	}
	if (keyset_planner)
	{
		set_local("enable_seqscan", "off");
		set_local("enable_bitmapscan", "off");
		set_local("enable_sort", "off");
		set_local("enable_hashagg", "off");
		set_local("max_parallel_workers_per_gather", "0");
	}
	iterjob_become_owner(owner, saved);
	return nest;
}

void
iterjob_end_owner_section(int nest, const IterjobSavedUser *saved)
{
	iterjob_restore_user(saved);
	/* false: also undo settings the user's SQL changed, SET or not */
	AtEOXact_GUC(false, nest);
}

/*
 * Enter iterjob's own bookkeeping: as the superuser, with search_path =
 * pg_catalog.  Returns the GUC nest level to end it with.
 */
int
iterjob_begin_internal(IterjobSavedUser *saved)
{
	int			nest = NewGUCNestLevel();

	set_local("search_path", "pg_catalog");
	iterjob_become_superuser(saved);
	return nest;
}

void
iterjob_end_internal(int nest, const IterjobSavedUser *saved)
{
	iterjob_restore_user(saved);
	AtEOXact_GUC(true, nest);
}
