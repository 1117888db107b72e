-- THE feature resolver and THE point-in-time join (one definition, docs in DESIGN.md),
-- used by training data, stored training datasets and online serving alike. Reads run
-- with the caller's rights: row-level security applies to them.
--
--   select fstore.training_data_sql('spine'::regclass, array['activity:*', 'risk@2:score']);

set role fstore_control;

create or replace function fstore.require_session_project() returns text
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.session_project();
begin
  if v_project is null then
    raise exception 'permission denied: % is not a member of any project; connect as a project-user', session_user
      using errcode = '42501';
  end if;
  return v_project;
end $$;
comment on function fstore.require_session_project() is
  'The caller''s project, or an error for a session that is not a project member.';

create or replace function fstore.resolve_features(p_features text[], p_full_feature_names boolean default false)
returns jsonb language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.require_session_project();
  v_ref text;
  v_match text[];
  v_fg fstore.feature_groups;
  v_names text[];
  v_name text;
  v_plan jsonb := '[]';
  v_pos integer;
  v_outputs jsonb := '{}';   -- output column -> "group@version:feature" that produced it
  v_output text;
  v_label text;
begin
  if coalesce(array_length(p_features, 1), 0) = 0 then
    raise exception 'give at least one feature reference (group:feature or group:*)' using errcode = '22023';
  end if;
  foreach v_ref in array p_features loop
    v_match := regexp_match(btrim(coalesce(v_ref, '')),
      '^(?:([a-z][a-z0-9_]*)\.)?([a-z][a-z0-9_]*)(?:@([0-9]{1,9}))?:([a-z_][a-z0-9_]*|\*)$');
    if v_match is null then
      raise exception 'invalid feature reference %: use group:feature, group:*, group@2:feature or project.group:feature',
        coalesce(quote_literal(left(v_ref, 120)), 'NULL') using errcode = '22023';
    end if;
    if v_match[1] is not null and v_match[1] <> v_project
       and not (v_match[1] = any(fstore.visible_projects())) then
      -- said of any project not shared with the caller, whether it exists or not
      raise exception 'feature group %.% is not visible: project % is not shared with %', v_match[1], v_match[2],
        v_match[1], v_project using errcode = '42501', hint = 'a Data Owner of ' || v_match[1] || ' can share it';
    end if;
    v_fg := fstore.find_feature_group(coalesce(v_match[1], v_project), v_match[2], v_match[3]::integer);
    v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
    if v_match[4] = '*' then
      select coalesce(array_agg(f.name order by f.position), '{}') into v_names
        from fstore.features f where f.feature_group_id = v_fg.id and not f.is_key;
    else
      select array[f.name] into v_names from fstore.features f
       where f.feature_group_id = v_fg.id and f.name = v_match[4];
      if v_names is null then
        raise exception 'feature % does not exist in feature group % (reference %)', v_match[4], v_label, v_ref
          using errcode = 'P0002';
      end if;
      if v_match[4] = any(v_fg.entity_keys) then
        raise exception '% is an entity key of feature group %, not a feature: it comes from the spine', v_match[4], v_label
          using errcode = '22023';
      end if;
    end if;
    -- a feature the caller may not read (a sensitive one), asked for by name or by *: refused by name
    perform fstore.check_readable_features(v_fg.id, v_names);
    select i - 1 into v_pos from jsonb_array_elements(v_plan) with ordinality e(g, i)
     where (g->>'id')::bigint = v_fg.id;
    if v_pos is null then
      v_plan := v_plan || jsonb_build_array(jsonb_build_object(
        'id', v_fg.id, 'project', v_fg.project, 'name', v_fg.name, 'version', v_fg.version,
        'table', v_fg.offline_table, 'online_table', v_fg.online_table,
        'keys', to_jsonb(v_fg.entity_keys), 'event_time', v_fg.event_time,
        'ttl', v_fg.ttl, 'ttl_seconds', extract(epoch from v_fg.ttl), 'features', '[]'::jsonb));
      v_pos := jsonb_array_length(v_plan) - 1;
    end if;
    foreach v_name in array v_names loop
      if v_plan->v_pos->'features' @> jsonb_build_array(jsonb_build_object('name', v_name)) then
        continue;  -- asked for twice (e.g. g:* and g:x): once is enough
      end if;
      v_output := case when p_full_feature_names then v_fg.name || '__' || v_name else v_name end;
      if v_outputs ? v_output then
        raise exception 'feature name % is ambiguous: it comes from % and %', v_output, v_outputs->>v_output,
          v_label || ':' || v_name
          using errcode = '42702',
                hint = case when p_full_feature_names then 'ask for the two versions in separate calls'
                            else 'ask for full feature names (group__feature)' end;
      end if;
      v_outputs := v_outputs || jsonb_build_object(v_output, v_label || ':' || v_name);
      v_plan := jsonb_set(v_plan, array[v_pos::text, 'features'],
        (v_plan->v_pos->'features') || jsonb_build_array(jsonb_build_object('name', v_name, 'output', v_output)));
    end loop;
  end loop;
  return v_plan;
