/*-------------------------------------------------------------------------
 *
 * intervals.c
 *	  Converting interval arguments (timeouts, delays) to milliseconds,
 *	  and a WAL rate given as a size to bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/builtins.h"
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

/* the range of a job's max_wal_per_second, in bytes per second */
#define MIN_WAL_PER_SECOND ((int64) 1024)
#define MAX_WAL_PER_SECOND ((int64) 1 << 40)

/*
 * A job's max_wal_per_second (enqueue's, set's): a size per second as
 * pg_size_bytes() reads it ('20MB', '512kB', or bytes without a unit),
 * in bytes.  With zero_is_off (set()), '0' turns the limit off and
 * returns 0; otherwise a limit must be between 1kB and 1TB per second.
 */
int64
iterjob_wal_per_second_arg(text *arg, bool zero_is_off)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *input = text_to_cstring(arg);
	const char *hint = zero_is_off ?
		"Give a size of WAL per second as pg_size_bytes() reads it, such as '20MB'; '0' turns the limit off, NULL leaves it as it is." :
		"Give a size of WAL per second as pg_size_bytes() reads it, such as '20MB'; NULL sets no limit.";
	ErrorData  *edata = NULL;
	int64		bytes = 0;

	/*
	 * pg_size_bytes() only computes: its error (a data exception) is caught
	 * here to name the parameter, anything else goes on.
	 */
	PG_TRY();
	{
		bytes = DatumGetInt64(DirectFunctionCall1(pg_size_bytes, PointerGetDatum(arg)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != NULL && edata->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid max_wal_per_second: \"%s\"", input),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 errhint("%s", hint)));
	/* too big for a bigint: out of range as well */
	if (edata != NULL)
		bytes = PG_INT64_MAX;
	if (bytes < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_wal_per_second must not be negative"),
				 errdetail("Got \"%s\".", input),
				 errhint("%s", hint)));
	if (bytes == 0 && zero_is_off)
		return 0;
	if (bytes < MIN_WAL_PER_SECOND || bytes > MAX_WAL_PER_SECOND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_wal_per_second must be between 1kB and 1TB"),
				 edata ? errdetail("Got \"%s\".", input) :
				 errdetail("Got \"%s\", " INT64_FORMAT " bytes per second.", input, bytes),
				 errhint("%s", hint)));
	return bytes;
}
