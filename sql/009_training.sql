-- Point-in-time training data: THE builder of the point-in-time join (one
-- definition, docs in DESIGN.md), the training-table procedure a psql user calls,
-- and the training-dataset catalog with its provenance.
--
--   select fstore.training_data_sql('spine'::regclass, array['activity:*', 'risk@2:score']);
--   select fstore.create_training_table('fraud_train', 'spine'::regclass, array['activity:*'],
--                                       p_label => array['is_fraud'], p_split => '{"train":0.8,"test":0.2}');
--
-- Reads run with the caller's rights (row-level security applies to them); only the
-- final step that stores a finished training table in the project schema, owned by
-- the project owner, is SECURITY DEFINER, and it copies nothing but a temporary
-- table of the caller's own session.

set role fstore_control;

create table fstore.training_datasets (
  id                  bigserial primary key,
  project             text not null references fstore.projects (name) on delete cascade,
  name                text not null,
  version             integer not null check (version >= 1),
  table_name          text not null,
  features            text[] not null,
  feature_groups      jsonb not null,   -- [{id, project, name, version, max_commit, commits: [...],
                                        --   features: [{name, output}], key_columns: {group key: spine column}}]
  spine_columns       text[] not null,
  event_time_column   text not null,
  ttl                 interval,
  full_feature_names  boolean not null default false,
  keys                jsonb,
  label               text[] not null default '{}',
  split               jsonb,
  seed                bigint not null default 0,
  spine_hash          text not null,
  rows                bigint not null,
  description         text not null default '',
  created_at          timestamptz not null default now(),
  created_by          text not null default session_user,
  client_serial       numeric,
  app_id              text,
  unique (project, name, version)
);

alter table fstore.training_datasets enable row level security;
create policy visible on fstore.training_datasets for select
  using (project in (select unnest(fstore.visible_projects())));
grant select on fstore.training_datasets to public;

-- Files a training dataset was written to, each recorded by the session that wrote it.
create table fstore.training_dataset_exports (
  id                   bigserial primary key,
  training_dataset_id  bigint not null references fstore.training_datasets (id) on delete cascade,
  format               text not null,
  path                 text not null,
  rows                 bigint not null,
  at                   timestamptz not null default now(),
  by                   text not null default session_user,
  client_serial        numeric,
  app_id               text
);
create index on fstore.training_dataset_exports (training_dataset_id);
alter table fstore.training_dataset_exports enable row level security;
create policy visible on fstore.training_dataset_exports for select
  using (exists (select 1 from fstore.training_datasets t where t.id = training_dataset_id));
grant select on fstore.training_dataset_exports to public;

-- The caller's project, or an error for a session that is not a project member.
create function fstore.require_session_project() returns text
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

-- Resolve feature references against the catalog the caller can see, in the order
-- given. A reference is  [project.]group[@version]:feature  or  ...:*  (all features).
-- Returns [{id, project, name, version, table, online_table, keys, event_time, ttl, ttl_seconds,
--           features: [{name, output}]}], one element per feature-group version.
-- Errors name the reference: a malformed one, an unknown group or feature, a key asked
-- for as a feature, another project not shared with the caller's (42501), an ambiguous
-- output name. THE resolver: the point-in-time builder and online lookups both use it.
create function fstore.resolve_features(p_features text[], p_full_feature_names boolean default false)
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

-- A column of a relation: its type, or an error naming the column and what it is for.
create function fstore.spine_column_type(p_spine regclass, p_column text, p_role text) returns oid
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

