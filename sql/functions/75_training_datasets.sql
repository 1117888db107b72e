-- Training datasets: the builder that computes and stores a version (SECURITY DEFINER,
-- as fstore_builder: a version is always fstore's own computation), the procedure a psql
-- user calls, the catalog with its provenance, exports, drops, and copies that follow a
-- share.
--
--   select fstore.create_training_table('fraud_train', 'spine'::regclass, array['activity:*'],
--                                       p_label => array['is_fraud'], p_split => '{"train":0.8,"test":0.2}');

set role fstore_control;

create or replace function fstore.split_expression(p_split jsonb, p_seed bigint, p_row text, p_time text) returns text
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
comment on function fstore.split_expression(jsonb,bigint,text,text) is
  'Split assignment of one row: by fraction ({"train": 0.8, "test": 0.2}, a seeded hash of the row number, so the same seed gives the same split) or by time ranges ({"train": ["2024-01-01", "2024-06-01"], "test": ["2024-06-01", null]}, start inclusive, end exclusive, null = open); NULL when the row falls in no range.';

create or replace function fstore.training_dataset_json(p_td fstore.training_datasets) returns jsonb
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select to_jsonb(p_td) || jsonb_build_object('exports', coalesce(
    (select jsonb_agg(jsonb_build_object('format', e.format, 'path', e.path, 'rows', e.rows, 'at', e.at, 'by', e.by,
                                         'app_id', e.app_id) order by e.id)
       from fstore.training_dataset_exports e where e.training_dataset_id = p_td.id), '[]'))
$$;
comment on function fstore.training_dataset_json(fstore.training_datasets) is
  'The catalog record of a training dataset as JSON, with the files it was exported to.';

-- The version a build of p_name makes, or a refusal: a name that exists is reused only on
-- purpose (p_new_version, or p_version naming the next version).
create or replace function fstore.check_training_dataset_version(p_project text, p_name text, p_version integer,
  p_new_version boolean) returns integer
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_latest integer;
begin
  select coalesce(max(version), 0) into v_latest from fstore.training_datasets
   where project = p_project and name = p_name;
  if p_version is not null then
    if p_version < 1 then
      raise exception 'version must be a positive integer, not %', p_version using errcode = '22023';
    end if;
    if p_version <> v_latest + 1 then
      if v_latest = 0 then
        raise exception 'training dataset % does not exist yet: its first version is 1, not %', p_name, p_version
          using errcode = '42710';
      end if;
      raise exception 'training dataset % has versions 1 to %: version % cannot be built now (the next is %)',
        p_name, v_latest, p_version, v_latest + 1 using errcode = '42710';
    end if;
  elsif v_latest > 0 and not coalesce(p_new_version, false) then
    raise exception 'training dataset % exists already (latest version %): pass new_version=True (or version=%) to build version %, or choose another name',
      p_name, v_latest, v_latest + 1, v_latest + 1 using errcode = '42710';
  end if;
  return v_latest + 1;
end $$;
comment on function fstore.check_training_dataset_version(text,text,integer,boolean) is
  'The version the next build of a training dataset makes, or a refusal: a name that exists is reused only on purpose (p_new_version, or p_version naming the next version; Python''s new_version=True and version=N). fstore.store_training_table checks again under the project''s lock.';

-- Where a training table goes on a cluster. Distributed, co-located with the feature groups it
-- was built from, by the spine column their distribution key came from, when: every group is
-- distributed and co-located, all keyed by that one column, all of the dataset's own project
-- (a shared group's table gets a policy with a subquery, which Citus refuses on distributed
-- tables), no row policy of the project is declared (a training table carries them as
-- restrictive policies with subqueries: see docs/cluster.md), and it has at least
-- fstore.training_distribute_min_rows rows (default below: smaller ones build and read
-- faster on the coordinator, measured in docs/cluster.md). Else it stays on the coordinator.
create or replace function fstore.training_distribution(p_project text, p_groups jsonb, p_rows bigint) returns jsonb
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_min_rows constant bigint := 100000;
  v_min bigint := coalesce(nullif(current_setting('fstore.training_distribute_min_rows', true), '')::bigint, c_min_rows);
  v_group jsonb;
  v_fg fstore.feature_groups;
  v_table regclass;
  v_first regclass;
  v_key text;
  v_column text;
  v_spine_column text;
begin
  if not fstore.cluster_has_workers() then
    return jsonb_build_object('distributed', false, 'reason', 'a single node');
  end if;
  if p_rows < v_min then
    return jsonb_build_object('distributed', false, 'reason', format('%s rows: fewer than %s stay on the coordinator', p_rows, v_min));
  end if;
  if exists (select 1 from fstore.row_policies r where r.project = p_project) then
    return jsonb_build_object('distributed', false, 'reason', 'the project declares row policies');
  end if;
  for v_group in select g from jsonb_array_elements(p_groups) g loop
    select * into v_fg from fstore.feature_groups where id = (v_group->>'id')::bigint;
    if v_fg.project <> p_project then
      return jsonb_build_object('distributed', false, 'reason', 'built from a shared project''s group');
    end if;
    v_table := format('%I.%I', v_fg.project, v_fg.offline_table)::regclass;
    v_key := fstore.distribution_column(v_table);
    v_column := v_group->'key_columns'->>v_key;
    if v_key is null or v_column is null then
      return jsonb_build_object('distributed', false, 'reason', format('%s is not distributed', v_table));
    end if;
    if v_first is null then
      v_first := v_table;
      v_spine_column := v_column;
    elsif fstore.colocation_id(v_table) <> fstore.colocation_id(v_first) or v_column <> v_spine_column then
      return jsonb_build_object('distributed', false, 'reason', format('%s and %s are not co-located by one column', v_first, v_table));
    end if;
  end loop;
  if v_first is null then
    return jsonb_build_object('distributed', false, 'reason', 'no feature group');
  end if;
  return jsonb_build_object('distributed', true, 'column', v_spine_column, 'colocate_with', v_first::text,
                            'reason', format('co-located with %s by %s', v_first, v_spine_column));
end $$;
comment on function fstore.training_distribution(text,jsonb,bigint) is
  'Where a training table of p_rows rows built from p_groups (the builder''s feature_groups provenance) goes on a cluster: {distributed: true, column, colocate_with, reason} (co-located with its distributed groups) or {distributed: false, reason} (the coordinator: a single node, a small table, row policies, a shared group, groups not co-located by one column).';

-- The dataset a caller changes (distributes, drops): it exists, and it is the caller's own
-- or the caller is a Data Owner of the project.
create or replace function fstore.training_dataset_to_change(p_project text, p_name text, p_version integer,
                                                             p_action text) returns fstore.training_datasets
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets;
begin
  select * into v_td from fstore.training_datasets where project = p_project and name = p_name and version = p_version;
  if not found then
    raise exception 'training dataset %.% version % does not exist', p_project, p_name, p_version using errcode = 'P0002';
  end if;
  if v_td.created_by <> session_user::text then
    perform fstore.require_data_owner(p_project, p_action || ' training datasets others created');
  end if;
  return v_td;
end $$;
comment on function fstore.training_dataset_to_change(text,text,integer,text) is
  'The training dataset p_project.p_name version p_version, for a change (p_action: distribute, drop) by its creator or a Data Owner of the project; raises naming it otherwise.';

-- The second step of a build on a cluster, in a transaction of its own after the build's commit
-- (Citus refuses DDL on shards co-located with ones the build's join read over several
-- connections in the same transaction): the stored table becomes distributed, co-located with
-- its groups, when fstore.training_distribution says so; its grants go with it and its policies
-- and triggers are written again for a distributed table (fstore.apply_table_rules).
create or replace function fstore.distribute_training_table(p_name text, p_version integer) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.require_session_project();
  v_td fstore.training_datasets;
  v_table regclass;
  v_dist jsonb;
  v_old record;
begin
  v_td := fstore.training_dataset_to_change(v_project, p_name, p_version, 'distribute');
  v_table := format('%I.%I', v_project, v_td.table_name)::regclass;
  if fstore.is_distributed(v_table) then
    return jsonb_build_object('distributed', true, 'reason', 'distributed already');
  end if;
  v_dist := fstore.training_distribution(v_project, v_td.feature_groups, v_td.rows);
  if not (v_dist->>'distributed')::boolean then
    return v_dist;
  end if;
  perform pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
  execute format('drop trigger if exists fstore_append_only on %s', v_table);
  execute format('drop trigger if exists fstore_erasure_rows on %s', v_table);
  execute format('drop trigger if exists fstore_erasure_count on %s', v_table);
  for v_old in select polname from pg_catalog.pg_policy where polrelid = v_table loop
    execute format('drop policy %I on %s', v_old.polname, v_table);
  end loop;
  -- Citus copies the rows to the shards with COPY, which row security refuses: off for the copy,
  -- in this transaction (nobody sees the table in between); apply_table_rules turns it on again
  execute format('alter table %s no force row level security, disable row level security', v_table);
  perform pg_catalog.create_distributed_table(v_table, v_dist->>'column', colocate_with => v_dist->>'colocate_with');
  perform pg_catalog.truncate_local_data_after_distributing_table(v_table);
  -- erasure: fstore.forget deletes a distributed table's rows through fstore.erase_distributed_rows
  -- (fstore_writer, the one role the shards' triggers let delete), as for distributed groups
  execute format('grant select, delete on %s to fstore_writer', v_table);
  execute format('grant usage on schema %I to fstore_writer', v_project);
  perform fstore.apply_table_rules(v_table);
  perform fstore.audit(v_project, 'distribute_training_dataset', jsonb_build_object(
    'name', p_name, 'version', p_version, 'column', v_dist->>'column', 'colocate_with', v_dist->>'colocate_with'));
  return v_dist;
end $$;
comment on function fstore.distribute_training_table(text,integer) is
  'On a cluster, after a build''s commit: make a stored training table distributed, co-located with the feature groups it was built from, when fstore.training_distribution says so (its grants kept, its policies and triggers written again for a distributed table); returns that decision. Its creator or a Data Owner; Python''s create_training_dataset calls it.';

create or replace function fstore.store_training_table(p_name text, p_source regclass, p_meta jsonb)
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
  v_version := fstore.check_training_dataset_version(v_project, p_name, (p_meta->>'version')::integer,
                                                     coalesce((p_meta->>'new_version')::boolean, false));
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
comment on function fstore.store_training_table(text,regclass,jsonb) is
  'Store a finished training table: the builder''s temporary table becomes <project>.<name>__td<version>, owned by the project owner, readable by those who may read the project''s tables, and is recorded in the catalog with the provenance the builder computed. Only fstore.build_training_table calls it (EXECUTE: fstore_builder).';

create or replace function fstore.check_builder_spine(p_spine regclass) returns void
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
comment on function fstore.check_builder_spine(regclass) is
  'Refuse a spine fstore''s builder may not read for the caller: anything but an ordinary temporary table of this session that the caller owns, with built-in column types, no row-level security and no child tables (its reading must run nothing of the caller''s).';

create or replace function fstore.create_training_table(
  p_name text, p_spine regclass, p_features text[], p_event_time_column text default 'event_time',
  p_ttl interval default null, p_full_feature_names boolean default false, p_keys jsonb default null,
  p_label text[] default '{}', p_split jsonb default null, p_seed bigint default 0,
  p_description text default '', p_version integer default null, p_new_version boolean default false
) returns fstore.training_datasets
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_spine regclass := p_spine;
begin
  if p_spine is null then
    raise exception 'give a spine relation' using errcode = '22023';
  end if;
  perform fstore.check_training_dataset_version(fstore.require_session_project(), p_name, p_version, p_new_version);
  begin
    perform fstore.check_builder_spine(p_spine);
  exception when insufficient_privilege then
    drop table if exists pg_temp._fstore_spine_copy;
    execute format('create temp table _fstore_spine_copy on commit drop as select * from %s', p_spine);
    v_spine := 'pg_temp._fstore_spine_copy'::regclass;
  end;
  execute format('grant select on %s to fstore_builder', v_spine);
  return fstore.build_training_table(p_name, v_spine, p_features, p_event_time_column, p_ttl, p_full_feature_names,
                                     p_keys, p_label, p_split, p_seed, p_description, p_version, p_new_version);
end $$;
comment on function fstore.create_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text,integer,boolean) is
  'Build a training table (the same call Python makes): the spine is read with the caller''s rights (any relation they may read; copied into a temporary table unless it is one already), then fstore''s builder computes and stores the dataset. Returns the catalog record.';

create or replace function fstore.find_training_dataset(p_name text, p_version integer default null, p_project text default null)
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
comment on function fstore.find_training_dataset(text,integer,text) is
  'The catalog record of a training dataset the caller can see (latest version by default). One built from a project that is not (or no longer) shared with the caller is refused.';

create or replace function fstore.training_dataset_sql(p_name text, p_version integer default null, p_project text default null)
returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets := fstore.find_training_dataset(p_name, p_version, p_project);
begin
  return fstore.training_data_sql(format('%I.%I', v_td.project, v_td.table_name)::regclass, v_td.features,
    v_td.event_time_column, v_td.ttl, v_td.full_feature_names, v_td.keys,
    (select jsonb_object_agg(g->>'id', g) from jsonb_array_elements(v_td.feature_groups) g),
    v_td.spine_columns, '_row');
end $$;
comment on function fstore.training_dataset_sql(text,integer,text) is
  'The query that rebuilds a training dataset from its stored spine, reading every feature group as of the commits it saw then: it returns the same rows (without the split column) however many commits landed since.';

create or replace function fstore.record_training_export(p_id bigint, p_format text, p_path text, p_rows bigint)
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
comment on function fstore.record_training_export(bigint,text,text,bigint) is
  'Record a file export of a training dataset (format, path, rows): a fact about the session that wrote the file, which any reader of the dataset may record; it changes nothing of the dataset''s own record.';

create or replace function fstore.drop_training_dataset(p_name text, p_version integer)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.require_session_project();
  v_td fstore.training_datasets;
begin
  v_td := fstore.training_dataset_to_change(v_project, p_name, p_version, 'drop');
  execute format('drop table if exists %I.%I', v_project, v_td.table_name);
  delete from fstore.managed_tables where training_dataset_id = v_td.id;
  delete from fstore.training_datasets where id = v_td.id;
  perform fstore.audit(v_project, 'drop_training_dataset', jsonb_build_object('name', p_name, 'version', p_version,
                                                                           'rows', v_td.rows));
end $$;
comment on function fstore.drop_training_dataset(text,integer) is
  'Drop a training dataset version (its table and its record), audited: its creator or a Data Owner.';

create or replace function fstore.drop_derived_training_datasets(p_project text, p_with text) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_td fstore.training_datasets;
  v_dropped jsonb := '[]';
  v_served bigint;
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
  -- the vectors p_with's views served from p_project's groups hold p_project's feature values
  with gone as (
    delete from fstore.served_vectors s using fstore.feature_views v
     where s.feature_view_id = v.id and v.project = p_with
       and exists (select 1 from jsonb_array_elements(v.plan) g where g->>'project' = p_project)
    returning v.name, v.version)
  select count(*) into v_served from gone;
  if v_served > 0 then
    perform fstore.audit(p_with, 'drop_served_vectors', jsonb_build_object('rows', v_served, 'reason', 'unshared',
                                                                            'source', p_project));
  end if;
  return v_dropped;
end $$;
comment on function fstore.drop_derived_training_datasets(text,text) is
  'Data of a share follows the share: the training datasets project p_with built from p_project''s groups, and the vectors its feature views served from them, are dropped when the share ends (and recorded in both projects).';

grant execute on function
  fstore.training_distribution(text,jsonb,bigint),
  fstore.distribute_training_table(text,integer),
  fstore.split_expression(jsonb,bigint,text,text),
  fstore.check_training_dataset_version(text,text,integer,boolean),
  fstore.training_dataset_json(fstore.training_datasets),
  fstore.check_builder_spine(regclass),
  fstore.create_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text,integer,boolean),
  fstore.find_training_dataset(text,integer,text),
  fstore.training_dataset_sql(text,integer,text),
  fstore.record_training_export(bigint,text,text,bigint),
  fstore.drop_training_dataset(text,integer)
  to public;
