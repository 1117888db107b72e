-- The one commit pipeline: rows staged in a (temporary) table become one commit of
-- a feature group: validation, offline append, online newer-only upsert, commit
-- record and statistics, all in the caller's transaction (readers see all of it or none).

set role fstore_control;

-- How statistics treat a column, from its type: numeric, temporal, vector or categorical.
create function fstore.statistics_kind(p_type regtype) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
  select case
    when p_type in ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'real'::regtype,
                    'double precision'::regtype, 'numeric'::regtype) then 'numeric'
    when p_type in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) then 'temporal'
    when (select t.typname from pg_type t where t.oid = p_type) = 'vector' then 'vector'
    else 'categorical'
  end
$$;

-- Per-column statistics of one commit's rows, computed in SQL.
--
-- Returns {column: stats} for every key and feature column and the event-time column.
-- Every column: kind, rows (rows in the batch), count (non-NULL values), nulls,
-- completeness (count / rows), distinct, sampled, sample_rows.
--   numeric     min, max, mean, stddev (SAMPLE standard deviation, n - 1, as stddev_samp),
--               percentiles {p1, p5, p25, p50, p75, p95, p99} (percentile_cont: linear
--               interpolation between closest ranks, as numpy's default), histogram
--               {edges: 21 values, counts: 20} of equal-width bins over [min, max], the last
--               bin closed (as numpy.histogram; when min = max the range is min +- 0.5)
--   temporal    min, max
--   categorical top_values [{value (as text), count}], the 10 most frequent, ties by value
--   vector      dims {min, max}, norm {min, mean, max} of the L2 norm (vector_norm)
--
-- Cost: one pass over the batch for count, nulls, min, max, mean, stddev and vector
-- summaries (exact, always). The order statistics (distinct, percentiles, histogram,
-- top values) are exact when the batch has at most options.statistics_sample_rows rows
-- (default 100000); above that they come from a uniform random sample of about that
-- many rows (one more pass), are flagged "sampled": true, histogram and top-value
-- counts are the sample's, and distinct is estimated with the Haas-Stokes Duj1
-- estimator that ANALYZE uses.
create function fstore.batch_statistics(p_feature_group_id bigint, p_batch regclass) returns jsonb
language plpgsql volatile
set search_path = pg_catalog, public, fstore, pg_temp
set work_mem = '64MB'
set jit = off  -- compiling costs more than it saves on these short, wide aggregates
as $$
declare
  c_pct constant float8[] := '{0.01,0.05,0.25,0.5,0.75,0.95,0.99}';
  c_pct_names constant text[] := '{p1,p5,p25,p50,p75,p95,p99}';
  c_bins constant integer := 20;
  c_top constant integer := 10;
  v_fg fstore.feature_groups;
  v_limit bigint;
  v_col record;
  v_kinds jsonb := '{}';
  v_parts text[] := '{}';
  v_pct_parts text[] := '{}';
  v_moments jsonb;
  v_rows bigint;
  v_source text;
  v_sample_rows bigint;
  v_sampled boolean;
  v_name text;
  v_kind text;
  v_s jsonb;
  v_count bigint;
  v_lo float8;
  v_hi float8;
  v_group record;
  v_distinct float8;
  v_pcts jsonb;
  v_result jsonb := '{}';
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_limit := greatest(coalesce((v_fg.options->>'statistics_sample_rows')::bigint, 100000), 1);

  -- pass 1 over the whole batch: the exact moments of every column
  for v_col in
    select a.attname::text as name, fstore.statistics_kind(a.atttypid) as kind
      from pg_attribute a
     where a.attrelid = p_batch and a.attnum > 0 and not a.attisdropped
       and (a.attname::text = v_fg.event_time
            or a.attname::text in (select f.name from fstore.features f where f.feature_group_id = p_feature_group_id))
     order by a.attnum
  loop
    v_kinds := v_kinds || jsonb_build_object(v_col.name, v_col.kind);
    v_parts := v_parts || case v_col.kind
      when 'numeric' then format(
        'jsonb_build_object(%L, jsonb_build_object(''count'', count(%2$I), ''min'', min(%2$I), ''max'', max(%2$I),'
        ' ''mean'', avg(%2$I::float8), ''stddev'', stddev_samp(%2$I::float8)))', v_col.name, v_col.name)
      when 'temporal' then format(
        'jsonb_build_object(%L, jsonb_build_object(''count'', count(%2$I), ''min'', min(%2$I), ''max'', max(%2$I)))',
        v_col.name, v_col.name)
      when 'vector' then format(
        'jsonb_build_object(%L, jsonb_build_object(''count'', count(%2$I),'
        ' ''dims'', jsonb_build_object(''min'', min(vector_dims(%2$I)), ''max'', max(vector_dims(%2$I))),'
        ' ''norm'', jsonb_build_object(''min'', min(vector_norm(%2$I)), ''mean'', avg(vector_norm(%2$I)),'
        ' ''max'', max(vector_norm(%2$I)))))', v_col.name, v_col.name)
      else format('jsonb_build_object(%L, jsonb_build_object(''count'', count(%I)))', v_col.name, v_col.name)
    end;
    if v_col.kind = 'numeric' then
      v_pct_parts := v_pct_parts || format(
        'jsonb_build_object(%L, percentile_cont($1) within group (order by %I::float8))', v_col.name, v_col.name);
    end if;
  end loop;
  if cardinality(v_parts) = 0 then
    return '{}';
  end if;
  execute format('select count(*), %s from %s', array_to_string(v_parts, ' || '), p_batch)
    into v_rows, v_moments;

  -- the relation the order statistics read: the batch itself, or a sample of it
  v_sampled := v_rows > v_limit;
  if v_sampled then
    if to_regclass('pg_temp._fstore_stats_sample') is not null then
      drop table pg_temp._fstore_stats_sample;
    end if;
    execute format('create temp table _fstore_stats_sample on commit drop as select * from %s where random() < $1',
                   p_batch) using v_limit::float8 / v_rows;
    get diagnostics v_sample_rows = row_count;
    v_source := 'pg_temp._fstore_stats_sample';
  else
    v_source := p_batch::text;
  end if;

  -- percentiles of every numeric column in one more pass over the source
  if cardinality(v_pct_parts) > 0 then
    execute format('select %s from %s', array_to_string(v_pct_parts, ' || '), v_source) into v_pcts using c_pct;
  end if;

  for v_name, v_kind in select key, value #>> '{}' from jsonb_each(v_kinds) loop
    v_s := v_moments->v_name;
    v_count := (v_s->>'count')::bigint;
    v_s := v_s || jsonb_build_object(
      'kind', v_kind, 'rows', v_rows, 'nulls', v_rows - v_count,
      'completeness', case when v_rows > 0 then v_count::float8 / v_rows end,
      'sampled', v_sampled, 'sample_rows', case when v_sampled then v_sample_rows end);

    if v_kind = 'numeric' then
      v_s := v_s || jsonb_build_object('percentiles',
        (select jsonb_object_agg(n, (v_pcts->v_name)->(i::int - 1))
           from unnest(c_pct_names) with ordinality p(n, i) where jsonb_typeof(v_pcts->v_name) = 'array'));
      v_lo := (v_s->>'min')::float8;
      v_hi := (v_s->>'max')::float8;
      if v_lo = v_hi then
        v_lo := v_lo - 0.5;
        v_hi := v_hi + 0.5;
      end if;
    end if;

    if v_kind <> 'vector' then
      -- one grouped pass per column: distinct count, singletons (for the estimate),
      -- and the histogram (numeric) or the top values (categorical)
      execute format(
        'with g as (select %1$s as v, count(*) as n from %2$s where %3$I is not null group by 1)
         select count(*) as d, count(*) filter (where n = 1) as f1, coalesce(sum(n), 0) as sn, %4$s as top,
                %5$s as histogram
           from g',
        case when v_kind = 'categorical' then format('%I::text', v_name) else format('%I', v_name) end,
        v_source, v_name,
        case when v_kind = 'categorical' then
          '(select jsonb_agg(jsonb_build_object(''value'', t.v, ''count'', t.n) order by t.n desc, t.v)
              from (select v, n from g order by n desc, v limit $1) t)'
        else 'null::jsonb' end,
        case when v_kind = 'numeric' and v_lo < v_hi and v_lo > '-infinity' and v_hi < 'infinity' then
          '(select jsonb_build_object(
              ''edges'', (select jsonb_agg($2 + ($3 - $2) * i / $4 order by i) from generate_series(0, $4) i),
              ''counts'', (select jsonb_agg(coalesce(h.n, 0) order by i) from generate_series(1, $4) i
                            left join (select least(width_bucket(v::float8, $2, $3, $4), $4) as b, sum(n) as n
                                         from g group by 1) h on h.b = i)))'
        else 'null::jsonb' end)
        into v_group using c_top, v_lo, v_hi, c_bins;
      if v_sampled then
        -- Haas and Stokes' Duj1 estimator: n*d / (n - f1 + f1*n/N), within [d, N]
        v_distinct := case when v_group.sn = 0 then 0
          else v_group.sn * v_group.d / (v_group.sn - v_group.f1 + v_group.f1 * v_group.sn::float8 / v_count) end;
        v_s := v_s || jsonb_build_object('distinct', round(least(greatest(v_distinct, v_group.d), v_count)));
      else
        v_s := v_s || jsonb_build_object('distinct', v_group.d);
      end if;
      if v_kind = 'categorical' then
        v_s := v_s || jsonb_build_object('top_values', coalesce(v_group.top, '[]'));
      elsif v_kind = 'numeric' then
        v_s := v_s || jsonb_build_object('histogram', v_group.histogram);
      end if;
    end if;
    v_result := v_result || jsonb_build_object(v_name, v_s);
  end loop;
  return v_result;
