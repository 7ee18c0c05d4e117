/*-------------------------------------------------------------------------
 *
 * launcher_internal.h
 *	  What the files of the launcher layer (src/launcher/) share among
 *	  themselves: the launcher's watches and the shared state only they
 *	  touch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITERJOB_LAUNCHER_INTERNAL_H
#define ITERJOB_LAUNCHER_INTERNAL_H

#include "launcher/launcher.h"

/* shared_state.c */
extern int	iterjob_take_pending_databases(Oid *dboids, bool *rescan_all);
extern void iterjob_remember_prepared(Oid dboid, const char *gid);
extern bool iterjob_forget_prepared(Oid dboid, const char *gid);
extern void iterjob_notify_job_state(void);
extern void iterjob_note_activation(Oid dboid, int64 job_id);

/* worker_slot.c */
extern void iterjob_clear_held_task(int slotno);

/* idle_workers.c */
extern bool iterjob_wake_idle_worker_of_database(Oid dboid);
extern int	iterjob_dismiss_idle_workers(void);

/* batch_watchdog.c */
extern long iterjob_watch_batches(TimestampTz now);

/* foreground_watch.c */
extern long iterjob_watch_foreground(TimestampTz now);

/* foreground_pacing.c: the launcher's side */
extern long iterjob_pace_for_foreground(TimestampTz now);

#endif							/* ITERJOB_LAUNCHER_INTERNAL_H */