grant execute on function
  fstore.store_training_table(text,regclass,jsonb)
  to fstore_builder;
reset role;

create or replace function fstore.build_training_table(
  p_name text, p_spine regclass, p_features text[], p_event_time_column text, p_ttl interval,
  p_full_feature_names boolean, p_keys jsonb, p_label text[], p_split jsonb, p_seed bigint, p_description text,
  p_version integer default null, p_new_version boolean default false
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
  -- on a cluster: the distributed groups' commit barrier, until this transaction ends, so the
  -- build sees every commit of them whole (docs/cluster.md); nothing on a single node
  perform fstore.commit_barrier_features(p_features);
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
    'spine_hash', v_hash, 'description', p_description, 'version', p_version, 'new_version', p_new_version));
  drop table pg_temp._fstore_training, pg_temp._fstore_training_commits;
  return v_record;
end $$;
comment on function fstore.build_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text,integer,boolean) is
  'THE builder of stored training datasets: the point-in-time join over the spine, computed here, by fstore itself, with the rows its caller may read (row policies identify the reader by session_user), in one snapshot together with the commits it saw, an optional split column, then stored with the provenance computed here. SECURITY DEFINER (fstore_builder, which can read feature tables but holds nothing else), so that no caller can record a version of rows they made up.';

-- the builder runs as fstore_builder, which reads feature tables and owns nothing else
alter function fstore.build_training_table(text, regclass, text[], text, interval, boolean, jsonb, text[], jsonb, bigint, text, integer, boolean)
  owner to fstore_builder;

set role fstore_control;

grant execute on function
  fstore.build_training_table(text,regclass,text[],text,interval,boolean,jsonb,text[],jsonb,bigint,text,integer,boolean)
  to public;
reset role;