end $$;

-- True when a feature group declares validation rules (options.validation).
create function fstore.has_validation_rules(p_options jsonb) returns boolean
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select coalesce(jsonb_typeof(p_options->'validation') in ('array', 'object')
                  and p_options->'validation' not in ('[]'::jsonb, '{}'::jsonb), false)
$$;

-- A strict validation failure: SQLSTATE 23514 naming every failing rule and column
-- (the failures as JSON in the detail). validate_batch and validate_commit raise it.
create function fstore.raise_validation_failure(p_fg fstore.feature_groups, p_failures jsonb) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  v_message text;
begin
  select string_agg(case when f->>'rule' = 'row_count_min'
                         then format('rule row_count_min: %s rows, at least %s required', f->>'actual', f->>'expected')
                         else format('column %s, rule %s: %s failing rows', f->>'column', f->>'rule', f->>'failing_rows')
                    end, '; ')
    into v_message from jsonb_array_elements(p_failures) f;
  raise exception 'validation failed for feature group %.% version %: %', p_fg.project, p_fg.name, p_fg.version,
    v_message using errcode = '23514',
    detail = p_failures::text,
    hint = 'fix the data, or set validation_policy to warn to commit and record the failures';
end $$;

-- Validation of one commit against the feature group's rules (options.validation) and
-- policy (options.validation_policy, default strict), by fstore.validate_batch.
--
-- Rules about the batch as a whole (row_count_min, unique) judge the staged rows, before
-- merge or incremental filtering: a re-run of the same data is judged as its first run
-- was (a re-run with nothing new does not fail row_count_min). Rules about single rows
-- (not_null, min, max, accepted_values, regex) judge the rows this commit writes (p_batch,
-- after filtering): rows already stored are not judged again, so a tightened rule
-- applies to new rows. Without filtering (p_batch = p_staging) it is one validate_batch
-- call. Returns {"passed", "policy", "rows" (rows written and checked by the row rules),
-- "staged_rows" (when filtered and batch rules exist), "rules", "failures"}; in strict
-- mode a failure raises SQLSTATE 23514 naming every failing rule and column.
create function fstore.validate_commit(p_feature_group_id bigint, p_staging regclass, p_batch regclass)
returns jsonb language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_batch_rules constant text[] := '{row_count_min,unique}';
  v_fg fstore.feature_groups;
  v_rules jsonb;
  v_policy text;
  v_staged jsonb;
  v_written jsonb;
  v_failures jsonb;
