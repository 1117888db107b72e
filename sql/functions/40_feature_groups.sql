-- Feature groups: lookups, the creation of a version's offline and online tables (by
-- the caller acting as the project's owner role, SET ROLE p__owner, as dbt does) and
-- their registration, added features, and the commit records with the commit lock. The
-- catalog is written only through SECURITY DEFINER functions that check the caller.

set role fstore_control;

create or replace function fstore.visible_feature_group(p_id bigint) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.feature_groups g
                  where g.id = p_id and g.project in (select unnest(fstore.visible_projects())))
$$;
comment on function fstore.visible_feature_group(bigint) is
  'True when the session''s person may see the feature group (its project is theirs or shared with theirs).';

create or replace function fstore.feature_group_by_id(p_id bigint) returns fstore.feature_groups
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
begin
  select * into v_fg from fstore.feature_groups where id = p_id;
  if not found or not fstore.visible_feature_group(p_id) then
    raise exception 'feature group % does not exist or is not visible to %', p_id, session_user using errcode = 'P0002';
  end if;
  return v_fg;
end $$;
comment on function fstore.feature_group_by_id(bigint) is
  'A feature group by id, or P0002 when it does not exist or the session''s person may not see it (the same answer whether called with the caller''s rights or a definer''s).';

create or replace function fstore.check_feature_group_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]{0,40}$' or position('__' in p_name) > 0 then
    raise exception 'invalid feature group name %: use 1-41 characters a-z, 0-9 and _, starting with a letter, without "__"',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  return p_name;
end $$;
comment on function fstore.check_feature_group_name(text) is
  'Return the name if it is a valid feature-group (or training-dataset) name; else an error that names it.';

create or replace function fstore.check_column_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z_][a-z0-9_]{0,62}$' or p_name like '\_commit%' then
    raise exception 'invalid column name %: use lower-case a-z, 0-9 and _ (names starting _commit are reserved)',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  return p_name;
end $$;
comment on function fstore.check_column_name(text) is
  'Return the name if it is a valid column name (names starting _commit are fstore''s); else an error that names it.';

create or replace function fstore.find_feature_group(p_project text, p_name text, p_version integer default null)
returns fstore.feature_groups language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
begin
  select * into v_fg from fstore.feature_groups
   where project = p_project and name = p_name and (p_version is null or version = p_version)
   order by version desc limit 1;
  if not found then
    raise exception 'feature group % does not exist or is not visible to %',
      p_project || '.' || p_name || coalesce('@' || p_version, ''), session_user using errcode = 'P0002';
  end if;
  return v_fg;
end $$;
comment on function fstore.find_feature_group(text,text,integer) is
  'The catalog row of a feature group the caller can see: latest version when p_version is null.';

create or replace function fstore.feature_group_json(p_id bigint) returns jsonb
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select to_jsonb(g) || jsonb_build_object('features', coalesce((
           select jsonb_agg(jsonb_build_object(
                    'name', f.name, 'data_type', f.data_type, 'description', f.description,
                    'position', f.position, 'is_key', f.is_key,
                    'sensitive', exists (select 1 from fstore.sensitive_features s
                                          where s.project = g.project and s.feature_group = g.name and s.feature = f.name),
                    'pg_type', coalesce(format_type(a.atttypid, a.atttypmod), f.data_type)) order by f.position)
             from fstore.features f
             left join pg_catalog.pg_namespace n on n.nspname = g.project
             left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = g.offline_table
             left join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attname = f.name and not a.attisdropped
            where f.feature_group_id = g.id), '[]'))
    from fstore.feature_group_by_id(p_id) g
$$;
comment on function fstore.feature_group_json(bigint) is
  'A feature group the caller can see, as JSON: the catalog row with its features (name, type as recorded, PostgreSQL''s type of the offline column, description, position, key). The one description of a feature group for Python, dbt and online serving.';