-- THE point-in-time join, as a query over a spine relation. For each spine row
-- (entity keys, time t) and each feature group: the row with the same keys and the
-- greatest event_time <= t (and >= t - ttl), ties to the latest commit; one output
-- row per spine row in spine order (table order, or p_order_column), spine columns
-- kept, NULL features where nothing matches; a NULL key matches nothing; a spine
-- time without time zone is UTC.
--   p_keys            {"spine_column": "group_key"} where the names differ
--   p_as_of_commits   {"<feature group id>": max_commit | {"max_commit": M, "commits": [ids seen]}}
--                     reads each feature group as of those commits (reproduces a training set)
--   p_spine_columns   the spine columns to output (default: all but p_order_column)
--   p_row_number      if set, a first output column of that name numbering rows 1..n in spine order
--   p_sorted          false: no final sort; p_order_column comes out first, for the caller to
--                     restore spine order (Python does, after joining spine shards in parallel)
create function fstore.training_data_sql(
  p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_keys jsonb default null,
  p_as_of_commits jsonb default null, p_spine_columns text[] default null, p_order_column text default null,
  p_row_number text default null, p_sorted boolean default true
) returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_plan jsonb := fstore.resolve_features(p_features, p_full_feature_names);
  v_relkind "char";
  v_spine_cols text[];
  v_select text[] := '{}';
  v_joins text := '';
  v_t text;
  v_t_type oid;
  v_order text;
  v_from text;
  v_fg jsonb;
  v_feature jsonb;
  v_key text;
  v_spine_key text;
  v_key_type oid;
  v_fg_key_type oid;
  v_conds text[];
  v_ttl interval;
  v_as_of jsonb;
  v_holes bigint[];
  v_alias text;
  v_i integer := 0;
  v_col text;
  v_offline regclass;
  v_spine_name text;
  v_sort_cols text[];
  v_sort_list text;
  v_presort boolean;
