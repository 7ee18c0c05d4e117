/*-------------------------------------------------------------------------
 *
 * access.c
 *	  Who may see and steer a job: its owner (and roles that have the
 *	  owner's privileges), superusers, and members of iterjob_admin.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"

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