create or replace function fstore.claim_feature_group_version(p_project text, p_name text, p_version integer) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_next integer;
begin
  perform fstore.require_data_owner(p_project, 'create feature groups');
  perform fstore.lock_project(p_project);
  select coalesce(max(version), 0) + 1 into v_next from fstore.feature_groups where project = p_project and name = p_name;
  if p_version is not null and exists (select 1 from fstore.feature_groups
                                        where project = p_project and name = p_name and version = p_version) then
    raise exception 'feature group %.% version % already exists', p_project, p_name, p_version using errcode = '42710',
      hint = format('the next free version is %s', v_next);
  end if;
  return coalesce(p_version, v_next);
end $$;
comment on function fstore.claim_feature_group_version(text,text,integer) is
  'A version number for a new feature-group version, under the project''s lock (held until the transaction ends): the given one if it is free, else an error; without one, the next.';

create or replace function fstore.comment_feature_group_tables(p_id bigint) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_table text;
  v_feature record;
begin
  select * into v_fg from fstore.feature_groups where id = p_id;
  foreach v_table in array array_remove(array[v_fg.offline_table, v_fg.online_table], null) loop
    continue when to_regclass(format('%I.%I', v_fg.project, v_table)) is null;
    execute format('comment on table %I.%I is %L', v_fg.project, v_table,
      format('%s of feature group %s version %s%s (fstore; keys %s, event time %s)',
             case when v_table = v_fg.online_table then 'Latest row per entity (online table)'
                  else 'Offline history' end,
             v_fg.name, v_fg.version, coalesce(': ' || nullif(v_fg.description, ''), ''),
             array_to_string(v_fg.entity_keys, ', '), v_fg.event_time));
    for v_feature in select f.name, f.description, f.is_key from fstore.features f
                      where f.feature_group_id = p_id order by f.position loop
      execute format('comment on column %I.%I.%I is %L', v_fg.project, v_table, v_feature.name,
                     coalesce(nullif(v_feature.description, ''), case when v_feature.is_key then 'entity key' end));
    end loop;
    execute format('comment on column %I.%I.%I is %L', v_fg.project, v_table, v_fg.event_time,
                   'event time: when the features were true');
    execute format('comment on column %I.%I._commit_id is %L', v_fg.project, v_table,
                   'the commit that wrote this row (fstore.commits.id): reads as of a commit and ties go by it');
  end loop;
end $$;
comment on function fstore.comment_feature_group_tables(bigint) is
  'COMMENT ON a feature group''s offline and online tables and their columns, from its catalog description, so that psql''s \d+ explains them.';

create or replace function fstore.register_feature_group(
  p_project text, p_name text, p_version integer, p_keys text[], p_event_time text,
  p_features jsonb, p_online boolean, p_ttl interval, p_description text, p_tags text[],
  p_statistics boolean, p_options jsonb, p_upstream jsonb
) returns bigint language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_id bigint;
  v_offline text := p_name || '__v' || p_version;
  v_online text := case when p_online then p_name || '__v' || p_version || '__online' end;
  v_feature jsonb;
  v_position integer := 0;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'create feature groups');
  if not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = p_project and c.relname = v_offline
                    and c.relowner = (select oid from pg_roles where rolname = fstore.owner_role(p_project))) then
    raise exception 'offline table %.% must exist and be owned by %__owner', p_project, v_offline, p_project
      using errcode = '42501';
  end if;
  insert into fstore.feature_groups (project, name, version, entity_keys, event_time, online, ttl,
    description, tags, offline_table, online_table, statistics_enabled, options, upstream)
  values (p_project, p_name, p_version, p_keys, p_event_time, p_online, p_ttl,
    coalesce(p_description, ''), coalesce(p_tags, '{}'), v_offline, v_online, coalesce(p_statistics, true),
    coalesce(p_options, '{}'), coalesce(p_upstream, '[]'))
  returning id into v_id;
  for v_feature in select * from jsonb_array_elements(p_features) loop
    v_position := v_position + 1;
    insert into fstore.features (feature_group_id, name, data_type, description, position, is_key)
    values (v_id, v_feature->>'name', v_feature->>'type', coalesce(v_feature->>'description', ''),
            v_position, (v_feature->>'name') = any(p_keys));
  end loop;
  insert into fstore.feature_group_locks (feature_group_id) values (v_id);
  -- now that the catalog knows them, the tables get the rules of feature-group tables
  perform fstore.apply_table_rules(format('%I.%I', p_project, v_offline)::regclass);
  if p_online then
    perform fstore.apply_table_rules(format('%I.%I', p_project, v_online)::regclass);
  end if;
  perform fstore.comment_feature_group_tables(v_id);
  perform fstore.audit(p_project, 'create_feature_group',
                       jsonb_build_object('name', p_name, 'version', p_version, 'online', p_online));
  return v_id;