begin
  select * into v_fg from fstore.feature_groups where id = p_feature_group_id;
  if not fstore.has_validation_rules(v_fg.options) then
    return '{}';
  end if;
  if to_regprocedure('fstore.validate_batch(bigint, regclass, jsonb, text)') is null then
    return jsonb_build_object('skipped', 'fstore.validate_batch is not installed');
  end if;
  v_rules := v_fg.options->'validation';
  v_policy := coalesce(nullif(btrim(v_fg.options->>'validation_policy'), ''), 'strict');
  if p_batch = p_staging or jsonb_typeof(v_rules) <> 'array' then
    -- one relation (or rules validate_batch refuses with its own message)
    return fstore.validate_batch(p_feature_group_id, p_staging, v_rules, v_policy);
  end if;

  -- two parts judged with policy warn, then one verdict over both
  if exists (select 1 from jsonb_array_elements(v_rules) r where r->>'rule' = any(c_batch_rules)) then
    v_staged := fstore.validate_batch(p_feature_group_id, p_staging,
      (select jsonb_agg(r order by i) from jsonb_array_elements(v_rules) with ordinality e(r, i)
        where r->>'rule' = any(c_batch_rules)), 'warn');
  end if;
  v_written := fstore.validate_batch(p_feature_group_id, p_batch,
    coalesce((select jsonb_agg(r order by i) from jsonb_array_elements(v_rules) with ordinality e(r, i)
               where not coalesce(r->>'rule' = any(c_batch_rules), false)), '[]'), 'warn');
  v_failures := coalesce(v_staged->'failures', '[]') || (v_written->'failures');

  if jsonb_array_length(v_failures) > 0 and v_policy = 'strict' then
    perform fstore.raise_validation_failure(v_fg, v_failures);
  end if;
  return jsonb_build_object('passed', jsonb_array_length(v_failures) = 0, 'policy', v_policy,
                            'rows', v_written->'rows', 'rules', jsonb_array_length(v_rules), 'failures', v_failures)
         || case when v_staged is not null then jsonb_build_object('staged_rows', v_staged->'rows') else '{}' end;