end $$;
comment on function fstore.resolve_features(text[],boolean) is
  'Resolve feature references against the catalog the caller can see, in the order given. A reference is [project.]group[@version]:feature or ...:* (all features). Returns [{id, project, name, version, table, online_table, keys, event_time, ttl, ttl_seconds, features: [{name, output}]}], one element per feature-group version. Errors name the reference: a malformed one, an unknown group or feature, a key asked for as a feature, another project not shared with the caller''s (42501), an ambiguous output name. THE resolver: the point-in-time builder and online lookups both use it.';

create or replace function fstore.spine_column_type(p_spine regclass, p_column text, p_role text) returns oid
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_type oid;
begin
  select a.atttypid into v_type from pg_attribute a
   where a.attrelid = p_spine and a.attname = p_column and a.attnum > 0 and not a.attisdropped;
  if v_type is null then
    raise exception '% has no column % (%)',
      case when p_spine = to_regclass('pg_temp._fstore_spine') then 'the spine' else 'spine ' || p_spine::text end,
      coalesce(quote_ident(p_column), 'NULL'), p_role
      using errcode = '42703',
            detail = 'spine columns: ' || (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                                             from pg_attribute a
                                            where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped);
  end if;
  return v_type;
end $$;
comment on function fstore.spine_column_type(regclass,text,text) is
  'A column of a relation: its type, or an error naming the column and what it is for.';

drop function if exists fstore.training_data_sql(regclass,text[],text,interval,boolean,jsonb,jsonb,text[],text,text,boolean);

create or replace function fstore.spine_time_expression(p_spine regclass, p_event_time_column text) returns text
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_type oid := fstore.spine_column_type(p_spine, p_event_time_column, 'the event time column');
begin
  -- spine time: timestamptz as is, timestamp (and date) as UTC
  case v_type
    when 'timestamptz'::regtype then return format('s.%I', p_event_time_column);
    when 'timestamp'::regtype then return format('(s.%I at time zone ''UTC'')', p_event_time_column);
    when 'date'::regtype then return format('(s.%I::timestamp at time zone ''UTC'')', p_event_time_column);
    else
      raise exception 'spine column % must be a timestamp, timestamptz or date, not %', quote_ident(p_event_time_column),
        format_type(v_type, null) using errcode = '22023';
  end case;
end $$;
comment on function fstore.spine_time_expression(regclass,text) is
  'The spine''s event time as a timestamptz expression over alias s (a timestamp or date is UTC), or an error for another type.';

-- The planner of the join: for each feature group, index probes or a merge, by a cost model
-- measured on this kind of machine (2 loaded cores, PostgreSQL 15, one connection, spine and
-- history back to back): a probe costs about 11 us per spine row (1M spine x 1M history:
-- 10-11 s); the merge (spine and history in one pass in index order, two window aggregates,
-- a small sort per entity) about 12.5 us per spine row plus 6 us per history row it reads
-- (1M x 1M: 16.6-24.6 s; 1M spine in a 10-day window, 1-day TTL, 30k history rows to read:
-- 15-16.6 s against 13-14 s). A merge in SQL costs more per spine row than a probe. The
-- asof merge (the fstore_asof extension: one pass in C over the spine sorted by keys and time
-- and the history in index order) costs about 3 us per spine row plus 2 us per
-- history row it reads (docs/point_in_time.md has the runs); it is offered only where the
-- extension is installed.
create or replace function fstore.point_in_time_strategies(
  p_spine regclass, p_plan jsonb, p_time text, p_ttl interval default null, p_strategy text default 'auto',
  p_spine_stats jsonb default null
) returns jsonb language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_probe_us constant double precision := 11.0;        -- per spine row
  c_merge_spine_us constant double precision := 12.5;  -- per spine row
  c_merge_history_us constant double precision := 6.0; -- per history row read
  c_asof_spine_us constant double precision := 3.0;    -- per spine row (with the spine presorted as a DataFrame spine is)
  c_asof_history_us constant double precision := 2.0;  -- per history row read (index order, one pass)
  v_asof boolean := exists (select 1 from pg_extension where extname = 'fstore_asof');
  v_asof_cost double precision;
  v_probe_cost double precision;
  v_merge_cost double precision;
  v_strategy text := lower(btrim(coalesce(p_strategy, 'auto')));
  v_given text[];  -- one strategy per group, as p_strategy 'merge,probe'
  v_spine_name text;
  v_rows bigint;
  v_min timestamptz;
  v_max timestamptz;
  v_fg jsonb;
  v_out jsonb := '[]';
  v_hist double precision;
  v_hmin timestamptz;
  v_hmax timestamptz;
  v_ttl interval;
  v_lo timestamptz;
  v_hi timestamptz;
  v_read double precision;
  v_label text;
  v_choice text;
  v_reason text;
  v_table regclass;
  v_colocated boolean;
  v_where jsonb;