end $$;
comment on function fstore.register_feature_group(text,text,integer,text[],text,jsonb,boolean,interval,text,text[],boolean,jsonb,jsonb) is
  'Record a feature group whose tables the caller (as p__owner) has just created.';

create or replace function fstore.describe_feature_group(p_id bigint, p_description text, p_tags text[],
  p_feature_descriptions jsonb, p_upstream jsonb) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
begin
  select * into v_fg from fstore.feature_groups where id = p_id;
  perform fstore.require_data_owner(v_fg.project, 'describe feature groups');
  update fstore.feature_groups set description = coalesce(p_description, description),
    tags = coalesce(p_tags, tags), upstream = coalesce(p_upstream, upstream) where id = p_id;
  update fstore.features f set description = d.value
    from jsonb_each_text(coalesce(p_feature_descriptions, '{}')) d
   where f.feature_group_id = p_id and f.name = d.key;
  perform fstore.comment_feature_group_tables(p_id);
end $$;
comment on function fstore.describe_feature_group(bigint,text,text[],jsonb,jsonb) is
  'Update descriptions, tags and upstream lineage of an existing version (no schema change).';

create or replace function fstore.check_column_type(p_column text, p_type text) returns text
language plpgsql stable set search_path = pg_catalog, public, fstore, pg_temp as $$
declare
  v_type text := lower(btrim(p_type));
begin
  if v_type is null or v_type !~ '^[a-z][a-z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$' or to_regtype(v_type) is null then
    raise exception 'column % has unknown type %', p_column, coalesce(quote_literal(p_type), 'NULL')
      using errcode = '42704';
  end if;
  if not fstore.trusted_type(to_regtype(v_type)) then
    raise exception 'column % has type %, which is not a built-in or extension type', p_column, to_regtype(v_type)
      using errcode = '42501', hint = 'a type or domain of a project''s own would run its checks as every reader';
  end if;
  return v_type;
end $$;
comment on function fstore.check_column_type(text,text) is
  'A column''s type as a feature group takes it: a type name, optionally with a modifier and [] (validated, then used verbatim in DDL); an error names the column otherwise.';

create or replace function fstore.create_feature_group(
  p_project text, p_name text, p_version integer, p_keys text[], p_event_time text,
  p_columns jsonb, p_online boolean default false, p_ttl interval default null,
  p_description text default '', p_tags text[] default '{}', p_statistics boolean default true,
  p_options jsonb default '{}', p_upstream jsonb default '[]'
) returns bigint language plpgsql volatile set search_path = pg_catalog, public, fstore, pg_temp as $$
declare
  v_version integer := p_version;
  v_offline text;
  v_online text;
  v_col jsonb;
  v_type text;
  v_defs text[] := '{}';
  v_features jsonb := '[]';
  v_key_list text;
  v_include text[] := '{}';
  v_key text;
  v_hnsw record;
  v_id bigint;
