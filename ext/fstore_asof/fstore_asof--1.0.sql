-- fstore_asof 1.0: the ASOF merge of fstore's point-in-time join (strategy 'asof').
\echo Use "CREATE EXTENSION fstore_asof" to load this file. \quit

-- SECURITY INVOKER, STABLE: both queries run through SPI as the caller, read-only (SPI
-- refuses a statement that writes, a data-modifying CTE included), so row-level security,
-- column privileges and row policies apply to them exactly as to the caller's own SELECT.
-- It gives no right the caller does not have: anyone who may call it could run the two
-- SELECTs themselves. fstore.training_data_sql is the only writer of its arguments (every
-- identifier through format('%I')).
create function asof_join(p_spine_query text, p_history_query text, p_keys integer, p_ttl interval default null)
returns setof record
language c stable parallel unsafe
as 'MODULE_PATHNAME', 'fstore_asof_join';

comment on function asof_join(text, text, integer, interval) is
  'One pass over a spine and a history, both sorted by (keys asc, time desc): for each spine row (pass columns..., keys, t timestamptz) the first history row (keys, event_time timestamptz, features...) with the same keys and event_time <= t (the history sorted by commit desc within a time: ties to the latest commit), and with a TTL, event_time >= t - ttl; a NULL key or time matches nothing. Returns (pass columns..., features...) in spine order of the sort; a column definition list gives the types. Runs both queries as the caller, read-only.';

grant usage on schema @extschema@ to public;
grant execute on function asof_join(text, text, integer, interval) to public;
