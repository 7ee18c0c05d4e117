/*-------------------------------------------------------------------------
 *
 * intervals.c
 *	  Converting interval arguments (timeouts, delays) to milliseconds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/timestamp.h"

#include "iterjob.h"

/*
 * The interval in milliseconds; an error names the parameter when it is
 * negative or longer than max_ms.
 */
int64
iterjob_interval_ms(const Interval *interval, const char *name, int64 max_ms)
{
	/* in floating point first: months and days can overflow microseconds */
	double		approx = (double) interval->time +
	(double) interval->day * USECS_PER_DAY +
	(double) interval->month * DAYS_PER_MONTH * USECS_PER_DAY;
	int64		usecs;

	if (approx < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name)));
	if (approx / 1000.0 > (double) max_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most " INT64_FORMAT " milliseconds", name, max_ms)));
	usecs = interval->time + (int64) interval->day * USECS_PER_DAY +
		(int64) interval->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (usecs / 1000 > max_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most " INT64_FORMAT " milliseconds", name, max_ms)));
	return usecs / 1000;
}