begin
  perform fstore.check_project_name(p_project);
  perform fstore.check_feature_group_name(p_name);
  if current_user::text <> fstore.owner_role(p_project) then
    raise exception 'create feature groups as the project owner role: SET ROLE %__owner first', p_project
      using errcode = '42501';
  end if;
  if v_version is not null and v_version < 1 then
    raise exception 'feature group version must be a positive integer' using errcode = '22023';
  end if;
  -- the next version (when none is given) is allocated here, under the project's lock
  v_version := fstore.claim_feature_group_version(p_project, p_name, v_version);
  v_offline := p_name || '__v' || v_version;
  v_online := p_name || '__v' || v_version || '__online';
  if coalesce(array_length(p_keys, 1), 0) = 0 then
    raise exception 'feature group % needs at least one entity key column', p_name using errcode = '22023';
  end if;
  perform fstore.check_column_name(p_event_time);
  foreach v_key in array p_keys loop
    perform fstore.check_column_name(v_key);
    if not exists (select 1 from jsonb_array_elements(p_columns) c where c->>'name' = v_key) then
      raise exception 'entity key column % is not among the columns of %', v_key, p_name using errcode = '42703';
    end if;
  end loop;
  perform fstore.check_distribution_key(p_name, p_keys, coalesce(p_options, '{}'));
  for v_col in select * from jsonb_array_elements(p_columns) loop
    perform fstore.check_column_name(v_col->>'name');
    if v_col->>'name' = p_event_time then
      continue;
    end if;
    v_type := fstore.check_column_type(v_col->>'name', v_col->>'type');
    v_defs := v_defs || format('%I %s%s', v_col->>'name', v_type,
                               case when v_col->>'name' = any(p_keys) then ' not null' else '' end);
    v_features := v_features || jsonb_build_object('name', v_col->>'name', 'type', v_type,
                                                   'description', coalesce(v_col->>'description', ''));
    if not (v_col->>'name' = any(p_keys)) and v_type not like 'vector%' then
      v_include := v_include || format('%I', v_col->>'name');
    end if;
  end loop;
  -- options.offline_index: 'covering' (default: the point-in-time index includes the
  -- non-vector features, so lookups can be index-only) or 'keys' (keys, event time and
  -- commit only: about half the index to write on every commit, lookups visit the heap)
  if coalesce(p_options->>'offline_index', 'covering') not in ('covering', 'keys') then
    raise exception 'options.offline_index must be covering or keys, not %', quote_literal(p_options->>'offline_index')
      using errcode = '22023';
  end if;
  if p_options->>'offline_index' = 'keys' then
    v_include := '{}';
  end if;
  select string_agg(format('%I', k), ', ') into v_key_list from unnest(p_keys) k;
  execute format('create table %I.%I (%s, %I timestamptz not null, _commit_id bigint not null)',
                 p_project, v_offline, array_to_string(v_defs, ', '), p_event_time);
  execute format('create index %I on %I.%I (%s, %I desc, _commit_id desc)%s',
                 v_offline || '_pit', p_project, v_offline, v_key_list, p_event_time,
                 case when array_length(v_include, 1) > 0
                      then ' include (' || array_to_string(v_include, ', ') || ')' else '' end);
  if p_online then
    execute format('create table %I.%I (%s, %I timestamptz not null, _commit_id bigint not null, primary key (%s))',
                   p_project, v_online, array_to_string(v_defs, ', '), p_event_time, v_key_list);
  end if;
  -- options.hnsw: ["col", ...] (vector_l2_ops) or {"col": "vector_cosine_ops", ...}: an HNSW
  -- index on the online table's vector column, for nearest-neighbour lookups
  if coalesce(p_options, '{}') ? 'hnsw' then
    if not coalesce(p_online, false) then
      raise exception 'options.hnsw needs an online feature group: % is offline only', p_name using errcode = '22023';
    end if;
    if jsonb_typeof(p_options->'hnsw') not in ('array', 'object') then
      raise exception 'options.hnsw must be a list of vector columns or an object {column: operator class}'
        using errcode = '22023';
    end if;
    for v_hnsw in
      select h.value #>> '{}' as col, 'vector_l2_ops' as ops
        from jsonb_array_elements(case jsonb_typeof(p_options->'hnsw') when 'array' then p_options->'hnsw' end) h
      union all
      select h.key, h.value #>> '{}'
        from jsonb_each(case jsonb_typeof(p_options->'hnsw') when 'object' then p_options->'hnsw' end) h
    loop
      if not exists (select 1 from jsonb_array_elements(v_features) f
                      where f->>'name' = v_hnsw.col and f->>'type' ~ '^vector(\(\d+\))?$') then
        raise exception 'options.hnsw: % is not a vector feature of %', coalesce(quote_literal(v_hnsw.col), 'NULL'), p_name
          using errcode = '42703';
      end if;
      if v_hnsw.ops is null or v_hnsw.ops not in ('vector_l2_ops', 'vector_ip_ops', 'vector_cosine_ops', 'vector_l1_ops') then
        raise exception 'options.hnsw: unknown operator class % for %: use vector_l2_ops, vector_ip_ops, vector_cosine_ops or vector_l1_ops',
          coalesce(quote_literal(v_hnsw.ops), 'NULL'), v_hnsw.col using errcode = '22023';
      end if;
      execute format('create index on %I.%I using hnsw (%I %I)', p_project, v_online, v_hnsw.col, v_hnsw.ops);
    end loop;
  end if;
  v_id := fstore.register_feature_group(p_project, p_name, v_version, p_keys, p_event_time, v_features,
    p_online, p_ttl, p_description, p_tags, p_statistics, p_options, p_upstream);
  -- on a Citus coordinator with workers every group has both tables distributed, last: once
  -- registered and secured (sql/functions/41_distribution.sql), by options.distribution_key
  -- or its first key; options.distribution_key null keeps it on the coordinator
  if fstore.cluster_has_workers()
     and fstore.check_distribution_key(p_name, p_keys, coalesce(p_options, '{}')) is not null then
    perform fstore.distribute_feature_group(v_id);
  end if;
  return v_id;
