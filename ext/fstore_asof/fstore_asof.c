/*
 * fstore_asof: the point-in-time join of fstore as one merge pass (strategy 'asof').
 *
 *   select * from fstore_asof.asof_join(spine_query, history_query, keys, ttl)
 *     as m(pass columns..., features...)
 *
 * spine_query returns (pass_1 .. pass_p, key_1 .. key_k, t timestamptz), sorted by
 * (key_1 .. key_k asc, t desc); history_query returns (key_1 .. key_k, event_time
 * timestamptz, feature_1 .. feature_m), sorted by (keys asc, event_time desc, commit
 * desc): the order of fstore's covering index (keys, event_time desc, _commit_id desc).
 * For each spine row, its match is the first history row at or after the cursor with the
 * same keys and event_time <= t: the latest at or before t, ties to the latest commit
 * (DESIGN.md). The history cursor only moves forward: one pass over each input. A NULL key
 * or time matches nothing; with a TTL, a match older than t - ttl is no match. One output
 * row per spine row: its pass columns and the match's features (NULLs without a match).
 *
 * Both queries run through SPI as the caller (the function is SECURITY INVOKER) and
 * read-only (SPI refuses any statement that writes): row-level security and privileges
 * apply as to the caller's own SELECT. Keys compare with their type's default btree order
 * and the history column's collation: the order both queries are sorted in (the builder
 * puts the history key's collation on the spine's keys).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/sortsupport.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_MODULE_MAGIC;

#define FETCH_ROWS 4096

typedef struct Stream
{
	const char *what;			/* "spine" or "history", for errors */
	Portal		portal;
	SPITupleTable *rows;
	uint64		count;			/* rows in this batch */
	uint64		pos;			/* the current row in it */
	bool		last_batch;		/* no more rows after this batch */
	bool		started;
	TupleDesc	desc;
	int			eager;			/* columns deformed on every row (the rest: stream_deform_all) */
	Datum	   *values;			/* the current row, deformed */
	bool	   *nulls;
} Stream;

static void
stream_open(Stream *s, const char *what, const char *query)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(query, 0, NULL, CURSOR_OPT_NO_SCROLL);

	if (plan == NULL)
		elog(ERROR, "fstore_asof: the %s query does not prepare: %s", what, SPI_result_code_string(SPI_result));
	s->what = what;
	/* read_only: SPI refuses a statement that writes, and uses the caller's snapshot */
	s->portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	s->desc = s->portal->tupDesc;
	if (s->desc == NULL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("fstore_asof: the %s query returns no rows", what)));
	s->eager = s->desc->natts;
	s->values = palloc(sizeof(Datum) * s->desc->natts);
	s->nulls = palloc(sizeof(bool) * s->desc->natts);
	s->rows = NULL;
	s->count = 0;
	s->pos = 0;
	s->last_batch = false;
	s->started = false;
}

/* Move to the next row and deform it; false at the end. */
static bool
stream_next(Stream *s)
{
	if (s->started)
		s->pos++;
	s->started = true;
	if (s->rows == NULL || s->pos >= s->count)
	{
		if (s->last_batch)
			return false;
		if (s->rows != NULL)
			SPI_freetuptable(s->rows);
		SPI_cursor_fetch(s->portal, true, FETCH_ROWS);
		s->rows = SPI_tuptable;
		s->count = SPI_processed;
		s->pos = 0;
		s->last_batch = s->count < FETCH_ROWS;
		if (s->count == 0)
			return false;
	}
	if (s->eager == s->desc->natts)
		heap_deform_tuple(s->rows->vals[s->pos], s->rows->tupdesc, s->values, s->nulls);
	else
	{
		int			i;

		for (i = 0; i < s->eager; i++)	/* leading columns: cached offsets, cheap */
			s->values[i] = heap_getattr(s->rows->vals[s->pos], i + 1, s->rows->tupdesc, &s->nulls[i]);
	}
	return true;
}

/* Deform every column of the current row (a history row that matched). */
static void
stream_deform_all(Stream *s)
{
	if (s->eager < s->desc->natts)
		heap_deform_tuple(s->rows->vals[s->pos], s->rows->tupdesc, s->values, s->nulls);
}

static void
check_type(TupleDesc desc, int att, Oid expected, const char *what, const char *role)
{
	Oid			got = TupleDescAttr(desc, att)->atttypid;

	if (got != expected)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("fstore_asof: column %d of the %s query (%s) is %s, not %s",
							   att + 1, what, role, format_type_be(got), format_type_be(expected))));
}

PG_FUNCTION_INFO_V1(fstore_asof_join);

