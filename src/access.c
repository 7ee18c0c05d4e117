/*-------------------------------------------------------------------------
 *
 * access.c
 *	  Who may see and steer a job: its owner (and roles that have the
 *	  owner's privileges), superusers, and members of iterjob_admin.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "utils/acl.h"
#include "utils/syscache.h"

#include "iterjob.h"

bool
iterjob_may_steer(Oid caller, Oid owner)
{
	Oid			admin;

	if (superuser_arg(caller) || has_privs_of_role(caller, owner))
		return true;
	admin = get_role_oid("iterjob_admin", true);
	return OidIsValid(admin) && has_privs_of_role(caller, admin);
}

void
iterjob_check_job_access(Oid caller, int64 job_id, Oid owner, const char *what)
{
	if (!iterjob_may_steer(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s iterjob job " INT64_FORMAT, what, job_id),
				 errdetail("Only the job's owner, members of iterjob_admin and superusers may %s it.", what)));
}

PG_FUNCTION_INFO_V1(iterjob_can_steer);

/* SQL: may the current user see and steer jobs owned by owner? */
Datum
iterjob_can_steer(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(iterjob_may_steer(GetUserId(), PG_GETARG_OID(0)));
}

/*
 * A job runs as its owner, who must still exist and have LOGIN: a role
 * that is dropped or locked out (ALTER ROLE ... NOLOGIN) stops its jobs.
 * job_id is 0 at enqueue.
 */
void
iterjob_check_owner(Oid owner, int64 job_id)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	bool		canlogin;
	char	   *name;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u that owns iterjob job " INT64_FORMAT " does not exist",
						owner, job_id)));
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	name = pstrdup(NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
	ReleaseSysCache(tup);
	if (!canlogin)
	{
		if (job_id == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" cannot own iterjob jobs because it does not have the LOGIN attribute", name),
					 errdetail("A job runs as the role that enqueues it (current_user)."),
					 errhint("Enqueue as a role with LOGIN, for example after RESET ROLE.")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" that owns iterjob job " INT64_FORMAT " no longer has the LOGIN attribute", name, job_id)));
	}
}