end $$;
comment on function fstore.create_feature_group(text,text,integer,text[],text,jsonb,boolean,interval,text,text[],boolean,jsonb,jsonb) is
  'Create the offline (and online) tables of a new version and register it. SECURITY INVOKER: the caller must be acting as p__owner (SET ROLE), so the tables belong to the project; default privileges and the DDL guard then grant access and apply row-level security and the declared row policies.';

create or replace function fstore.add_features(p_feature_group_id bigint, p_columns jsonb) returns integer
language plpgsql volatile set search_path = pg_catalog, public, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_col jsonb;
  v_type text;
  v_added jsonb := '[]';
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  if current_user::text <> fstore.owner_role(v_fg.project) then
    raise exception 'add features as the project owner role: SET ROLE %__owner first', v_fg.project
      using errcode = '42501';
  end if;
  if jsonb_typeof(p_columns) is distinct from 'array' or jsonb_array_length(p_columns) = 0 then
    raise exception 'give the features to add as [{"name": ..., "type": ...}]' using errcode = '22023';
  end if;
  perform fstore.lock_feature_group(p_feature_group_id);
  for v_col in select * from jsonb_array_elements(p_columns) loop
    perform fstore.check_column_name(v_col->>'name');
    if v_col->>'name' = v_fg.event_time
       or exists (select 1 from fstore.features f where f.feature_group_id = v_fg.id and f.name = v_col->>'name') then
      raise exception 'feature group %.% version % already has a column %', v_fg.project, v_fg.name, v_fg.version,
        v_col->>'name' using errcode = '42701';
    end if;
    v_type := fstore.check_column_type(v_col->>'name', v_col->>'type');
    if fstore.is_distributed(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass) then
      -- a distributed group: the ALTER and the guard's policies (fstore_control) would reach
      -- the same shards over two roles' connections (a distributed deadlock): one role does both
      perform fstore.add_distributed_feature_column(p_feature_group_id, v_col->>'name', v_type);
    else
      execute format('alter table %I.%I add column %I %s', v_fg.project, v_fg.offline_table, v_col->>'name', v_type);
      if v_fg.online then
        execute format('alter table %I.%I add column %I %s', v_fg.project, v_fg.online_table, v_col->>'name', v_type);
      end if;
    end if;
    v_added := v_added || jsonb_build_object('name', v_col->>'name', 'type', v_type,
                                             'description', coalesce(v_col->>'description', ''));
  end loop;
  perform fstore.register_added_features(p_feature_group_id, v_added);
  return jsonb_array_length(v_added);