begin
  if p_spine is null then
    raise exception 'give a spine relation' using errcode = '22023';
  end if;
  -- the spine's qualified name, so the query means the same relation in the caller's search_path
  select c.relkind, case when c.relpersistence = 't' then format('pg_temp.%I', c.relname)
                         else format('%I.%I', n.nspname, c.relname) end
    into v_relkind, v_spine_name
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = p_spine;
  if p_keys is not null and jsonb_typeof(p_keys) <> 'object' then
    raise exception 'keys must map spine columns to feature-group keys, e.g. {"customer": "customer_id"}'
      using errcode = '22023';
  end if;

  -- spine time: timestamptz as is, timestamp (and date) as UTC
  v_t_type := fstore.spine_column_type(p_spine, p_event_time_column, 'the event time column');
  v_t := case v_t_type
           when 'timestamptz'::regtype then format('s.%I', p_event_time_column)
           when 'timestamp'::regtype then format('(s.%I at time zone ''UTC'')', p_event_time_column)
           when 'date'::regtype then format('(s.%I::timestamp at time zone ''UTC'')', p_event_time_column)
         end;
  if v_t is null then
    raise exception 'spine column % must be a timestamp, timestamptz or date, not %', quote_ident(p_event_time_column),
      format_type(v_t_type, null) using errcode = '22023';
  end if;

  -- the spine is read in the order of the first feature group's keys and time (its index
  -- probes then walk the index in order: much less work per probe); the rows come out in
  -- spine order: an explicit column, else the physical order of a table (as loaded)
  select array_agg(format('%I', coalesce((select k.key from jsonb_each_text(coalesce(p_keys, '{}')) k
                                           where k.value = g.key limit 1), g.key)) order by g.i)
    into v_sort_cols from jsonb_array_elements_text(v_plan->0->'keys') with ordinality g(key, i);
  -- (only when every sort column is there: otherwise the join reports the missing one)
  v_presort := coalesce(p_sorted, true) and v_relkind in ('r', 'm', 't')
    and (select count(*) from pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
           and format('%I', a.attname) = any(v_sort_cols)) = cardinality(v_sort_cols)
    and not exists (select 1 from pg_attribute a where a.attrelid = p_spine and a.attname = '_fstore_ctid');
  v_sort_list := array_to_string(v_sort_cols || format('%I', p_event_time_column), ', ');
  if p_order_column is not null then
    perform fstore.spine_column_type(p_spine, p_order_column, 'the order column');
    v_order := format('s.%I', p_order_column);
    v_from := case when v_presort then format('(select * from %s order by %s) s', v_spine_name, v_sort_list)
                   else format('%s s', v_spine_name) end;
  elsif v_relkind in ('r', 'm', 't') and v_presort then
    v_order := 's._fstore_ctid';
    v_from := format('(select ctid as _fstore_ctid, * from %s order by %s) s', v_spine_name, v_sort_list);
  elsif v_relkind in ('r', 'm', 't') then
    v_order := 's.ctid';
    v_from := format('%s s', v_spine_name);
  elsif v_relkind = 'p' then
    v_order := 's.tableoid, s.ctid';
    v_from := format('%s s', v_spine_name);
  else  -- a view or foreign table: the order it returns rows in
    v_order := 's._fstore_spine_row';
    v_from := format('(select row_number() over () as _fstore_spine_row, v.* from %s v) s', v_spine_name);
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
  if not coalesce(p_sorted, true) then
    if p_order_column is null or p_row_number is not null then
      raise exception 'an unsorted point-in-time query needs an order column (and no row number)'
        using errcode = '22023';
    end if;
    v_select := v_select || format('s.%I', p_order_column);
  end if;
  if p_row_number is not null then
    if p_row_number = any(v_spine_cols) then
      raise exception 'spine column % clashes with the row number column', quote_ident(p_row_number)
        using errcode = '42702';
    end if;
    v_select := v_select || format('row_number() over (order by %s) as %I', v_order, p_row_number);
  end if;
  foreach v_col in array v_spine_cols loop
    v_select := v_select || format('s.%I', v_col);
  end loop;

  for v_fg in select g from jsonb_array_elements(v_plan) g loop
    v_i := v_i + 1;
    v_alias := 'f' || v_i;
    v_offline := format('%I.%I', v_fg->>'project', v_fg->>'table')::regclass;
    v_conds := '{}';
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
    end loop;
    v_conds := v_conds || format('o.%I <= %s', v_fg->>'event_time', v_t);
    v_ttl := coalesce(p_ttl, (v_fg->>'ttl')::interval);
    if v_ttl is not null then
      v_conds := v_conds || format('o.%I >= %s - %L::interval', v_fg->>'event_time', v_t, v_ttl);
    end if;
    if p_as_of_commits is not null then
      v_as_of := p_as_of_commits->(v_fg->>'id');
      if v_as_of is null then
        raise exception 'no as-of commit given for feature group %.%@%', v_fg->>'project', v_fg->>'name', v_fg->>'version'
          using errcode = '22023';
      end if;
      if jsonb_typeof(v_as_of) = 'object' then
        if v_as_of->'max_commit' is null or jsonb_typeof(v_as_of->'max_commit') = 'null' then
          v_conds := v_conds || 'false'::text;  -- it had no commits then
        else
          v_conds := v_conds || format('o._commit_id <= %s', (v_as_of->>'max_commit')::bigint);
          -- commits that were in flight then and landed later with a lower id
          select array_agg(c.id order by c.id) into v_holes from fstore.commits c
           where c.feature_group_id = (v_fg->>'id')::bigint and c.id <= (v_as_of->>'max_commit')::bigint
             and not (coalesce(v_as_of->'commits', '[]') @> to_jsonb(c.id));
          if v_holes is not null then
            v_conds := v_conds || format('o._commit_id <> all (%L::bigint[])', v_holes);
          end if;
        end if;
      else
        v_conds := v_conds || format('o._commit_id <= %s', (v_as_of #>> '{}')::bigint);
      end if;
    end if;
    for v_feature in select f from jsonb_array_elements(v_fg->'features') f loop
      if v_feature->>'output' = any(v_spine_cols) then
        raise exception 'feature name % is ambiguous: the spine has a column of that name too', v_feature->>'output'
          using errcode = '42702', hint = 'rename the spine column or ask for full feature names (group__feature)';
      end if;
      v_select := v_select || format('%I.%I as %I', v_alias, v_feature->>'name', v_feature->>'output');
    end loop;
    v_joins := v_joins || format(
      E'\n  left join lateral (select %s from %s o\n     where %s\n     order by o.%I desc, o._commit_id desc limit 1) %I on true',
      (select string_agg(format('o.%I', f->>'name'), ', ') from jsonb_array_elements(v_fg->'features') f),
      v_offline, array_to_string(v_conds, E'\n       and '), v_fg->>'event_time', v_alias);
  end loop;

  return format(E'select %s\n  from %s%s%s', array_to_string(v_select, ', '), v_from, v_joins,
                case when coalesce(p_sorted, true) then E'\n order by ' || v_order else '' end);
end $$;

grant execute on function fstore.require_session_project(), fstore.resolve_features(text[], boolean),
  fstore.spine_column_type(regclass, text, text),
  fstore.training_data_sql(regclass, text[], text, interval, boolean, jsonb, jsonb, text[], text, text, boolean)
  to public;

-- Split assignment of one row: by fraction ({"train": 0.8, "test": 0.2}, a seeded hash
-- of the row number, so the same seed gives the same split) or by time ranges
-- ({"train": ["2024-01-01", "2024-06-01"], "test": ["2024-06-01", null]}, start
-- inclusive, end exclusive, null = open); NULL when the row falls in no range.
create function fstore.split_expression(p_split jsonb, p_seed bigint, p_row text, p_time text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_kinds text[];
  v_total numeric := 0;
  v_case text := 'case';
  v_entry record;
  v_start timestamptz;
  v_end timestamptz;
  v_other record;
begin
  if p_split is null then
    return null;
  end if;
  if jsonb_typeof(p_split) <> 'object' or p_split = '{}' then
    raise exception 'split must be an object: {"train": 0.8, "test": 0.2} or {"train": [start, end], ...}'
      using errcode = '22023';
  end if;
  select array_agg(distinct jsonb_typeof(value)) into v_kinds from jsonb_each(p_split);
  if v_kinds = array['number'] then
    for v_entry in select key, value::numeric as fraction from jsonb_each(p_split) order by key loop
      if v_entry.fraction <= 0 or v_entry.fraction > 1 then
        raise exception 'split fraction of % must be in (0, 1], not %', v_entry.key, v_entry.fraction using errcode = '22023';
      end if;
      v_total := v_total + v_entry.fraction;
      v_case := v_case || format(' when _u < %s then %L', v_total, v_entry.key);
    end loop;
    if abs(v_total - 1) > 1e-9 then
      raise exception 'split fractions must add up to 1, not %', v_total using errcode = '22023';
    end if;
    -- a uniform number in [0, 1) from a seeded hash of the row number
    return format('(select %s else %L end from (select (hashint8extended(%s, %s)::float8 / 18446744073709551616.0 + 0.5) as _u) u)',
                  v_case, (select max(key) from jsonb_each(p_split)), p_row, p_seed);
  elsif v_kinds = array['array'] then
    for v_entry in select key, value from jsonb_each(p_split) order by key loop
      if jsonb_array_length(v_entry.value) <> 2 then
        raise exception 'split % must be [start, end] (null for an open end)', v_entry.key using errcode = '22023';
      end if;
      v_start := (v_entry.value->>0)::timestamptz;
      v_end := (v_entry.value->>1)::timestamptz;
      if v_start >= v_end then
        raise exception 'split % starts at or after its end', v_entry.key using errcode = '22023';
      end if;
      for v_other in select key, value from jsonb_each(p_split) where key < v_entry.key loop
        if coalesce(v_start < (v_other.value->>1)::timestamptz, true)
           and coalesce((v_other.value->>0)::timestamptz < v_end, true) then
          raise exception 'splits % and % overlap', v_other.key, v_entry.key using errcode = '22023';
        end if;
      end loop;
      v_case := v_case || format(' when %s and %s then %L',
        case when v_start is null then 'true' else format('%s >= %L::timestamptz', p_time, v_start) end,
        case when v_end is null then 'true' else format('%s < %L::timestamptz', p_time, v_end) end, v_entry.key);
    end loop;
    return v_case || ' end';
  end if;
  raise exception 'split values must be all fractions or all [start, end] time ranges' using errcode = '22023';
end $$;


-- The catalog record of a training dataset as JSON, with the files it was exported to.
create function fstore.training_dataset_json(p_td fstore.training_datasets) returns jsonb
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select to_jsonb(p_td) || jsonb_build_object('exports', coalesce(
    (select jsonb_agg(jsonb_build_object('format', e.format, 'path', e.path, 'rows', e.rows, 'at', e.at, 'by', e.by,
                                         'app_id', e.app_id) order by e.id)
       from fstore.training_dataset_exports e where e.training_dataset_id = p_td.id), '[]'))
$$;

-- Store a finished training table: the builder's temporary table becomes
-- <project>.<name>__td<version>, owned by the project owner, readable by those who may
-- read the project's tables, and is recorded in the catalog with the provenance the
-- builder computed. Only fstore.build_training_table calls it (EXECUTE: fstore_builder).
create function fstore.store_training_table(p_name text, p_source regclass, p_meta jsonb)
returns fstore.training_datasets
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.require_session_project();
  v_owner text := fstore.owner_role(v_project);
  v_version integer;
  v_table text;
  v_grant record;
  v_rows bigint;
  v_record fstore.training_datasets;
begin
  perform fstore.check_feature_group_name(p_name);
  if not exists (select 1 from pg_catalog.pg_class c where c.oid = p_source and c.relkind = 'r'
                    and c.relnamespace = pg_catalog.pg_my_temp_schema()
                    and c.relowner = (select oid from pg_catalog.pg_roles where rolname = 'fstore_builder')) then
    raise exception 'training data is stored only from the builder''s own table, not %', p_source
      using errcode = '42501';
  end if;
  perform fstore.lock_project(v_project);  -- versions are allocated one at a time
  select coalesce(max(version), 0) + 1 into v_version from fstore.training_datasets
   where project = v_project and name = p_name;
  v_table := p_name || '__td' || v_version;
  if to_regclass(format('%I.%I', v_project, v_table)) is not null then
    raise exception 'table %.% exists already', v_project, v_table using errcode = '42P07';
  end if;

  execute format('create table %I.%I as select * from only %s order by _row', v_project, v_table, p_source);
  get diagnostics v_rows = row_count;
  execute format('alter table %I.%I owner to %I', v_project, v_table, v_owner);
  -- reads as the project's own tables get them by default (members, auditor, builder,
  -- shares); no writes: a training dataset is stored once
  for v_grant in
    select distinct case when a.grantee = 0 then 'public' else quote_ident(r.rolname) end as grantee
      from pg_catalog.pg_default_acl d cross join lateral aclexplode(d.defaclacl) a
      left join pg_catalog.pg_roles r on r.oid = a.grantee
     where d.defaclrole = (select oid from pg_catalog.pg_roles where rolname = v_owner)
       and d.defaclnamespace = (select oid from pg_catalog.pg_namespace where nspname = v_project)
       and d.defaclobjtype = 'r' and a.privilege_type = 'SELECT'
  loop
    execute format('grant select on table %I.%I to %s', v_project, v_table, v_grant.grantee);
  end loop;

  insert into fstore.training_datasets (project, name, version, table_name, features, feature_groups,
    spine_columns, event_time_column, ttl, full_feature_names, keys, label, split, seed, spine_hash, rows,
    description, client_serial, app_id)
  values (v_project, p_name, v_version, v_table,
    array(select jsonb_array_elements_text(p_meta->'features')), p_meta->'feature_groups',
    array(select jsonb_array_elements_text(p_meta->'spine_columns')), p_meta->>'event_time_column',
    (p_meta->>'ttl')::interval, coalesce((p_meta->>'full_feature_names')::boolean, false),
    nullif(p_meta->'keys', 'null'::jsonb),
    array(select jsonb_array_elements_text(coalesce(p_meta->'label', '[]'))), nullif(p_meta->'split', 'null'::jsonb),
    coalesce((p_meta->>'seed')::bigint, 0), p_meta->>'spine_hash', v_rows,
    coalesce(p_meta->>'description', ''), fstore.session_serial(), fstore.session_app_id())
  returning * into v_record;
  -- the row policies of the groups it read, entity policies, and the shares it came through
  perform fstore.apply_table_rules(format('%I.%I', v_project, v_table)::regclass);
  perform fstore.audit(v_project, 'create_training_dataset', jsonb_build_object(
    'name', p_name, 'version', v_version, 'table', v_table, 'rows', v_rows,
    'feature_groups', (select jsonb_agg(jsonb_build_object('id', g->'id', 'project', g->'project', 'name', g->'name',
                                                             'version', g->'version', 'max_commit', g->'max_commit'))
                         from jsonb_array_elements(p_meta->'feature_groups') g),
    'spine_hash', p_meta->>'spine_hash'));
  return v_record;
end $$;

-- Refuse a spine fstore's builder may not read for the caller: anything but an ordinary
-- temporary table of this session that the caller owns, with built-in column types, no
-- row-level security and no child tables (its reading must run nothing of the caller's).
create function fstore.check_builder_spine(p_spine regclass) returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from pg_catalog.pg_class c
                  where c.oid = p_spine and c.relkind = 'r' and c.relnamespace = pg_catalog.pg_my_temp_schema()
                    and not c.relrowsecurity
                    and pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER')
                    and c.relowner <> (select oid from pg_catalog.pg_roles where rolname = 'fstore_builder'))
     or exists (select 1 from pg_catalog.pg_policy p where p.polrelid = p_spine)
     or exists (select 1 from pg_catalog.pg_inherits h where h.inhparent = p_spine or h.inhrelid = p_spine) then
    raise exception 'the builder reads a spine only from an ordinary temporary table of this session, not %', p_spine
      using errcode = '42501', hint = 'fstore.create_training_table copies any other spine into one first';
  end if;
  if exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped
                and not fstore.trusted_type(a.atttypid)) then
    raise exception 'spine % has a column of a type of its own: use built-in types', p_spine using errcode = '42501';
  end if;
end $$;

-- THE builder of stored training datasets: the point-in-time join over the spine,
-- computed here, by fstore itself, with the rows its caller may read (row policies
-- identify the reader by session_user), in one snapshot together with the commits it saw,
-- an optional split column, then stored with the provenance computed here. SECURITY
-- DEFINER (fstore_builder, which can read feature tables but holds nothing else), so
-- that no caller can record a version of rows they made up.
create function fstore.build_training_table(
  p_name text, p_spine regclass, p_features text[], p_event_time_column text, p_ttl interval,
  p_full_feature_names boolean, p_keys jsonb, p_label text[], p_split jsonb, p_seed bigint, p_description text
) returns fstore.training_datasets
language plpgsql volatile security definer
set search_path = pg_catalog, fstore, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, YMD' set intervalstyle = 'postgres' set extra_float_digits = 1
set row_security = on
as $$
declare
  v_plan jsonb;
  v_query text;
  v_spine_cols text[];
  v_col text;
  v_split text;
  v_t text;
  v_groups jsonb;
  v_hash text;
  v_group jsonb;
  v_offline regclass;
  v_record fstore.training_datasets;
begin
  perform fstore.require_session_project();
  perform fstore.check_feature_group_name(p_name);
  perform fstore.check_builder_spine(p_spine);
  v_plan := fstore.resolve_features(p_features, p_full_feature_names);
  -- the caller's own rights on what the join reads (the builder's are wider)
  for v_group in select g from jsonb_array_elements(v_plan) g loop
    v_offline := format('%I.%I', v_group->>'project', v_group->>'table')::regclass;
    v_col := (select c from (select unnest(array(select jsonb_array_elements_text(v_group->'keys')))
                              union all select v_group->>'event_time'
                              union all select f->>'name' from jsonb_array_elements(v_group->'features') f) cols(c)
               where not pg_catalog.has_column_privilege(session_user, v_offline, c, 'SELECT') limit 1);
    if v_col is not null then
      raise exception 'permission denied: % may not read %.% (column %)', session_user, v_group->>'project',
        v_group->>'name', v_col using errcode = '42501';
    end if;
  end loop;
  v_query := fstore.training_data_sql(p_spine, p_features, p_event_time_column, p_ttl, p_full_feature_names,
                                      p_keys, null, null, null, '_row');
  select coalesce(array_agg(a.attname::text order by a.attnum), '{}') into v_spine_cols
    from pg_catalog.pg_attribute a where a.attrelid = p_spine and a.attnum > 0 and not a.attisdropped;
  foreach v_col in array coalesce(p_label, '{}') loop
    perform fstore.spine_column_type(p_spine, v_col, 'named as a label');
  end loop;
  if p_split is not null and 'split' = any(v_spine_cols) then
    raise exception 'spine column split clashes with the split column of the training dataset' using errcode = '42702';
  end if;
  v_t := case fstore.spine_column_type(p_spine, p_event_time_column, 'the event time column')
           when 'timestamptz'::regtype then format('q.%I', p_event_time_column)
           else format('(q.%I::timestamp at time zone ''UTC'')', p_event_time_column) end;
  v_split := fstore.split_expression(p_split, p_seed, 'q._row', v_t);

  drop table if exists pg_temp._fstore_training, pg_temp._fstore_training_commits;
  create temp table _fstore_training_commits (feature_group_id bigint, commits bigint[]) on commit drop;
  execute format('create temp table _fstore_training on commit drop as select q.*%s from (%s) q limit 0',
                 case when v_split is null then '' else ', null::text as split' end, v_query);
  -- one statement, one snapshot: the rows read and the commits seen agree
  execute format(
    'with seen as (insert into pg_temp._fstore_training_commits
                   select g.id, array(select c.id from fstore.commits c where c.feature_group_id = g.id
                                         and c.state = ''done'' order by c.id)
                     from unnest(%L::bigint[]) g(id))
     insert into pg_temp._fstore_training select * from (select q.*%s from (%s) q) r%s',
    (select array_agg((g->>'id')::bigint) from jsonb_array_elements(v_plan) g),
    case when v_split is null then '' else ', ' || v_split || ' as split' end, v_query,
    case when v_split is null then '' else ' where r.split is not null' end);

  select jsonb_agg(jsonb_build_object('id', g->'id', 'project', g->'project', 'name', g->'name',
                                      'version', g->'version', 'max_commit', c.commits[cardinality(c.commits)],
                                      'commits', to_jsonb(c.commits), 'features', g->'features',
                                      'key_columns', (select coalesce(jsonb_object_agg(k, coalesce(
                                          (select m.key from jsonb_each_text(coalesce(p_keys, '{}')) m where m.value = k limit 1), k)), '{}')
                                          from jsonb_array_elements_text(g->'keys') k)) order by i)
    into v_groups
    from jsonb_array_elements(v_plan) with ordinality e(g, i)
    join pg_temp._fstore_training_commits c on c.feature_group_id = (g->>'id')::bigint;
  execute format('select md5(coalesce(string_agg(md5(row(%s)::text), '''' order by _row), '''')) from pg_temp._fstore_training',
                 (select string_agg(format('%I', c), ', ') from unnest(v_spine_cols) c))
    into v_hash;

  grant select on pg_temp._fstore_training to fstore_control;
  v_record := fstore.store_training_table(p_name, 'pg_temp._fstore_training'::regclass, jsonb_build_object(
    'features', to_jsonb(p_features), 'feature_groups', v_groups, 'spine_columns', to_jsonb(v_spine_cols),
    'event_time_column', p_event_time_column, 'ttl', p_ttl, 'full_feature_names', p_full_feature_names,
    'keys', p_keys, 'label', to_jsonb(coalesce(p_label, '{}')), 'split', p_split, 'seed', p_seed,
    'spine_hash', v_hash, 'description', p_description));
  drop table pg_temp._fstore_training, pg_temp._fstore_training_commits;
  return v_record;