begin
  v_given := string_to_array(replace(v_strategy, ' ', ''), ',');
  if not (v_given <@ array['auto', 'probe', 'merge', 'asof'])
     or (cardinality(v_given) > 1 and cardinality(v_given) <> jsonb_array_length(p_plan)) then
    raise exception 'strategy must be auto, probe, merge or asof (or one per feature group: merge,probe), not %',
      coalesce(quote_literal(p_strategy), 'NULL') using errcode = '22023';
  end if;
  if 'asof' = any(v_given) and not v_asof then
    raise exception 'strategy asof needs the fstore_asof extension, which this server does not have'
      using errcode = '22023', hint = 'scripts/setup.sh builds ext/fstore_asof; then, as the superuser: create extension fstore_asof';
  end if;
  if cardinality(v_given) > 1 then
    return (select jsonb_agg(jsonb_build_object('group', format('%s.%s@%s', g->>'project', g->>'name', g->>'version'),
                                                'strategy', case when x.colocated and v_given[i] = 'asof' then 'merge'
                                                                 when x.colocated then v_given[i]
                                                                 when x.distributed then 'merge' else v_given[i] end,
                                                'reason', case when x.colocated
                                                               then 'chosen for the whole spine; the spine is distributed and co-located: per shard on the workers'
                                                               when x.distributed then 'a distributed feature group: merge on the workers'
                                                               else 'chosen for the whole spine' end)
                               || case when x.distributed then jsonb_build_object('spine', fstore.spine_location(p_spine, x.t))
                                       else '{}'::jsonb end
                             order by i)
              from jsonb_array_elements(p_plan) with ordinality e(g, i),
                   lateral (select t, fstore.is_distributed(t) as distributed, fstore.spine_colocated(p_spine, t) as colocated
                              from (select format('%I.%I', g->>'project', g->>'table')::regclass as t) tt) x);
  end if;
  if p_spine_stats is not null then  -- a spine joined in shards: the whole spine's sizes
    v_rows := (p_spine_stats->>'rows')::bigint;
    v_min := (p_spine_stats->>'min')::timestamptz;
    v_max := (p_spine_stats->>'max')::timestamptz;
  elsif v_strategy = 'auto' then
    select case when c.relpersistence = 't' then format('pg_temp.%I', c.relname) else format('%I.%I', n.nspname, c.relname) end
      into v_spine_name from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = p_spine;
    execute format('select count(*), min(%s), max(%s) from %s s', p_time, p_time, v_spine_name) into v_rows, v_min, v_max;
  end if;
  for v_fg in select g from jsonb_array_elements(p_plan) g loop
    v_label := format('%s.%s@%s', v_fg->>'project', v_fg->>'name', v_fg->>'version');
    v_table := format('%I.%I', v_fg->>'project', v_fg->>'table')::regclass;
    v_colocated := fstore.spine_colocated(p_spine, v_table);
    v_where := case when fstore.is_distributed(v_table) then jsonb_build_object('spine', fstore.spine_location(p_spine, v_table))
                    else '{}'::jsonb end;
    if fstore.is_distributed(v_table) and not v_colocated then
      -- Citus refuses a LATERAL join from a spine on the coordinator into a distributed
      -- table (probe), and the asof pass would pull the whole history to the coordinator:
      -- the merge is the one that runs on the workers (docs/cluster.md)
      v_out := v_out || jsonb_build_array(jsonb_build_object('group', v_label, 'strategy', 'merge',
        'reason', format('a distributed feature group: merge on the workers%s',
                         case when v_strategy not in ('auto', 'merge') then format(' (%s asked for; not possible with the spine on the coordinator)', v_strategy)
                              else '' end)) || v_where);
      continue;
    end if;
    if v_colocated and v_strategy = 'asof' then
      -- the asof pass runs its two queries on the coordinator: the merge is its counterpart per shard
      v_out := v_out || jsonb_build_array(jsonb_build_object('group', v_label, 'strategy', 'merge',
        'reason', 'a distributed spine co-located with the group: merge per shard on the workers (asof asked for; it would run on the coordinator)')
        || v_where);
      continue;
    end if;
    if v_strategy <> 'auto' then
      v_out := v_out || jsonb_build_array(jsonb_build_object('group', v_label, 'strategy', v_strategy,
        'reason', format('asked for (strategy %s)%s', v_strategy,
                         case when v_colocated then '; a distributed spine co-located with the group: per shard on the workers'
                              else '' end)) || v_where);
      continue;
    end if;
    -- (a distributed table's shell on the coordinator holds no rows: the commits count them)
    select case when fstore.is_distributed(c.oid) then null else nullif(c.reltuples, -1) end into v_hist from pg_class c
     where c.oid = format('%I.%I', v_fg->>'project', v_fg->>'table')::regclass;
    select coalesce(v_hist, sum(m.rows)), min(m.min_event_time), max(m.max_event_time)
      into v_hist, v_hmin, v_hmax
      from fstore.commits m where m.feature_group_id = (v_fg->>'id')::bigint and m.state = 'done';
    v_hist := coalesce(v_hist, 0);
    v_ttl := coalesce(p_ttl, (v_fg->>'ttl')::interval);
    -- the history the merge reads: event times in [min spine time - ttl, max spine time]
    v_lo := greatest(v_hmin, v_min - v_ttl);
    v_hi := least(v_hmax, v_max);
    v_read := case when v_rows = 0 or v_hi < v_lo then 0
                   when v_hmax > v_hmin then v_hist * extract(epoch from v_hi - coalesce(v_lo, v_hmin))
                                                    / extract(epoch from v_hmax - v_hmin)
                   else v_hist end;
    v_probe_cost := c_probe_us * v_rows / 1e6;
    v_merge_cost := (c_merge_spine_us * v_rows + c_merge_history_us * v_read) / 1e6;
    v_asof_cost := case when v_asof and not v_colocated then (c_asof_spine_us * v_rows + c_asof_history_us * v_read) / 1e6 end;
    v_choice := case when v_rows = 0 then 'probe'
                     when v_asof_cost < least(v_probe_cost, v_merge_cost) then 'asof'
                     when v_merge_cost < v_probe_cost then 'merge' else 'probe' end;
    v_reason := format('%s spine rows, about %s history rows to read%s: probes ~%s s, merge ~%s s, %s (measured cost model)',
                       v_rows, round(v_read), case when v_ttl is not null then format(' (ttl %s)', v_ttl) else '' end,
                       round(v_probe_cost::numeric, 2), round(v_merge_cost::numeric, 2),
                       case when v_colocated then 'no asof (a distributed spine: per shard on the workers)'
                            when v_asof then format('asof ~%s s', round(v_asof_cost::numeric, 2))
                            else 'no asof (the fstore_asof extension is not installed)' end);
    v_out := v_out || jsonb_build_array(jsonb_build_object('group', v_label, 'strategy', v_choice, 'reason', v_reason,
      'spine_rows', v_rows, 'history_rows', round(v_hist), 'history_rows_to_read', round(v_read),
      'probe_cost_s', round(v_probe_cost::numeric, 3), 'merge_cost_s', round(v_merge_cost::numeric, 3),
      'asof_cost_s', round(v_asof_cost::numeric, 3)) || v_where);
  end loop;
  return v_out;
end $$;
comment on function fstore.point_in_time_strategies(regclass,jsonb,text,interval,text,jsonb) is
  'The point-in-time planner: for each resolved feature group (fstore.resolve_features), probe (an index probe per spine row), merge (one pass over spine and history in index order, window functions) or asof (the same pass in C, the fstore_asof extension, where installed), with the reason. auto compares a measured cost model: probes 11 us per spine row, merge 12.5 us per spine row plus 6 us per history row to read, asof 3 us per spine row plus 2 us per history row to read (rows in [min spine time - ttl, max spine time], from pg_class and the commits'' event-time ranges); probe, merge or asof force one, and ''merge,probe'' gives one per group. p_spine_stats ({rows, min, max}) stands for the spine''s own sizes (a spine joined in shards). A distributed feature group (a Citus cluster) always gets merge, the join Citus runs on the workers.';

create or replace function fstore.training_data_sql(
  p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_keys jsonb default null,
  p_as_of_commits jsonb default null, p_spine_columns text[] default null, p_order_column text default null,
  p_row_number text default null, p_sorted boolean default true, p_strategy text default 'auto'
) returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_spine_commit constant text := '9223372036854775807';  -- a spine row sorts before history at the same time
  v_plan jsonb := fstore.resolve_features(p_features, p_full_feature_names);
  v_strategies jsonb;
  v_relkind "char";
  v_temp boolean;
  v_spine_cols text[];
  v_all_names text[] := '{}';  -- columns carried from one merge to the next (quoted) and their types
  v_all_types text[] := '{}';
  v_select text[] := '{}';
  v_joins text := '';
  v_t text;
  v_rn text;
  v_x text;  -- the spine so far: a subquery with _fstore_rn, every spine column and the merged features
  v_fg jsonb;
  v_feature jsonb;
  v_key text;
  v_spine_key text;
  v_key_type oid;
  v_fg_key_type oid;
  v_conds text[];
  v_hconds text[];
  v_ttl interval;
  v_as_of jsonb;
  v_holes bigint[];
  v_alias text;
  v_i integer := 0;
  v_j integer;
  v_col text;
  v_offline regclass;
  v_spine_name text;
  v_sort_cols text[];
  v_sort_list text;
  v_presort boolean;
  v_probe_first jsonb;
  v_ukeys text[];
  v_skeys text[];
  v_hkeys text[];
  v_askeys text[];  -- the spine's keys in the history key's collation (the asof merge's order)
  v_fnames text[];
  v_ftypes text[];
  v_first_key_bound text;
  v_bounded boolean;  -- fstore's own spine (made for this query): its bounds go into the text
  v_klo text;
  v_khi text;
  v_tmin timestamptz;
  v_tmax timestamptz;
begin
  if p_spine is null then
    raise exception 'give a spine relation' using errcode = '22023';
  end if;
  -- the spine's qualified name, so the query means the same relation in the caller's search_path
  select c.relkind, c.relpersistence = 't', case when c.relpersistence = 't' then format('pg_temp.%I', c.relname)
                                                 else format('%I.%I', n.nspname, c.relname) end
    into v_relkind, v_temp, v_spine_name
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = p_spine;
  if p_keys is not null and jsonb_typeof(p_keys) <> 'object' then
    raise exception 'keys must map spine columns to feature-group keys, e.g. {"customer": "customer_id"}'
      using errcode = '22023';
  end if;
  v_t := fstore.spine_time_expression(p_spine, p_event_time_column);
  if exists (select 1 from pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
               and (a.attname = '_fstore_rn' or a.attname like '\_fstore\_pit\_%')) then
    raise exception 'the spine may not have a column named _fstore_rn or _fstore_pit_* (fstore uses them)'
      using errcode = '42701';
  end if;

  if p_spine_columns is not null then
    foreach v_col in array p_spine_columns loop
      perform fstore.spine_column_type(p_spine, v_col, 'asked for as a spine column');
    end loop;
    v_spine_cols := p_spine_columns;
  else
    select coalesce(array_agg(a.attname::text order by a.attnum), '{}') into v_spine_cols
      from pg_attribute a
     where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
       and a.attname::text is distinct from p_order_column;
  end if;
  if p_order_column is not null then
    perform fstore.spine_column_type(p_spine, p_order_column, 'the order column');
  end if;
  if not coalesce(p_sorted, true) and (p_order_column is null or p_row_number is not null) then
    raise exception 'an unsorted point-in-time query needs an order column (and no row number)'
      using errcode = '22023';
  end if;
  if p_row_number is not null and p_row_number = any(v_spine_cols) then
    raise exception 'spine column % clashes with the row number column', quote_ident(p_row_number)
      using errcode = '42702';
  end if;

  -- spine order, carried as a row number (_fstore_rn): the order column, else the physical
  -- order of a table as loaded (a temporary table is read in that order: no parallel or
  -- synchronized scans; another table is numbered by ctid), else the order a view returns;
  -- the spine columns carried along: those asked for, the keys, the time and the order column
  v_rn := case
    when not coalesce(p_sorted, true) then 'null::bigint'
    when p_order_column is not null then format('row_number() over (order by s.%I)', p_order_column)
    when v_relkind in ('r', 'm', 't') and v_temp then 'row_number() over ()'
    when v_relkind in ('r', 'm', 't') then 'row_number() over (order by s.ctid)'
    when v_relkind = 'p' then 'row_number() over (order by s.tableoid, s.ctid)'
    else 'row_number() over ()' end;
  v_all_names := array['_fstore_rn'];
  v_all_types := array['bigint'];
  select v_all_names || coalesce(array_agg(format('%I', a.attname) order by a.attnum), '{}'),
         v_all_types || coalesce(array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum), '{}')
    into v_all_names, v_all_types
    from pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
     and (a.attname = any(v_spine_cols) or a.attname in (p_event_time_column, p_order_column)
          or a.attname in (select jsonb_object_keys(coalesce(p_keys, '{}')))
          or a.attname in (select jsonb_array_elements_text(g->'keys') from jsonb_array_elements(v_plan) g));
  v_x := format('(select %s as _fstore_rn, %s from %s s)', v_rn,
                (select string_agg('s.' || n, ', ') from unnest(v_all_names[2:]) n), v_spine_name);

  v_strategies := fstore.point_in_time_strategies(p_spine, v_plan, v_t, p_ttl, p_strategy);
  -- the merge reads the history of the spine's time range (and key range) only: bounds as
  -- literals (a subquery in the history's branch would cost the merge its index order), so
  -- only for fstore's own temporary spine, loaded for this one query
  v_bounded := (v_spine_name = 'pg_temp._fstore_spine' or v_spine_name like 'fstore\_spines.%')
               and exists (select 1 from jsonb_array_elements(v_strategies) g where g->>'strategy' in ('merge', 'asof'));
  if v_bounded then
    execute format('select min(%1$s), max(%1$s) from %2$s s', v_t, v_spine_name) into v_tmin, v_tmax;
  end if;

  if not coalesce(p_sorted, true) then
    v_select := v_select || format('s.%I', p_order_column);
  end if;
  if p_row_number is not null then
    v_select := v_select || format('s._fstore_rn as %I', p_row_number);
  end if;
  foreach v_col in array v_spine_cols loop
    v_select := v_select || format('s.%I', v_col);
  end loop;

  for v_fg in select g from jsonb_array_elements(v_plan) g loop
    v_i := v_i + 1;
    v_alias := 'f' || v_i;
    v_offline := format('%I.%I', v_fg->>'project', v_fg->>'table')::regclass;
    v_conds := '{}';
    v_hconds := '{}';
    v_ukeys := '{}';
    v_skeys := '{}';
    v_hkeys := '{}';
    v_askeys := '{}';
    v_first_key_bound := null;
    for v_key in select jsonb_array_elements_text(v_fg->'keys') loop
      select k.key into v_spine_key from jsonb_each_text(coalesce(p_keys, '{}')) k where k.value = v_key;
      if (select count(*) from jsonb_each_text(coalesce(p_keys, '{}')) k where k.value = v_key) > 1 then
        raise exception 'keys maps more than one spine column to key % of feature group %', v_key, v_fg->>'name'
          using errcode = '42702';
      end if;
      v_spine_key := coalesce(v_spine_key, v_key);
      v_key_type := fstore.spine_column_type(p_spine, v_spine_key,
        format('entity key %s of feature group %s.%s; map another column with keys => {"column": "%s"}',
               v_key, v_fg->>'project', v_fg->>'name', v_key));
      select a.atttypid into v_fg_key_type from pg_attribute a where a.attrelid = v_offline and a.attname = v_key;
      v_conds := v_conds || case when v_key_type = v_fg_key_type
                                 then format('o.%I = s.%I', v_key, v_spine_key)
                                 else format('o.%I = s.%I::%s', v_key, v_spine_key, format_type(v_fg_key_type, null)) end;
      v_ukeys := v_ukeys || format('_fstore_pit_k%s', cardinality(v_ukeys) + 1);
      v_skeys := v_skeys || case when v_key_type = v_fg_key_type then format('s.%I', v_spine_key)
                                 else format('s.%I::%s', v_spine_key, format_type(v_fg_key_type, null)) end;
      v_hkeys := v_hkeys || format('o.%I', v_key);
      v_askeys := v_askeys || (select v_skeys[cardinality(v_skeys)]
                                      || case when a.attcollation <> 0 then format(' collate %I.%I', cn.nspname, c.collname)
                                              else '' end
                                 from pg_attribute a left join pg_collation c on c.oid = a.attcollation
                                 left join pg_namespace cn on cn.oid = c.collnamespace
                                where a.attrelid = v_offline and a.attname = v_key);
      if v_bounded and cardinality(v_ukeys) = 1 and v_fg_key_type in ('int2'::regtype, 'int4'::regtype, 'int8'::regtype,
           'text'::regtype, 'varchar'::regtype, 'numeric'::regtype, 'date'::regtype, 'timestamptz'::regtype,
           'timestamp'::regtype) then
        -- the merge reads the history of the spine's range of the first key only (a shard's)
        execute format('select min(%1$s)::text, max(%1$s)::text from %2$s s', v_skeys[1], v_spine_name)
          into v_klo, v_khi;
        v_first_key_bound := format('o.%I between %L and %L', v_key, v_klo, v_khi);
      end if;
    end loop;
    v_ttl := coalesce(p_ttl, (v_fg->>'ttl')::interval);
    if p_as_of_commits is not null then
      v_as_of := p_as_of_commits->(v_fg->>'id');
      if v_as_of is null then
        raise exception 'no as-of commit given for feature group %.%@%', v_fg->>'project', v_fg->>'name', v_fg->>'version'
          using errcode = '22023';
      end if;
      if jsonb_typeof(v_as_of) = 'object' then
        if v_as_of->'max_commit' is null or jsonb_typeof(v_as_of->'max_commit') = 'null' then
          v_hconds := v_hconds || 'false'::text;  -- it had no commits then
        else
          v_hconds := v_hconds || format('o._commit_id <= %s', (v_as_of->>'max_commit')::bigint);
          -- commits that were in flight then and landed later with a lower id
          select array_agg(c.id order by c.id) into v_holes from fstore.commits c
           where c.feature_group_id = (v_fg->>'id')::bigint and c.id <= (v_as_of->>'max_commit')::bigint
             and not (coalesce(v_as_of->'commits', '[]') @> to_jsonb(c.id));
          if v_holes is not null then
            v_hconds := v_hconds || format('o._commit_id <> all (%L::bigint[])', v_holes);
          end if;
        end if;
      else
        v_hconds := v_hconds || format('o._commit_id <= %s', (v_as_of #>> '{}')::bigint);
      end if;
    end if;
    select coalesce(array_agg(format('%I', f->>'name') order by i), '{}'),
           coalesce(array_agg(format_type(a.atttypid, a.atttypmod) order by i), '{}')
      into v_fnames, v_ftypes
      from jsonb_array_elements(v_fg->'features') with ordinality e(f, i)
      join pg_attribute a on a.attrelid = v_offline and a.attname = f->>'name';
    for v_feature in select f from jsonb_array_elements(v_fg->'features') f loop
      if v_feature->>'output' = any(v_spine_cols) then
        raise exception 'feature name % is ambiguous: the spine has a column of that name too', v_feature->>'output'
          using errcode = '42702', hint = 'rename the spine column or ask for full feature names (group__feature)';
      end if;
    end loop;

    if v_strategies->(v_i - 1)->>'strategy' in ('merge', 'asof') then
      -- the history of the spine's time (and first key) range only, for fstore's own spine
      if v_bounded then
        v_hconds := v_hconds || format('o.%I <= %L::timestamptz', v_fg->>'event_time', v_tmax);
        if v_ttl is not null then  -- no history older than the spine's earliest time minus the TTL
          v_hconds := v_hconds || format('o.%I >= %L::timestamptz - %L::interval', v_fg->>'event_time', v_tmin, v_ttl);
        end if;
      end if;
      if v_first_key_bound is not null then
        v_hconds := v_hconds || v_first_key_bound;
      end if;
    end if;
    if v_strategies->(v_i - 1)->>'strategy' = 'asof' then
      -- THE join as one pass in C (fstore_asof.asof_join): the spine so far sorted by (keys,
      -- time desc), the history in its index order (keys, event_time desc, commit desc); each
      -- spine row takes the first history row of its keys at or before its time (ties to the
      -- latest commit), nothing for a NULL key, nothing older than t - ttl. Both queries run
      -- as the caller (RLS applies), read-only; every name in them is quoted here.
      v_x := format(
        E'(select * from fstore_asof.asof_join(\n   %L,\n   %L,\n   %s, %s)\n   as m(%s))',
        format('select %s, %s, %s from %s s order by %s, %s desc',
               (select string_agg('s.' || n, ', ') from unnest(v_all_names) n),
               array_to_string(v_askeys, ', '), v_t, v_x, array_to_string(v_askeys, ', '), v_t),
        format('select %s, o.%I, %s from %s o%s order by %s, o.%I desc, o._commit_id desc',
               array_to_string(v_hkeys, ', '), v_fg->>'event_time',
               (select string_agg('o.' || n, ', ' order by i) from unnest(v_fnames) with ordinality x(n, i)),
               v_offline,
               case when cardinality(v_hconds) > 0 then ' where ' || array_to_string(v_hconds, ' and ') else '' end,
               array_to_string(v_hkeys, ', '), v_fg->>'event_time'),
        cardinality(v_hkeys), coalesce(format('%L::interval', v_ttl), 'null'),
        (select string_agg(format('%s %s', n, t), ', ' order by i)
           from unnest(v_all_names, v_all_types) with ordinality x(n, t, i))
          || (select string_agg(format(', %I %s', f->>'output', v_ftypes[i]), '' order by i)
                from jsonb_array_elements(v_fg->'features') with ordinality e(f, i)));
      v_all_names := v_all_names || (select array_agg(format('%I', f->>'output') order by i)
                                        from jsonb_array_elements(v_fg->'features') with ordinality e(f, i));
      v_all_types := v_all_types || v_ftypes;
      for v_feature in select f from jsonb_array_elements(v_fg->'features') f loop
        v_select := v_select || format('s.%I', v_feature->>'output');
      end loop;
    elsif v_strategies->(v_i - 1)->>'strategy' = 'merge' then
      -- THE join as a merge: spine rows and history rows of this group in one stream ordered
      -- by (keys, time desc, commit desc), a spine row first among rows of its time (the bound
      -- is inclusive) and history in index order; a spine row's match is the next history row
      -- of its keys (the latest at or before its time; ties to the latest commit): a running
      -- count of history rows puts each spine row in the group of that row. (The history's
      -- branch has its own ORDER BY: a branch with a WHERE is planned as a subquery, which
      -- keeps its index order only when asked for it.)
      v_x := format(
        E'(select %1$s%2$s\n from (select b.*, %3$s\n  from (select u.*, count(*) filter (where u._fstore_pit_c < %4$s) over (partition by %5$s order by u._fstore_pit_t desc, u._fstore_pit_c desc rows unbounded preceding)\n                 - (u._fstore_pit_c < %4$s)::integer as _fstore_pit_g\n    from (select %6$s, %7$s as _fstore_pit_t, %4$s::bigint as _fstore_pit_c, %8$s, null::timestamptz as _fstore_pit_ht, %9$s\n            from %10$s s\n          union all\n          (select %11$s, o.%12$I, o._commit_id, %13$s, o.%12$I, %14$s\n            from %15$s o%16$s\n           order by %11$s, o.%12$I desc, o._commit_id desc)) u) b\n  window w as (partition by %17$s, b._fstore_pit_g order by b._fstore_pit_c)) m\n where m._fstore_pit_c = %4$s)',
        array_to_string(v_all_names, ', '),
        (select string_agg(format(', case when %s then m._fstore_pit_m%s end as %I',
                                  case when v_ttl is null then 'true'
                                       else format('m._fstore_pit_mt >= m._fstore_pit_t - %L::interval', v_ttl) end,
                                  i, f->>'output'), '' order by i)
           from jsonb_array_elements(v_fg->'features') with ordinality e(f, i)),
        'first_value(b._fstore_pit_ht) over w as _fstore_pit_mt'
          || (select string_agg(format(', first_value(b._fstore_pit_h%s) over w as _fstore_pit_m%s', i, i), '' order by i)
                from generate_series(1, cardinality(v_fnames)) i),
        c_spine_commit,
        (select string_agg('u.' || k, ', ') from unnest(v_ukeys) k),
        (select string_agg(format('%s as %s', e, k), ', ') from unnest(v_skeys, v_ukeys) x(e, k)),
        v_t,
        (select string_agg('s.' || n, ', ') from unnest(v_all_names) n),
        (select string_agg(format('null::%s as _fstore_pit_h%s', t, i), ', ' order by i)
           from unnest(v_ftypes) with ordinality x(t, i)),
        v_x,
        array_to_string(v_hkeys, ', '),
        v_fg->>'event_time',
        (select string_agg(format('null::%s', t), ', ' order by i) from unnest(v_all_types) with ordinality x(t, i)),
        (select string_agg('o.' || n, ', ' order by i) from unnest(v_fnames) with ordinality x(n, i)),
        v_offline,
        case when cardinality(v_hconds) > 0 then E'\n           where ' || array_to_string(v_hconds, E'\n             and ') else '' end,
        (select string_agg('b.' || k, ', ') from unnest(v_ukeys) k));
      v_all_names := v_all_names || (select array_agg(format('%I', f->>'output') order by i)
                                        from jsonb_array_elements(v_fg->'features') with ordinality e(f, i));
      v_all_types := v_all_types || v_ftypes;
      for v_feature in select f from jsonb_array_elements(v_fg->'features') f loop
        v_select := v_select || format('s.%I', v_feature->>'output');
      end loop;
    else
      -- THE join as index probes: per spine row, the latest row at or before its time
      v_probe_first := coalesce(v_probe_first, v_fg);
      v_conds := v_conds || format('o.%I <= %s', v_fg->>'event_time', v_t);
      if v_ttl is not null then
        v_conds := v_conds || format('o.%I >= %s - %L::interval', v_fg->>'event_time', v_t, v_ttl);
      end if;
      v_conds := v_conds || v_hconds;
      for v_feature in select f from jsonb_array_elements(v_fg->'features') f loop
        v_select := v_select || format('%I.%I as %I', v_alias, v_feature->>'name', v_feature->>'output');
      end loop;
      v_joins := v_joins || format(
        E'\n  left join lateral (select %s from %s o\n     where %s\n     order by o.%I desc, o._commit_id desc limit 1) %I on true',
        (select string_agg(format('o.%I', f->>'name'), ', ') from jsonb_array_elements(v_fg->'features') f),
        v_offline, array_to_string(v_conds, E'\n       and '), v_fg->>'event_time', v_alias);
    end if;
  end loop;

  -- the probes read the spine in the order of the first probed group's keys and time (its
  -- index probes then walk the index in order: much less work per probe)
  if v_probe_first is not null then
    select array_agg(format('%I', coalesce((select k.key from jsonb_each_text(coalesce(p_keys, '{}')) k
                                             where k.value = g.key limit 1), g.key)) order by g.i)
      into v_sort_cols from jsonb_array_elements_text(v_probe_first->'keys') with ordinality g(key, i);
    v_presort := not fstore.is_distributed(p_spine) and (select count(*) from pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
                    and format('%I', a.attname) = any(v_sort_cols)) = cardinality(v_sort_cols);
    if v_presort then
      v_sort_list := array_to_string(v_sort_cols || format('%I', p_event_time_column), ', ');
      v_x := format('(select * from %s s order by %s)', v_x, v_sort_list);
    end if;
  end if;

  return format(E'select %s\n  from %s s%s%s', array_to_string(v_select, ', '), v_x, v_joins,
                case when coalesce(p_sorted, true) then E'\n order by s._fstore_rn' else '' end);
end $$;
comment on function fstore.training_data_sql(regclass,text[],text,interval,boolean,jsonb,jsonb,text[],text,text,boolean,text) is
  'THE point-in-time join, as the text of a query over a spine relation: for each spine row (entity keys, time t) and each feature group, the row with the same keys and the greatest event_time <= t (and >= t - ttl), ties to the latest commit; one output row per spine row, in spine order. p_strategy: auto (fstore.point_in_time_strategies picks per group), probe (an index probe per spine row), merge (one pass over spine and history in index order, window functions) or asof (that pass in C: the fstore_asof extension); the same rows either way. Run it yourself, or use fstore.historical_features(table, spine, features) to get a temporary table in one statement.';

create or replace function fstore.explain_historical_features(
  p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_strategy text default 'auto',
  p_spine_stats jsonb default null
) returns jsonb language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
begin
  return fstore.point_in_time_strategies(p_spine, fstore.resolve_features(p_features, p_full_feature_names),
                                         fstore.spine_time_expression(p_spine, p_event_time_column), p_ttl, p_strategy,
                                         p_spine_stats);
end $$;
comment on function fstore.explain_historical_features(regclass,text[],text,interval,boolean,text,jsonb) is
  'How fstore.training_data_sql would join each feature group to this spine: [{group, strategy (probe, merge or asof), reason, spine_rows, history_rows, history_rows_to_read, probe_cost_s, merge_cost_s, asof_cost_s}], from the same planner (fstore.point_in_time_strategies). p_spine_stats ({rows, min, max}): the sizes of a whole spine of which p_spine is a shard.';

-- Point-in-time features in one statement from psql: the join (fstore.training_data_sql)
-- into a new temporary table of the caller's session, read with the caller's rights.
create or replace function fstore.historical_features(
  p_table text, p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_keys jsonb default null
) returns bigint language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rows bigint;
begin
  if p_table is null or p_table !~ '^[a-z_][a-z0-9_]{0,62}$' then
    raise exception 'invalid table name %: use a-z, 0-9 and _ (it becomes a temporary table)',
      coalesce(quote_literal(left(p_table, 80)), 'NULL') using errcode = '22023';
  end if;
  if to_regclass(format('pg_temp.%I', p_table)) is not null then
    raise exception 'temporary table % exists already: drop it or give another name', p_table using errcode = '42P07';
  end if;
  perform fstore.commit_barrier_features(p_features);  -- on a cluster: see every commit whole
  execute format('create temp table %I as %s', p_table,
                 fstore.training_data_sql(p_spine, p_features, p_event_time_column, p_ttl, p_full_feature_names, p_keys));
  get diagnostics v_rows = row_count;
  return v_rows;
end $$;
comment on function fstore.historical_features(text,regclass,text[],text,interval,boolean,jsonb) is
  'Point-in-time features into a new temporary table, in one statement: select fstore.historical_features(''train'', ''spine''::regclass, array[''activity:*'', ''risk@2:score'']); then select * from train. Same join as training_data_sql (one row per spine row, in spine order; features as of each row''s time), with the caller''s rights. Returns the row count.';

grant execute on function
  fstore.historical_features(text,regclass,text[],text,interval,boolean,jsonb),
  fstore.require_session_project(),
  fstore.resolve_features(text[],boolean),
  fstore.spine_column_type(regclass,text,text),
  fstore.training_data_sql(regclass,text[],text,interval,boolean,jsonb,jsonb,text[],text,text,boolean,text),
  fstore.spine_time_expression(regclass,text),
  fstore.point_in_time_strategies(regclass,jsonb,text,interval,text,jsonb),
  fstore.explain_historical_features(regclass,text[],text,interval,boolean,text,jsonb)
  to public;
reset role;