end $$;
comment on function fstore.add_features(bigint,jsonb) is
  'Add features to an existing version: the one schema change that needs no new version. p_columns: [{"name", "type", "description"?}]. Each becomes a nullable column of the offline (and online) table (no rewrite: rows committed before read NULL for it) and a feature in the catalog, after the others. It is not in the covering point-in-time index (lookups of it read the heap). Dropping, retyping or renaming a column, and changing keys or event_time, still need a new version. SECURITY INVOKER, as the project owner role (like create_feature_group); waits for a commit in flight.';

create or replace function fstore.qualified_column_type(p_column text, p_type text) returns text
language plpgsql stable set search_path = pg_catalog, public, fstore, pg_temp as $$
declare
  v_type text := fstore.check_column_type(p_column, p_type);
  v_schema text;
begin
  select n.nspname into v_schema from pg_catalog.pg_type t join pg_catalog.pg_namespace n on n.oid = t.typnamespace
   where t.oid = pg_catalog.to_regtype(v_type);
  if v_schema = 'pg_catalog' then
    return v_type;
  end if;
  return format('%I.%s', v_schema, v_type);
end $$;
comment on function fstore.qualified_column_type(text,text) is
  'fstore.check_column_type, with the schema of a type that is not in pg_catalog (e.g. public.vector(3)), resolved on check_column_type''s search_path: for DDL run on another search_path.';