end $$;

-- Report one step of a commit (RAISE DEBUG: seen with client_min_messages = debug1, e.g.
-- "fstore commit 42: offline_append 5120 ms bulk, 1 index dropped") and return the time
-- the next step starts.
create function fstore.commit_step_done(p_commit bigint, p_step text, p_started timestamptz, p_detail text default '')
returns timestamptz language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
  raise debug 'fstore commit %: % % ms%', p_commit, p_step,
    round(extract(epoch from clock_timestamp() - p_started) * 1000), coalesce(' ' || nullif(p_detail, ''), '');
  return clock_timestamp();
end $$;

-- Commit the rows staged in p_staging to a feature group; returns the commit id. A commit
-- that writes no rows is recorded (with its validation) unless p_record_empty is false:
-- then nothing is recorded and it returns NULL (dbt's no-op runs leave no trace).
--
-- Steps, all in the caller's transaction (readers see all of a commit or none of it):
--  1. one commit at a time per feature group: the group's row lock (fstore.lock_feature_group,
--     which nobody but its writers can take), held until the transaction ends, so commit ids follow commit order and a merge or
--     incremental commit sees the rows of the one before it (in READ COMMITTED, the
--     default of dbt and of fstore's Python API; a REPEATABLE READ transaction's
--     snapshot predates the wait, so merge there can still duplicate rows);
--  2. mode: append (all rows), merge (rows whose (keys, event_time) are not stored yet,
--     one per (keys, event_time)) or incremental (rows after the latest committed event
--     time);
--  3. validation (fstore.validate_commit): a strict failure raises 23514, nothing written;
--  4. offline append. Small batches go in index order (keys, event_time desc), each row
--     maintaining the point-in-time index. A large batch (at least as many heap bytes
--     as the offline table already holds; measured: rebuilding wins up to about twice
--     that table size, so this leaves a margin) takes the bulk path: the table's
--     non-unique indexes are dropped, the rows appended, and the indexes recreated
--     from their own definitions (pg_get_indexdef, same names), built bottom-up from a
--     sort (maintenance_work_mem at least 1GB, parallel maintenance workers as the
--     server allows). DROP INDEX holds an ACCESS EXCLUSIVE lock on the offline table
--     until the transaction ends: readers of THIS feature group's offline table wait
--     for the commit (readers of its online table and of other groups do not). The lock
--     is waited for 2 s at most (past deadlock_timeout, so an autovacuum of the table is
--     cancelled): when the table is still being read, the commit goes row by row rather
--     than queue behind the readers and hold up every later one. The DDL
--     needs the table's owner: a caller acting as the project's owner role does it
--     directly, a member of that role (a Data Owner) does it under SET LOCAL ROLE
--     <project>__owner for the DDL only (the rows are written as the caller); any other
--     writer (a read-write share's Data Owner) takes the per-row path;
--  5. online newer-only upsert: an older event_time never replaces a newer one, ties go
--     to the later commit;
--  6. statistics (fstore.batch_statistics) and the commit record (fstore.finish_commit).
-- With client_min_messages = debug1 each step reports its duration (RAISE DEBUG).
create function fstore.commit_feature_rows(
  p_feature_group_id bigint, p_staging regclass, p_mode text default 'append',
  p_source text default 'python', p_validation jsonb default '{}', p_record_empty boolean default true
) returns bigint language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set work_mem = '64MB'
set jit = off
as $$
declare
  c_bulk_maintenance_work_mem constant bigint := 1024 * 1024 * 1024;
  c_bulk_lock_wait constant text := '2s';  -- more than deadlock_timeout (1s): autovacuum gets cancelled
  v_fg fstore.feature_groups;
  v_commit bigint;
  v_cols text;
  v_keys text;
  v_key_match text;
  v_key_join text;
  v_updates text;
  v_batch regclass := p_staging;
  v_offline regclass;
  v_owner text;
  v_bulk boolean;
  v_as_owner boolean := false;
  v_caller_role text;
  v_caller_maintenance_work_mem text;
  v_caller_lock_timeout text := current_setting('lock_timeout');
  v_detail text := 'row by row';
  v_index_names text[];
  v_index_defs text[];
  v_i integer;
  v_rows bigint;
  v_online_rows bigint := 0;
  v_min timestamptz;
  v_max timestamptz;
  v_watermark timestamptz;
  v_stats jsonb := '{}';
  v_validation jsonb := coalesce(p_validation, '{}');
  v_step timestamptz;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  if p_mode is null or p_mode not in ('append', 'merge', 'incremental') then
    raise exception 'invalid commit mode %: use append, merge or incremental', coalesce(quote_literal(p_mode), 'NULL')
      using errcode = '22023';
  end if;
  v_step := clock_timestamp();
  -- one commit at a time per feature group (step 1 above), until this transaction ends
  perform fstore.lock_feature_group(p_feature_group_id);
  v_commit := fstore.begin_commit(p_feature_group_id, p_source);
  v_step := fstore.commit_step_done(v_commit, 'lock', v_step);

  select string_agg(format('%I', name), ', ' order by position) into v_cols
    from fstore.features where feature_group_id = p_feature_group_id;
  select string_agg(format('%I', k), ', '), string_agg(format('o.%1$I = s.%1$I', k), ' and '),
         string_agg(format('s.%1$I = l.%1$I', k), ' and ')
    into v_keys, v_key_match, v_key_join from unnest(v_fg.entity_keys) k;
  v_offline := format('%I.%I', v_fg.project, v_fg.offline_table)::regclass;

  if p_mode = 'merge' then
    -- re-running the same data adds nothing: skip rows whose (keys, event_time) exist
    if to_regclass('pg_temp._fstore_batch') is not null then drop table pg_temp._fstore_batch; end if;
    execute format(
      'create temp table _fstore_batch on commit drop as
         select distinct on (%1$s, %2$I) %3$s, %2$I from %4$s s
          where not exists (select 1 from %5$s o where %6$s and o.%2$I = s.%2$I)',
      v_keys, v_fg.event_time, v_cols, p_staging, v_offline, v_key_match);
    v_batch := 'pg_temp._fstore_batch'::regclass;
  elsif p_mode = 'incremental' then
    select max(max_event_time) into v_watermark from fstore.commits
     where feature_group_id = p_feature_group_id and id <> v_commit;
    if v_watermark is not null then
      if to_regclass('pg_temp._fstore_batch') is not null then drop table pg_temp._fstore_batch; end if;
      execute format('create temp table _fstore_batch on commit drop as
                        select %1$s, %2$I from %3$s where %2$I > $1', v_cols, v_fg.event_time, p_staging)
        using v_watermark;
      v_batch := 'pg_temp._fstore_batch'::regclass;
    end if;
  end if;
  v_step := fstore.commit_step_done(v_commit, 'select', v_step, p_mode);

  -- validation before anything is written: a strict failure raises (SQLSTATE 23514)
  if fstore.has_validation_rules(v_fg.options) then
    v_validation := fstore.validate_commit(p_feature_group_id, p_staging, v_batch);
  end if;
  v_step := fstore.commit_step_done(v_commit, 'validation', v_step);

  -- offline append: the bulk path for a batch as large as the table, else row by row
  v_owner := v_fg.project || '__owner';
  v_bulk := pg_relation_size(v_batch) > 0 and pg_relation_size(v_batch) >= pg_relation_size(v_offline);
  if v_bulk and current_user::text <> v_owner then
    v_as_owner := pg_has_role(session_user, v_owner, 'MEMBER');
    v_bulk := v_as_owner;
  end if;
  if v_bulk then
    if v_as_owner then
      v_caller_role := current_setting('role');
      perform set_config('role', v_owner, true);
    end if;
    -- the lock DROP INDEX needs, waited for c_bulk_lock_wait at most: queued behind a long
    -- read, this commit would hold up every later reader (and a reader waiting for another
    -- of its own connections, as sharded point-in-time joins do, would never finish)
    begin
      perform set_config('lock_timeout', c_bulk_lock_wait, true);
      execute format('lock table %s in access exclusive mode', v_offline);
    exception when lock_not_available then
      v_bulk := false;
      v_detail := 'row by row: the offline table is in use';
    end;
    perform set_config('lock_timeout', v_caller_lock_timeout, true);
    if v_bulk then
      select array_agg(c.relname::text order by c.relname), array_agg(pg_get_indexdef(i.indexrelid) order by c.relname)
        into v_index_names, v_index_defs
        from pg_index i join pg_class c on c.oid = i.indexrelid
       where i.indrelid = v_offline and i.indisvalid and not i.indisunique
         and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid);
      for v_i in 1 .. coalesce(cardinality(v_index_names), 0) loop
        execute format('drop index %I.%I', v_fg.project, v_index_names[v_i]);
      end loop;
    end if;
    if v_as_owner then
      perform set_config('role', v_caller_role, true);
    end if;
    v_bulk := v_bulk and v_index_names is not null;
  end if;
  if v_bulk then
    execute format('insert into %1$s (%2$s, %3$I, _commit_id) select %2$s, %3$I, $1 from %4$s',
                   v_offline, v_cols, v_fg.event_time, v_batch) using v_commit;
    get diagnostics v_rows = row_count;
    v_step := fstore.commit_step_done(v_commit, 'offline_append', v_step,
                                      format('bulk, %s index(es) dropped', cardinality(v_index_names)));
    if v_as_owner then
      perform set_config('role', v_owner, true);
    end if;
    -- a SET LOCAL inside a function lasts until the transaction ends: put it back ourselves
    v_caller_maintenance_work_mem := current_setting('maintenance_work_mem');
    if pg_size_bytes(v_caller_maintenance_work_mem) < c_bulk_maintenance_work_mem then
      perform set_config('maintenance_work_mem', (c_bulk_maintenance_work_mem / 1024)::text || 'kB', true);
    end if;
    for v_i in 1 .. cardinality(v_index_defs) loop
      execute v_index_defs[v_i];
    end loop;
    perform set_config('maintenance_work_mem', v_caller_maintenance_work_mem, true);
    if v_as_owner then
      perform set_config('role', v_caller_role, true);
    end if;
    v_step := fstore.commit_step_done(v_commit, 'offline_index_build', v_step);
  else
    -- in index order (keys, event_time desc): far fewer index pages touched
    execute format('insert into %1$s (%2$s, %3$I, _commit_id) select %2$s, %3$I, $1 from %4$s order by %5$s, %3$I desc',
                   v_offline, v_cols, v_fg.event_time, v_batch, v_keys) using v_commit;
    get diagnostics v_rows = row_count;
    v_step := fstore.commit_step_done(v_commit, 'offline_append', v_step, v_detail);
  end if;

  if v_rows = 0 and not coalesce(p_record_empty, true) then
    -- nothing new (a re-run, a merge of stored rows, an incremental run past nothing): no empty commit
    perform fstore.abandon_commit(v_commit);
    v_step := fstore.commit_step_done(v_commit, 'nothing to commit', v_step);
    return null;
  end if;

  if v_fg.online and v_rows > 0 then
    select string_agg(format('%1$I = excluded.%1$I', name), ', ') into v_updates
      from fstore.features where feature_group_id = p_feature_group_id and not is_key;
    v_updates := concat_ws(', ', v_updates, format('%1$I = excluded.%1$I', v_fg.event_time),
                           '_commit_id = excluded._commit_id');
    if v_bulk and not exists (select 1 from pg_policy where polrelid = v_offline and not polpermissive
                                                        and polcmd in ('r', '*')) then
      -- bulk path: the point-in-time index was just rebuilt, so the latest row of every key
      -- is the first index entry of that key; a skip scan (one index probe per key) finds
      -- them without another pass over the batch. Only rows of this commit go online: a key
      -- whose latest row is older is already there. (With restrictive row policies on what
      -- the caller reads, they might not see every row: then the batch is read as below.)
      execute format(
        'with recursive k as (
           (select %5$s from %6$s order by %5$s limit 1)
           union all
           (select n.* from k cross join lateral
              (select %9$s from %6$s c where (%9$s) > (%10$s) order by %9$s limit 1) n)
         )
         insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
         select l.* from k cross join lateral
           (select %3$s, %4$I, _commit_id from %6$s c where %8$s order by %4$I desc, _commit_id desc limit 1) l
          where l._commit_id = $1
         on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
        v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, v_offline, v_updates,
        (select string_agg(format('c.%1$I = k.%1$I', k), ' and ') from unnest(v_fg.entity_keys) k),
        (select string_agg(format('c.%I', k), ', ') from unnest(v_fg.entity_keys) k),
        (select string_agg(format('k.%I', k), ', ') from unnest(v_fg.entity_keys) k))
        using v_commit;
      get diagnostics v_online_rows = row_count;
    else
      -- newer-only: an older event_time never replaces a newer one; ties go to the later commit.
      -- The latest row per key is found by hashing (max event_time per key, joined back), not by
      -- sorting the whole batch; DISTINCT ON only breaks ties inside the batch.
      execute format(
        'insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
           select distinct on (%5$s) %3$s, %4$I, $1
             from (select s.* from %6$s s
                     join (select %5$s, max(%4$I) as _latest from %6$s group by %5$s) l
                       on %8$s and s.%4$I = l._latest) s
            order by %5$s
         on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
        v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, v_batch, v_updates, v_key_join)
        using v_commit;
      get diagnostics v_online_rows = row_count;
    end if;
  end if;
  v_step := fstore.commit_step_done(v_commit, 'online_upsert', v_step, case when v_bulk then 'skip scan' end);

  if v_fg.statistics_enabled and v_rows > 0 then
    v_stats := fstore.batch_statistics(p_feature_group_id, v_batch);
    v_min := (v_stats #>> array[v_fg.event_time, 'min'])::timestamptz;
    v_max := (v_stats #>> array[v_fg.event_time, 'max'])::timestamptz;
  elsif v_rows > 0 then
    execute format('select min(%1$I), max(%1$I) from %2$s', v_fg.event_time, v_batch) into v_min, v_max;
  end if;
  perform fstore.finish_commit(v_commit, v_rows, v_online_rows, v_min, v_max, v_validation, v_stats);
  v_step := fstore.commit_step_done(v_commit, 'statistics_and_record', v_step);
  return v_commit;
end $$;

grant execute on function fstore.statistics_kind(regtype), fstore.batch_statistics(bigint, regclass),
  fstore.has_validation_rules(jsonb), fstore.validate_commit(bigint, regclass, regclass),
  fstore.raise_validation_failure(fstore.feature_groups, jsonb),
  fstore.commit_step_done(bigint, text, timestamptz, text),
  fstore.commit_feature_rows(bigint, regclass, text, text, jsonb, boolean) to public;

reset role;