end $$;

-- Build a training table (the same call Python makes): the spine is read with the
-- caller's rights (any relation they may read; copied into a temporary table unless it
-- is one already), then fstore's builder computes and stores the dataset. Returns the
-- catalog record.
create function fstore.create_training_table(
  p_name text, p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_keys jsonb default null,
  p_label text[] default '{}', p_split jsonb default null, p_seed bigint default 0,
  p_description text default ''
) returns fstore.training_datasets
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_spine regclass := p_spine;
begin
  if p_spine is null then
    raise exception 'give a spine relation' using errcode = '22023';
  end if;
  begin
    perform fstore.check_builder_spine(p_spine);
  exception when insufficient_privilege then
    drop table if exists pg_temp._fstore_spine_copy;
    execute format('create temp table _fstore_spine_copy on commit drop as select * from %s', p_spine);
    v_spine := 'pg_temp._fstore_spine_copy'::regclass;
  end;
  execute format('grant select on %s to fstore_builder', v_spine);
  return fstore.build_training_table(p_name, v_spine, p_features, p_event_time_column, p_ttl, p_full_feature_names,
                                     p_keys, p_label, p_split, p_seed, p_description);
end $$;

-- The catalog record of a training dataset the caller can see (latest version by default).
-- One built from a project that is not (or no longer) shared with the caller is refused.
create function fstore.find_training_dataset(p_name text, p_version integer default null, p_project text default null)
returns fstore.training_datasets language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := coalesce(p_project, fstore.require_session_project());
  v_record fstore.training_datasets;
  v_source text;
