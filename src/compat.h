/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors iterjob builds against
 *	  (15 to 18), in one place.  Each guard tests PG_VERSION_NUM at the
 *	  release where the API changed, so that the majors in between build as
 *	  well as the API allows; the rest of the code is written against the
 *	  newest API, and this header supplies it on older majors.
 *
 *	  Tested: 15 and 18.  Expected to work, untested: 16 and 17.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_COMPAT_H
#define ITERJOB_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "iterjob needs PostgreSQL 15 or later"
#endif

/*
 * 18 replaced the postfix pg_attribute_noreturn() by the prefix pg_noreturn
 * (C11 _Noreturn).  Older majors get the same prefix, defined as 18 does.
 */
#if PG_VERSION_NUM < 180000 && !defined(pg_noreturn)
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define pg_noreturn _Noreturn
#elif defined(__GNUC__) || defined(__SUNPRO_C)
#define pg_noreturn __attribute__((noreturn))
#elif defined(_MSC_VER)
#define pg_noreturn __declspec(noreturn)
#else
#define pg_noreturn
#endif
#endif

/*
 * 15.1 renamed SetSingleFuncCall() InitMaterializedSRF() (and its flags
 * SRF_SINGLE_* MAT_SRF_*), keeping the old names for the rest of 15; 16
 * has only the new ones.  On 15 the old name is called: a build loads on
 * every 15 minor, 15.0 included, where one calling InitMaterializedSRF()
 * would need 15.1 at run time.  (iterjob passes no flags.)
 */
#if PG_VERSION_NUM < 160000
#include "funcapi.h"
#define InitMaterializedSRF(fcinfo, flags) SetSingleFuncCall((fcinfo), (flags))
#endif

/*
 * 16 moved a statement's permissions out of its range table into a list of
 * RTEPermissionInfo (PlannedStmt.permInfos): ExecCheckRTPerms(rtable,
 * ereport) became ExecCheckPermissions(rtable, permInfos, ereport).  The
 * permInfos argument is dropped unexpanded on older majors, so it may name
 * a field they do not have.
 */
#if PG_VERSION_NUM < 160000
#include "executor/executor.h"
#define ExecCheckPermissions(rangeTable, rteperminfos, ereport_on_violation) \
	ExecCheckRTPerms((rangeTable), (ereport_on_violation))
#endif

/*
 * 16 added stringToQualifiedNameList's escontext (soft errors); NULL
 * throws, as older majors always do.
 */
#if PG_VERSION_NUM < 160000
#include "utils/regproc.h"
#define stringToQualifiedNameList(string, escontext) \
	stringToQualifiedNameList(string)
#endif

/*
 * 17 replaced PGPROC's isBackgroundWorker (true for background workers)
 * with isRegularBackend (true for client backends only).  A process that
 * is neither autovacuum nor a background worker is a client backend's, or
 * on older majors possibly a WAL sender's.
 */
#if PG_VERSION_NUM >= 170000
#define ITERJOB_PROC_IS_CLIENT(proc) ((proc)->isRegularBackend)
#else
#define ITERJOB_PROC_IS_CLIENT(proc) (!(proc)->isBackgroundWorker)
#endif

/*
 * 18 added RelationGetPrimaryKeyIndex's deferrable_ok.  Older majors never
 * return a deferrable primary key (RelationGetIndexList skips indexes that
 * are not immediate), which is deferrable_ok = false.
 */
#if PG_VERSION_NUM < 180000
#include "utils/relcache.h"
#define RelationGetPrimaryKeyIndex(relation, deferrable_ok) \
	RelationGetPrimaryKeyIndex(relation)
#endif

/*
 * 18's PG_MODULE_MAGIC_EXT names the library and its version, which
 * pg_get_loaded_modules() shows; older majors have the plain magic block.
 * (ITERJOB_SCHEMA_VERSION comes from iterjob.h, where this is used.)
 */
#if PG_VERSION_NUM >= 180000
#define ITERJOB_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "iterjob", .version = ITERJOB_SCHEMA_VERSION)
#else
#define ITERJOB_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * 17 added custom wait events (WaitEventExtensionNew): iterjob's waits show
 * in pg_stat_activity by name (IterjobTrailing, ...) instead of as the one
 * wait event "Extension" of older majors.
 */
#if PG_VERSION_NUM >= 170000
#define ITERJOB_HAVE_CUSTOM_WAIT_EVENTS 1
#endif

#endif							/* ITERJOB_COMPAT_H */
