-- The one commit pipeline: rows staged in a (temporary) table become one commit of
-- a feature group: offline append, online newer-only upsert, commit record and
-- statistics, all in the caller's transaction (readers see all of it or none).

set role fstore_control;

-- Per-feature statistics of one commit's rows, computed in SQL. Returns
-- {feature: {count, nulls, completeness, distinct, min, max, mean, stddev, percentiles,
--  histogram | top_values | vector summary}}.
create function fstore.batch_statistics(p_feature_group_id bigint, p_batch regclass) returns jsonb
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
begin
  return '{}'::jsonb;  -- filled in by the statistics work (issue 4)
end $$;

create function fstore.commit_feature_rows(
  p_feature_group_id bigint, p_staging regclass, p_mode text default 'append',
  p_source text default 'python', p_validation jsonb default '{}'
) returns bigint language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_commit bigint;
  v_cols text;
  v_keys text;
  v_key_match text;
  v_updates text;
  v_batch regclass := p_staging;
  v_rows bigint;
  v_online_rows bigint := 0;
  v_min timestamptz;
  v_max timestamptz;
  v_watermark timestamptz;
  v_stats jsonb := '{}';
begin
  select * into v_fg from fstore.feature_groups where id = p_feature_group_id;
  if not found then
    raise exception 'feature group % does not exist or is not visible to %', p_feature_group_id, session_user
      using errcode = 'P0002';
  end if;
  if p_mode not in ('append', 'merge', 'incremental') then
    raise exception 'invalid commit mode %: use append, merge or incremental', quote_literal(p_mode)
      using errcode = '22023';
  end if;
  v_commit := fstore.begin_commit(p_feature_group_id, p_source);

  select string_agg(format('%I', name), ', ' order by position) into v_cols
    from fstore.features where feature_group_id = p_feature_group_id;
  select string_agg(format('%I', k), ', '), string_agg(format('o.%1$I = s.%1$I', k), ' and ')
    into v_keys, v_key_match from unnest(v_fg.entity_keys) k;

  if p_mode = 'merge' then
    -- re-running the same data adds nothing: skip rows whose (keys, event_time) exist
    if to_regclass('pg_temp._fstore_batch') is not null then drop table pg_temp._fstore_batch; end if;
    execute format(
      'create temp table _fstore_batch on commit drop as
         select distinct on (%1$s, %2$I) %3$s, %2$I from %4$s s
          where not exists (select 1 from %5$I.%6$I o where %7$s and o.%2$I = s.%2$I)',
      v_keys, v_fg.event_time, v_cols, p_staging, v_fg.project, v_fg.offline_table, v_key_match);
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

  execute format('insert into %1$I.%2$I (%3$s, %4$I, _commit_id) select %3$s, %4$I, $1 from %5$s',
                 v_fg.project, v_fg.offline_table, v_cols, v_fg.event_time, v_batch) using v_commit;
  get diagnostics v_rows = row_count;
  execute format('select min(%1$I), max(%1$I) from %2$s', v_fg.event_time, v_batch) into v_min, v_max;

  if v_fg.online and v_rows > 0 then
    select string_agg(format('%1$I = excluded.%1$I', name), ', ') into v_updates
      from fstore.features where feature_group_id = p_feature_group_id and not is_key;
    v_updates := concat_ws(', ', v_updates, format('%1$I = excluded.%1$I', v_fg.event_time),
                           '_commit_id = excluded._commit_id');
    -- newer-only: an older event_time never replaces a newer one; ties go to the later commit
    execute format(
      'insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
         select distinct on (%5$s) %3$s, %4$I, $1 from %6$s order by %5$s, %4$I desc
       on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
      v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, v_batch, v_updates) using v_commit;
    get diagnostics v_online_rows = row_count;
  end if;

  if v_fg.statistics_enabled and v_rows > 0 then
    v_stats := fstore.batch_statistics(p_feature_group_id, v_batch);
  end if;
  perform fstore.finish_commit(v_commit, v_rows, v_online_rows, v_min, v_max, p_validation, v_stats);
  return v_commit;
end $$;

grant execute on function fstore.batch_statistics(bigint, regclass),
  fstore.commit_feature_rows(bigint, regclass, text, text, jsonb) to public;

reset role;