begin
  select * into v_record from fstore.training_datasets
   where project = v_project and name = p_name and (p_version is null or version = p_version)
   order by version desc limit 1;
  if not found then
    raise exception 'training dataset % does not exist or is not visible to %',
      v_project || '.' || p_name || coalesce(' version ' || p_version, ''), session_user using errcode = 'P0002';
  end if;
  select g->>'project' into v_source from jsonb_array_elements(v_record.feature_groups) g
   where not fstore.session_sees_project(g->>'project') limit 1;
  if v_source is not null then
    raise exception 'permission denied: training dataset %.% was built from project %, which is not shared with %',
      v_project, p_name, v_source, session_user using errcode = '42501';
  end if;
  return v_record;
end $$;

-- The query that rebuilds a training dataset from its stored spine, reading every
-- feature group as of the commits it saw then: it returns the same rows (without
-- the split column) however many commits landed since.
create function fstore.training_dataset_sql(p_name text, p_version integer default null, p_project text default null)
returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets := fstore.find_training_dataset(p_name, p_version, p_project);
begin
  return fstore.training_data_sql(format('%I.%I', v_td.project, v_td.table_name)::regclass, v_td.features,
    v_td.event_time_column, v_td.ttl, v_td.full_feature_names, v_td.keys,
    (select jsonb_object_agg(g->>'id', g) from jsonb_array_elements(v_td.feature_groups) g),
    v_td.spine_columns, '_row');
