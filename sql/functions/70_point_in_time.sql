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

create or replace function fstore.training_data_sql(
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
comment on function fstore.training_data_sql(regclass,text[],text,interval,boolean,jsonb,jsonb,text[],text,text,boolean) is
  'THE point-in-time join, as the text of a query over a spine relation: for each spine row (entity keys, time t) and each feature group, the row with the same keys and the greatest event_time <= t (and >= t - ttl), ties to the latest commit; one output row per spine row, in spine order. Run it yourself, or use fstore.historical_features(table, spine, features) to get a temporary table in one statement.';

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
  fstore.training_data_sql(regclass,text[],text,interval,boolean,jsonb,jsonb,text[],text,text,boolean)
  to public;
reset role;