create or replace function fstore.add_distributed_feature_column(p_feature_group_id bigint, p_name text, p_type text)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_type text;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'add features');
  if not fstore.is_distributed(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass) then
    raise exception 'feature group %.% is not distributed: add its features with fstore.add_features', v_fg.project,
      v_fg.name using errcode = '42501';
  end if;
  perform fstore.check_column_name(p_name);
  if p_name = v_fg.event_time
     or exists (select 1 from fstore.features f where f.feature_group_id = v_fg.id and f.name = p_name) then
    raise exception 'feature group %.% version % already has a column %', v_fg.project, v_fg.name, v_fg.version,
      p_name using errcode = '42701';
  end if;
  -- checked (a built-in or extension type, owned by a superuser), spelled with its schema as
  -- check_column_type resolved it (this function's search_path has no public)
  v_type := fstore.qualified_column_type(p_name, p_type);
  execute format('alter table %I.%I add column %I %s', v_fg.project, v_fg.offline_table, p_name, v_type);
  if v_fg.online then
    execute format('alter table %I.%I add column %I %s', v_fg.project, v_fg.online_table, p_name, v_type);
  end if;
end $$;
comment on function fstore.add_distributed_feature_column(bigint,text,text) is
  'fstore.add_features on a distributed feature group: adds one checked column to its offline (and online) table as fstore_control, so that Citus reaches the shards over one role''s connection (the ALTER as p__owner and the policies fstore writes after it as fstore_control ended in a distributed deadlock). Data Owners only.';
grant execute on function fstore.add_distributed_feature_column(bigint,text,text), fstore.qualified_column_type(text,text) to public;

create or replace function fstore.register_added_features(p_id bigint, p_features jsonb) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_feature jsonb;
  v_position integer;
begin
  v_fg := fstore.feature_group_by_id(p_id);
  perform fstore.require_data_owner(v_fg.project, 'add features');
  select coalesce(max(position), 0) into v_position from fstore.features where feature_group_id = p_id;
  for v_feature in select * from jsonb_array_elements(p_features) loop
    if not exists (select 1 from pg_attribute a
                     join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = v_fg.project and c.relname = v_fg.offline_table
                      and a.attname = v_feature->>'name' and not a.attisdropped) then
      raise exception 'column % is not on the offline table of %.%: add it there first', v_feature->>'name',
        v_fg.project, v_fg.offline_table using errcode = '42703';
    end if;
    v_position := v_position + 1;
    insert into fstore.features (feature_group_id, name, data_type, description, position, is_key)
    values (p_id, v_feature->>'name', v_feature->>'type', coalesce(v_feature->>'description', ''), v_position, false);
  end loop;
  perform fstore.apply_table_rules(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass);
  if v_fg.online then
    perform fstore.apply_table_rules(format('%I.%I', v_fg.project, v_fg.online_table)::regclass);
  end if;
  perform fstore.comment_feature_group_tables(p_id);
  perform fstore.audit(v_fg.project, 'add_features', jsonb_build_object(
    'feature_group', v_fg.name, 'version', v_fg.version,
    'features', (select jsonb_agg(f->>'name') from jsonb_array_elements(p_features) f)));
end $$;
comment on function fstore.register_added_features(bigint,jsonb) is
  'Record features the caller (as p__owner) has just added to a version''s tables.';

create or replace function fstore.require_writer(p_fg fstore.feature_groups) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not coalesce((select pg_catalog.has_table_privilege(session_user, c.oid, 'INSERT')
                      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                     where n.nspname = p_fg.project and c.relname = p_fg.offline_table), false) then
    raise exception 'permission denied: % may not write feature group %.%', session_user, p_fg.project, p_fg.name
      using errcode = '42501';
  end if;
end $$;
comment on function fstore.require_writer(fstore.feature_groups) is
  'May the session''s person write this feature group (INSERT on its offline table)?';

create or replace function fstore.lock_feature_group(p_feature_group_id bigint) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform fstore.require_writer(fstore.feature_group_by_id(p_feature_group_id));
  perform 1 from fstore.feature_group_locks where feature_group_id = p_feature_group_id for update;
end $$;
comment on function fstore.lock_feature_group(bigint) is
  'Take the feature group''s commit lock until the transaction ends (writers only).';

create or replace function fstore.begin_commit(p_feature_group_id bigint, p_source text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_id bigint;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_writer(v_fg);
  perform fstore.lock_feature_group(p_feature_group_id);
  if fstore.open_commit(p_feature_group_id) is not null then
    raise exception 'commit % of feature group %.% is still open in this transaction', fstore.open_commit(p_feature_group_id),
      v_fg.project, v_fg.name using errcode = '55000';
  end if;
  insert into fstore.commits (feature_group_id, source, client_serial, app_id)
  values (p_feature_group_id, coalesce(p_source, 'python'), fstore.session_serial(), fstore.session_app_id())
  returning id into v_id;
  return v_id;
end $$;
comment on function fstore.begin_commit(bigint,text) is
  'Open a commit record (who, which certificate and application) for a feature group: the only commit whose rows its tables take, in this transaction of this session.';

create or replace function fstore.open_commit(p_feature_group_id bigint) returns bigint
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select c.id from fstore.commits c
   where c.feature_group_id = p_feature_group_id and c.state = 'open' and c.session_role = session_user::text
     and c.backend_pid = pg_catalog.pg_backend_pid() and c.xact = pg_catalog.pg_current_xact_id()
$$;
comment on function fstore.open_commit(bigint) is
  'The commit of this feature group open in this transaction of this session, or NULL. The offline and online tables'' policies accept only rows carrying it.';

create or replace function fstore.finish_commit(p_commit_id bigint, p_rows bigint, p_online_rows bigint,
  p_min timestamptz, p_max timestamptz, p_validation jsonb, p_stats jsonb) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_commit fstore.commits;
  v_fg fstore.feature_groups;
begin
  select * into v_commit from fstore.commits where id = p_commit_id;
  if not found or v_commit.state <> 'open' or v_commit.session_role <> session_user::text
     or v_commit.backend_pid <> pg_catalog.pg_backend_pid() or v_commit.xact <> pg_catalog.pg_current_xact_id() then
    raise exception 'commit % is not open in this session', p_commit_id using errcode = '42501',
      hint = 'a finished commit is immutable';
  end if;
  select * into v_fg from fstore.feature_groups where id = v_commit.feature_group_id;
  update fstore.commits set rows = p_rows, online_rows = p_online_rows, min_event_time = p_min,
    max_event_time = p_max, validation = coalesce(p_validation, '{}'), state = 'done' where id = p_commit_id;
  insert into fstore.commit_statistics (commit_id, feature, stats)
  select p_commit_id, s.key, s.value from jsonb_each(coalesce(p_stats, '{}')) s;
  perform fstore.audit(v_fg.project, 'commit',
    jsonb_build_object('feature_group', v_fg.name, 'version', v_fg.version, 'commit', p_commit_id, 'rows', p_rows));
end $$;
comment on function fstore.finish_commit(bigint,bigint,bigint,timestamp with time zone,timestamp with time zone,jsonb,jsonb) is
  'Close an open commit with its totals and statistics; a finished commit never changes.';

create or replace function fstore.drop_feature_group(p_feature_group_id bigint) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_commits bigint;
  v_rows bigint;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'drop feature groups');
  perform fstore.lock_feature_group(p_feature_group_id);
  select count(*), coalesce(sum(rows), 0) into v_commits, v_rows from fstore.commits
   where feature_group_id = p_feature_group_id;
  if v_fg.online then
    execute format('drop table if exists %I.%I', v_fg.project, v_fg.online_table);
  end if;
  execute format('drop table if exists %I.%I', v_fg.project, v_fg.offline_table);
  delete from fstore.managed_tables where feature_group_id = p_feature_group_id;
  delete from fstore.feature_groups where id = p_feature_group_id;
  perform fstore.audit(v_fg.project, 'drop_feature_group', jsonb_build_object(
    'name', v_fg.name, 'version', v_fg.version, 'commits', v_commits, 'rows', v_rows));
end $$;
comment on function fstore.drop_feature_group(bigint) is
  'Drop a feature-group version: its tables, catalog rows, commits and statistics; audited. Data Owners only (the tables of a feature group cannot be dropped directly).';

grant execute on function
  fstore.visible_feature_group(bigint),
  fstore.feature_group_by_id(bigint),
  fstore.check_feature_group_name(text),
  fstore.check_column_name(text),
  fstore.find_feature_group(text,text,integer),
  fstore.feature_group_json(bigint),
  fstore.claim_feature_group_version(text,text,integer),
  fstore.register_feature_group(text,text,integer,text[],text,jsonb,boolean,interval,text,text[],boolean,jsonb,jsonb),
  fstore.describe_feature_group(bigint,text,text[],jsonb,jsonb),
  fstore.check_column_type(text,text),
  fstore.create_feature_group(text,text,integer,text[],text,jsonb,boolean,interval,text,text[],boolean,jsonb,jsonb),
  fstore.add_features(bigint,jsonb),
  fstore.register_added_features(bigint,jsonb),
  fstore.lock_feature_group(bigint),
  fstore.begin_commit(bigint,text),
  fstore.open_commit(bigint),
  fstore.finish_commit(bigint,bigint,bigint,timestamp with time zone,timestamp with time zone,jsonb,jsonb),
  fstore.drop_feature_group(bigint)
  to public;
-- feature groups made before their tables were commented (an upgrade) get their comments
select fstore.comment_feature_group_tables(id) from fstore.feature_groups;

reset role;