end $$;

-- Record a file export of a training dataset (format, path, rows): a fact about the
-- session that wrote the file, which any reader of the dataset may record; it changes
-- nothing of the dataset's own record.
create function fstore.record_training_export(p_id bigint, p_format text, p_path text, p_rows bigint)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets;
begin
  select * into v_td from fstore.training_datasets where id = p_id and project = any(fstore.visible_projects());
  if not found then
    raise exception 'training dataset % does not exist or is not visible to %', p_id, session_user using errcode = 'P0002';
  end if;
  if coalesce(p_format, '') !~ '^[a-z]{1,20}$' or coalesce(p_path, '') = '' or p_rows is null or p_rows < 0 then
    raise exception 'an export record needs a format (a-z), a path and a row count' using errcode = '22023';
  end if;
  insert into fstore.training_dataset_exports (training_dataset_id, format, path, rows, client_serial, app_id)
  values (p_id, p_format, left(p_path, 4096), p_rows, fstore.session_serial(), fstore.session_app_id());
  perform fstore.audit(v_td.project, 'export_training_dataset', jsonb_build_object(
    'name', v_td.name, 'version', v_td.version, 'format', p_format, 'path', left(p_path, 4096), 'rows', p_rows));
end $$;

-- Drop a training dataset version (its table and its record), audited: its creator or a Data Owner.
create function fstore.drop_training_dataset(p_name text, p_version integer)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.require_session_project();
  v_td fstore.training_datasets;
