/*-------------------------------------------------------------------------
 *
 * run_as.c
 *	  Switching the current user the way a SECURITY DEFINER function does.
 *
 *	  iterjob's own bookkeeping runs as the bootstrap superuser (its tables
 *	  grant nothing to PUBLIC); a job's filter and action run as the job's
 *	  owner.  SECURITY_LOCAL_USERID_CHANGE makes PostgreSQL refuse SET ROLE,
 *	  RESET ROLE and SET SESSION AUTHORIZATION meanwhile, so user SQL cannot
 *	  switch back to the worker's own identity.  Aborting the transaction
 *	  restores the previous user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"

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
	switch_user(owner, saved);
}

void
iterjob_restore_user(const IterjobSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}