Datum
fstore_asof_join(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *spine_query;
	char	   *history_query;
	int			nkeys;
	Interval   *ttl = NULL;
	TupleDesc	outdesc;
	Tuplestorestate *store;
	MemoryContext per_query;
	MemoryContext caller;
	MemoryContext row_context;
	Stream		spine;
	Stream		history;
	SortSupportData *keys;
	int			npass;
	int			nfeatures;
	int			stime;
	Datum	   *out_values;
	bool	   *out_nulls;
	bool		have_history;
	int			i;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || (rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("fstore_asof.asof_join must be called in FROM, with a column definition list")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("fstore_asof.asof_join needs a spine query, a history query and a key count")));
	nkeys = PG_GETARG_INT32(2);
	if (nkeys < 1 || nkeys > 32)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("fstore_asof.asof_join: between 1 and 32 keys, not %d", nkeys)));
	if (!PG_ARGISNULL(3))
		ttl = PG_GETARG_INTERVAL_P(3);
	if (rsinfo->expectedDesc == NULL)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("fstore_asof.asof_join needs a column definition list")));

	per_query = rsinfo->econtext->ecxt_per_query_memory;
	caller = MemoryContextSwitchTo(per_query);
	spine_query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	history_query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	outdesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	store = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(caller);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "fstore_asof: SPI_connect failed");
	stream_open(&spine, "spine", spine_query);
	stream_open(&history, "history", history_query);

	/* the shapes: spine (pass..., keys, t), history (keys, event_time, features...) */
	npass = spine.desc->natts - nkeys - 1;
	nfeatures = history.desc->natts - nkeys - 1;
	if (npass < 0 || nfeatures < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("fstore_asof: the spine query needs %d keys and a time, the history query %d keys and an event time",
							   nkeys, nkeys)));
	if (outdesc->natts != npass + nfeatures)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
						errmsg("fstore_asof: the column definition list has %d columns, the queries give %d",
							   outdesc->natts, npass + nfeatures)));
	stime = npass + nkeys;
	check_type(spine.desc, stime, TIMESTAMPTZOID, "spine", "its time");
	check_type(history.desc, nkeys, TIMESTAMPTZOID, "history", "its event time");
	for (i = 0; i < npass; i++)
		check_type(spine.desc, i, TupleDescAttr(outdesc, i)->atttypid, "spine", "a column passed through");
	for (i = 0; i < nfeatures; i++)
		check_type(history.desc, nkeys + 1 + i, TupleDescAttr(outdesc, npass + i)->atttypid, "history", "a feature");

	keys = palloc0(sizeof(SortSupportData) * nkeys);
	for (i = 0; i < nkeys; i++)
	{
		Form_pg_attribute hattr = TupleDescAttr(history.desc, i);
		TypeCacheEntry *type;

		check_type(spine.desc, npass + i, hattr->atttypid, "spine", "a key");
		type = lookup_type_cache(hattr->atttypid, TYPECACHE_LT_OPR);
		if (!OidIsValid(type->lt_opr))
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
							errmsg("fstore_asof: key type %s has no ordering", format_type_be(hattr->atttypid))));
		keys[i].ssup_cxt = CurrentMemoryContext;
		keys[i].ssup_collation = hattr->attcollation;
		keys[i].ssup_nulls_first = false;
		PrepareSortSupportFromOrderingOp(type->lt_opr, &keys[i]);
	}

	out_values = palloc(sizeof(Datum) * (npass + nfeatures));
	out_nulls = palloc(sizeof(bool) * (npass + nfeatures));
	row_context = AllocSetContextCreate(CurrentMemoryContext, "fstore_asof row", ALLOCSET_SMALL_SIZES);

	history.eager = nkeys + 1;	/* keys and event time; the features of a match only */
	have_history = stream_next(&history);
	while (stream_next(&spine))
	{
		bool		matched = false;
		MemoryContext outer;

		CHECK_FOR_INTERRUPTS();
		outer = MemoryContextSwitchTo(row_context);
		if (!spine.nulls[stime])
		{
			TimestampTz t = DatumGetTimestampTz(spine.values[stime]);
			bool		null_key = false;

			for (i = 0; i < nkeys; i++)
				null_key |= spine.nulls[npass + i];
			while (!null_key && have_history)
			{
				int			cmp = 0;

				for (i = 0; i < nkeys && cmp == 0; i++)
					cmp = ApplySortComparator(history.values[i], false, spine.values[npass + i], false, &keys[i]);
				if (cmp < 0 || (cmp == 0 && DatumGetTimestampTz(history.values[nkeys]) > t))
				{
					have_history = stream_next(&history);
					continue;
				}
				if (cmp == 0)
				{
					matched = true;
					if (ttl != NULL)
					{
						TimestampTz low = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																				  TimestampTzGetDatum(t),
																				  PointerGetDatum(ttl)));

						matched = DatumGetTimestampTz(history.values[nkeys]) >= low;
					}
				}
				break;
			}
		}
		MemoryContextSwitchTo(outer);
		if (matched)
			stream_deform_all(&history);
		for (i = 0; i < npass; i++)
		{
			out_values[i] = spine.values[i];
			out_nulls[i] = spine.nulls[i];
		}
		for (i = 0; i < nfeatures; i++)
		{
			out_values[npass + i] = matched ? history.values[nkeys + 1 + i] : (Datum) 0;
			out_nulls[npass + i] = matched ? history.nulls[nkeys + 1 + i] : true;
		}
		tuplestore_putvalues(store, outdesc, out_values, out_nulls);
		MemoryContextReset(row_context);
	}

	SPI_cursor_close(spine.portal);
	SPI_cursor_close(history.portal);
	SPI_finish();

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = outdesc;
	return (Datum) 0;
}