begin
  select * into v_td from fstore.training_datasets where project = v_project and name = p_name and version = p_version;
  if not found then
    raise exception 'training dataset %.% version % does not exist', v_project, p_name, p_version using errcode = 'P0002';
  end if;
  if v_td.created_by <> session_user::text then
    perform fstore.require_data_owner(v_project, 'drop training datasets others created');
  end if;
  execute format('drop table if exists %I.%I', v_project, v_td.table_name);
  delete from fstore.managed_tables where training_dataset_id = v_td.id;
  delete from fstore.training_datasets where id = v_td.id;
  perform fstore.audit(v_project, 'drop_training_dataset', jsonb_build_object('name', p_name, 'version', p_version,
                                                                           'rows', v_td.rows));
end $$;

-- Data of a share follows the share: the training datasets project p_with built from
-- p_project's groups are dropped when the share ends (and recorded in both projects).
create function fstore.drop_derived_training_datasets(p_project text, p_with text) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets;
  v_dropped jsonb := '[]';
begin
  for v_td in select * from fstore.training_datasets t
               where t.project = p_with
                 and exists (select 1 from jsonb_array_elements(t.feature_groups) g where g->>'project' = p_project)
               order by t.id loop
    execute format('drop table if exists %I.%I', v_td.project, v_td.table_name);
    delete from fstore.managed_tables where training_dataset_id = v_td.id;
    delete from fstore.training_datasets where id = v_td.id;
    v_dropped := v_dropped || jsonb_build_object('project', v_td.project, 'name', v_td.name, 'version', v_td.version,
                                                 'rows', v_td.rows);
    perform fstore.audit(v_td.project, 'drop_training_dataset', jsonb_build_object(
      'name', v_td.name, 'version', v_td.version, 'rows', v_td.rows, 'reason', 'unshared', 'source', p_project));
  end loop;
  return v_dropped;
end $$;

grant execute on function
  fstore.split_expression(jsonb, bigint, text, text), fstore.training_dataset_json(fstore.training_datasets),
  fstore.check_builder_spine(regclass),
  fstore.build_training_table(text, regclass, text[], text, interval, boolean, jsonb, text[], jsonb, bigint, text),
  fstore.create_training_table(text, regclass, text[], text, interval, boolean, jsonb, text[], jsonb, bigint, text),
  fstore.find_training_dataset(text, integer, text), fstore.training_dataset_sql(text, integer, text),
  fstore.record_training_export(bigint, text, text, bigint), fstore.drop_training_dataset(text, integer)
  to public;  -- each checks the caller's membership itself
revoke execute on function fstore.store_training_table(text, regclass, jsonb) from public;
grant execute on function fstore.store_training_table(text, regclass, jsonb) to fstore_builder;

reset role;

-- the builder runs as fstore_builder, which reads feature tables and owns nothing else
alter function fstore.build_training_table(text, regclass, text[], text, interval, boolean, jsonb, text[], jsonb, bigint, text)
  owner to fstore_builder;
