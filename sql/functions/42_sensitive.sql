-- Sensitive features (the catalog is sql/schema/009_sensitive.sql). A sensitive feature is
-- hidden by COLUMN PRIVILEGES on every table that holds it:
--   * a feature group's offline and online tables, every version (the mark is the group's
--     name and the feature's: a new version carries it);
--   * training datasets, for the columns they took from a sensitive feature (in any project).
-- On such a table the readers (the project's Data Scientists, the projects it is shared
-- with, and any login role holding SELECT on the whole table) lose table-level SELECT and
-- get SELECT on every other column: keys, event time, _commit_id, the other features. The
-- point-in-time join, online lookups, slices and statistics of the other columns work as
-- before. The project's Data Owners keep the table; a grant in policies/<project>.yml adds
-- SELECT on the column for the project-users (or the data_scientist group) it names.
-- A training dataset of project q holding another project's sensitive feature (built
-- before it was marked) is a copy nobody in q may read: its rows are hidden from all
-- (restrictive policy fstore_sensitive_copy; q's owner role could otherwise read it).
--
-- Derived data follows: stored commit statistics of the feature are hidden (restrictive
-- policy below), as are fitted feature-view parameters over it; fstore's functions refuse
-- it by name (fstore.check_readable_features, fstore.check_readable_columns,
-- fstore.check_feature_view_readable) before PostgreSQL's own "permission denied for table".

set role fstore_control;

create or replace function fstore.sensitive_columns(p_table regclass)
returns table (column_name text, project text, feature_group text, feature text)
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  -- a feature group's offline or online table: its sensitive features
  select s.feature, s.project, s.feature_group, s.feature
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join fstore.feature_groups g on g.project = n.nspname and c.relname in (g.offline_table, g.online_table)
    join fstore.sensitive_features s on s.project = g.project and s.feature_group = g.name
   where c.oid = p_table
     and exists (select 1 from pg_catalog.pg_attribute a
                  where a.attrelid = c.oid and a.attname = s.feature and a.attnum > 0 and not a.attisdropped)
  union
  -- a training dataset: the columns it took from sensitive features (of any project)
  select f->>'output', s.project, s.feature_group, s.feature
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join fstore.training_datasets t on t.project = n.nspname and t.table_name = c.relname
    cross join lateral jsonb_array_elements(t.feature_groups) g
    cross join lateral jsonb_array_elements(g->'features') f
    join fstore.sensitive_features s
      on s.project = g->>'project' and s.feature_group = g->>'name' and s.feature = f->>'name'
   where c.oid = p_table
$$;
comment on function fstore.sensitive_columns(regclass) is
  'The columns of a feature-group or training-dataset table that hold a sensitive feature, with the feature (project, group, name) each comes from. SECURITY INVOKER: a caller sees what the catalog shows them.';

-- Column privileges of one table from the marks and grants (see the header). Called by
-- fstore.apply_table_rules (every feature-group and training table, when created or
-- altered) and when marks, grants or shares change. Not granted to anyone.
create or replace function fstore.apply_sensitive_columns(p_table regclass) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rel record;
  v_name text;
  v_owner text;
  v_data_owner text;
  v_sensitive text[];
  v_foreign text[];
  v_all text[];
  v_hidden text[];
  v_role text;
  v_col record;
  v_grantee text;
begin
  select c.oid, c.relname, c.relkind, n.nspname into v_rel
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_table;
  if not found or v_rel.relkind not in ('r', 'p') or not fstore.is_project_schema(v_rel.nspname) then
    return;
  end if;
  v_name := format('%I.%I', v_rel.nspname, v_rel.relname);
  v_owner := fstore.owner_role(v_rel.nspname);
  v_data_owner := v_rel.nspname || '__data_owner';
  select coalesce(array_agg(distinct s.column_name), '{}'),
         coalesce(array_agg(distinct s.column_name) filter (where s.project <> v_rel.nspname), '{}')
    into v_sensitive, v_foreign from fstore.sensitive_columns(p_table) s;
  if cardinality(v_sensitive) = 0
     and not exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = p_table and a.attacl is not null) then
    if exists (select 1 from pg_catalog.pg_policy where polrelid = p_table and polname = 'fstore_sensitive_copy') then
      execute format('drop policy fstore_sensitive_copy on %s', v_name);
    end if;
    return;  -- nothing sensitive, no column privileges to undo: the common case
  end if;
  select array_agg(a.attname::text order by a.attnum) into v_all
    from pg_catalog.pg_attribute a where a.attrelid = p_table and a.attnum > 0 and not a.attisdropped;

  -- the readers: the project's groups, and every role holding SELECT on the table (share
  -- partners' groups, a login role a Data Owner granted the table to), but the owner side
  for v_role in
    select distinct r from (
      select unnest(array[v_data_owner, v_rel.nspname || '__data_scientist']) as r
      union
      select g.rolname::text from pg_catalog.pg_class c, aclexplode(c.relacl) x
        join pg_catalog.pg_roles g on g.oid = x.grantee
       where c.oid = p_table and x.privilege_type = 'SELECT'
      union
      select g.rolname::text from pg_catalog.pg_attribute a, aclexplode(a.attacl) x
        join pg_catalog.pg_roles g on g.oid = x.grantee
       where a.attrelid = p_table and x.privilege_type = 'SELECT' and g.rolname ~ '__data_(owner|scientist)$'
    ) readers
    where r not in (v_owner, 'fstore_builder', 'fstore_auditor') and to_regrole(r) is not null
  loop
    -- the project's Data Owners read its own sensitive features, never a copy of another's
    v_hidden := case when v_role = v_data_owner then v_foreign else v_sensitive end;
    execute format('revoke select on %s from %I', v_name, v_role);
    if cardinality(v_hidden) = 0 then
      execute format('grant select on %s to %I', v_name, v_role);
    else
      execute format('grant select (%s) on %s to %I',
                     (select string_agg(format('%I', c), ', ') from unnest(v_all) c where not c = any(v_hidden)),
                     v_name, v_role);
    end if;
  end loop;

  -- login roles holding only column privileges: the grants of policies/, made again below
  for v_role in
    select distinct g.rolname::text from pg_catalog.pg_attribute a, aclexplode(a.attacl) x
      join pg_catalog.pg_roles g on g.oid = x.grantee
     where a.attrelid = p_table and x.privilege_type = 'SELECT' and g.rolname !~ '__data_(owner|scientist)$'
       and g.rolname not in (v_owner, 'fstore_builder', 'fstore_auditor')
       and not exists (select 1 from pg_catalog.pg_class c, aclexplode(c.relacl) t
                        where c.oid = p_table and t.grantee = g.oid and t.privilege_type = 'SELECT')
  loop
    execute format('revoke select on %s from %I', v_name, v_role);
  end loop;
  for v_col in select s.column_name, s.project, s.feature_group, s.feature from fstore.sensitive_columns(p_table) s
                where s.project = v_rel.nspname loop
    for v_grantee in
      select case when g.grantee = 'data_scientist' then v_rel.nspname || '__data_scientist' else m.role_name end
        from fstore.sensitive_grants g
        left join fstore.members m on m.project = g.project and m.user_name = g.grantee
       where g.project = v_col.project and g.feature_group = v_col.feature_group and g.feature = v_col.feature
         and (g.grantee = 'data_scientist' or m.role_name is not null)
    loop
      execute format('grant select (%I) on %s to %I', v_col.column_name, v_name, v_grantee);
    end loop;
  end loop;

  -- a copy of another project's sensitive feature: nobody here may read its rows
  if exists (select 1 from pg_catalog.pg_policy where polrelid = p_table and polname = 'fstore_sensitive_copy') then
    execute format('drop policy fstore_sensitive_copy on %s', v_name);
  end if;
  if cardinality(v_foreign) > 0 then
    execute format('create policy fstore_sensitive_copy on %s as restrictive for select to public using (false)', v_name);
  end if;
end $$;
comment on function fstore.apply_sensitive_columns(regclass) is
  'Column privileges of one feature-group or training-dataset table from the sensitive marks and grants (see the header of sql/functions/42_sensitive.sql). For fstore''s own functions; not granted.';

create or replace function fstore.apply_sensitive_group(p_project text, p_group text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_relid oid;
begin
  for v_relid in
    select to_regclass(format('%I.%I', g.project, t)) from fstore.feature_groups g,
           unnest(array_remove(array[g.offline_table, g.online_table], null)) t
     where g.project = p_project and g.name = p_group
    union
    select to_regclass(format('%I.%I', t.project, t.table_name)) from fstore.training_datasets t
     where exists (select 1 from jsonb_array_elements(t.feature_groups) g
                    where g->>'project' = p_project and g->>'name' = p_group)
  loop
    if v_relid is not null then
      perform fstore.apply_sensitive_columns(v_relid::regclass);
    end if;
  end loop;
end $$;
comment on function fstore.apply_sensitive_group(text,text) is
  'Apply the sensitive marks of a feature group (all versions) to its tables and to every training dataset built from it. Not granted.';

create or replace function fstore.apply_sensitive_project(p_project text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_relid oid;
begin
  for v_relid in select m.relid from fstore.managed_tables m where m.project = p_project loop
    if to_regclass(v_relid::regclass::text) is not null then
      perform fstore.apply_sensitive_columns(v_relid::regclass);
    end if;
  end loop;
end $$;
comment on function fstore.apply_sensitive_project(text) is
  'Apply the sensitive marks to every feature-group and training table of a project (after its reads are granted to a project it is shared with). Not granted.';

create or replace function fstore.check_sensitive_feature(p_project text, p_group text, p_feature text) returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from fstore.feature_groups g where g.project = p_project and g.name = p_group) then
    raise exception 'feature group %.% does not exist', p_project, coalesce(p_group, 'NULL') using errcode = 'P0002';
  end if;
  if not exists (select 1 from fstore.features f join fstore.feature_groups g on g.id = f.feature_group_id
                  where g.project = p_project and g.name = p_group and f.name = p_feature) then
    raise exception 'feature % does not exist in feature group %.% (in any version)', coalesce(p_feature, 'NULL'),
      p_project, p_group using errcode = 'P0002';
  end if;
  if exists (select 1 from fstore.feature_groups g where g.project = p_project and g.name = p_group
                and p_feature = any(g.entity_keys)) then
    raise exception '% is an entity key of feature group %.%: keys join spines and lookups, and cannot be sensitive',
      p_feature, p_project, p_group using errcode = '22023';
  end if;
end $$;
comment on function fstore.check_sensitive_feature(text,text,text) is
  'An error unless p_feature is a (non-key) feature of some version of feature group p_project.p_group.';

create or replace function fstore.set_sensitive(p_group text, p_features text[], p_sensitive boolean default true,
  p_project text default null) returns text[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := coalesce(p_project, fstore.session_project());
  v_feature text;
  v_changed text[] := '{}';
begin
  perform fstore.require_data_owner(v_project, 'mark features sensitive');
  perform fstore.lock_project(v_project);
  if coalesce(cardinality(p_features), 0) = 0 then
    raise exception 'give the features to mark (or unmark) sensitive' using errcode = '22023';
  end if;
  foreach v_feature in array p_features loop
    perform fstore.check_sensitive_feature(v_project, p_group, v_feature);
    if coalesce(p_sensitive, true) then
      insert into fstore.sensitive_features (project, feature_group, feature) values (v_project, p_group, v_feature)
      on conflict do nothing;
    else
      delete from fstore.sensitive_features where project = v_project and feature_group = p_group and feature = v_feature;
    end if;
    if found then
      v_changed := v_changed || v_feature;
    end if;
  end loop;
  perform fstore.apply_sensitive_group(v_project, p_group);
  if cardinality(v_changed) > 0 then
    perform fstore.audit(v_project, case when coalesce(p_sensitive, true) then 'mark_sensitive' else 'unmark_sensitive' end,
                         jsonb_build_object('feature_group', p_group, 'features', to_jsonb(v_changed)));
  end if;
  return array(select s.feature from fstore.sensitive_features s
                where s.project = v_project and s.feature_group = p_group order by s.feature);
end $$;
comment on function fstore.set_sensitive(text,text[],boolean,text) is
  'Mark features of a feature group sensitive (p_sensitive false: unmark them), for every version of the group, past and future, and for the training datasets built from them; audited. Data Owners only. Returns the group''s sensitive features. select fstore.set_sensitive(''account_profile'', array[''is_pep'']);';

create or replace function fstore.set_sensitive_grants(p_project text, p_grants jsonb) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_grant jsonb;
  v_where text;
  v_ref text;
  v_match text[];
  v_role text;
  v_count integer := 0;
  v_group text;
  v_groups text[];
begin
  perform fstore.require_data_owner(p_project, 'grant sensitive features');
  perform fstore.lock_project(p_project);
  if jsonb_typeof(p_grants) is distinct from 'array' then
    raise exception 'sensitive grants must be a JSON array' using errcode = '22023';
  end if;
  select array_agg(distinct feature_group) into v_groups from fstore.sensitive_grants where project = p_project;
  delete from fstore.sensitive_grants where project = p_project;
  for v_grant in select * from jsonb_array_elements(p_grants) loop
    v_where := 'sensitive grant ' || coalesce(quote_literal(left(v_grant->>'name', 80)), 'NULL');
    if jsonb_typeof(v_grant) <> 'object' or coalesce(v_grant->>'name', '') !~ '^[a-z][a-z0-9_]{0,40}$' then
      raise exception '%: invalid name (use a-z, 0-9 and _, starting with a letter)', v_where using errcode = '22023';
    end if;
    if jsonb_typeof(v_grant->'features') is distinct from 'array' or jsonb_array_length(v_grant->'features') = 0
       or jsonb_typeof(v_grant->'roles') is distinct from 'array' or jsonb_array_length(v_grant->'roles') = 0 then
      raise exception '%: give features (a list of group:feature) and roles (a list of user names or data_scientist)',
        v_where using errcode = '22023';
    end if;
    for v_role in select r #>> '{}' from jsonb_array_elements(v_grant->'roles') r loop
      if v_role is distinct from 'data_scientist' and not exists (
           select 1 from fstore.members m where m.project = p_project and m.user_name = v_role) then
        raise exception '%: % is not a member of project % (name its users, or data_scientist)', v_where,
          coalesce(quote_literal(v_role), 'NULL'), p_project using errcode = '22023';
      end if;
    end loop;
    for v_ref in select f #>> '{}' from jsonb_array_elements(v_grant->'features') f loop
      v_match := regexp_match(coalesce(v_ref, ''), '^([a-z][a-z0-9_]*):([a-z_][a-z0-9_]*)$');
      if v_match is null then
        raise exception '%: invalid feature %: use group:feature', v_where, coalesce(quote_literal(v_ref), 'NULL')
          using errcode = '22023';
      end if;
      perform fstore.check_sensitive_feature(p_project, v_match[1], v_match[2]);
      insert into fstore.sensitive_grants (project, name, feature_group, feature, grantee)
      select p_project, v_grant->>'name', v_match[1], v_match[2], r #>> '{}' from jsonb_array_elements(v_grant->'roles') r
      on conflict do nothing;
      v_groups := coalesce(v_groups, '{}') || v_match[1];
    end loop;
    v_count := v_count + 1;
  end loop;
  foreach v_group in array coalesce((select array_agg(distinct g) from unnest(v_groups) g), '{}') loop
    perform fstore.apply_sensitive_group(p_project, v_group);
  end loop;
  perform fstore.audit(p_project, 'set_sensitive_grants', jsonb_build_object('count', v_count, 'grants', p_grants));
  return v_count;
end $$;
comment on function fstore.set_sensitive_grants(text,jsonb) is
  'Set a project''s sensitive grants (all of them, replacing the earlier ones): [{"name", "features": ["group:feature"], "roles": ["user" | "data_scientist"]}]; the named project-users (or its data_scientist group) may read those features although they are sensitive. Data Owners only; audited. fstore policy apply sends the sensitive_grants of policies/<project>.yml.';

-- Refusals by name, before PostgreSQL's "permission denied for table" (which names no column).
create or replace function fstore.check_readable_features(p_feature_group_id bigint, p_features text[] default null)
returns text[] language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups := fstore.feature_group_by_id(p_feature_group_id);
  v_table regclass := to_regclass(format('%I.%I', v_fg.project, v_fg.offline_table));
  v_denied text;
  v_sensitive boolean;
begin
  if p_features is null then  -- every feature the caller may read, in order
    return array(select f.name from fstore.features f
                  where f.feature_group_id = v_fg.id and not f.is_key
                    and pg_catalog.has_column_privilege(session_user, v_table, f.name, 'SELECT')
                  order by f.position);
  end if;
  -- (an unknown name is left to the caller, whose error names it)
  select f.f into v_denied from unnest(p_features) with ordinality f(f, i)
    join pg_catalog.pg_attribute a on a.attrelid = v_table and a.attname = f.f and a.attnum > 0 and not a.attisdropped
   where not pg_catalog.has_column_privilege(session_user, v_table, a.attnum, 'SELECT')
   order by f.i limit 1;
  if v_denied is not null then
    v_sensitive := exists (select 1 from fstore.sensitive_features s where s.project = v_fg.project
                              and s.feature_group = v_fg.name and s.feature = v_denied);
    raise exception 'permission denied for feature % of feature group %.%@% (to %)%', v_denied, v_fg.project, v_fg.name,
      v_fg.version, session_user, case when v_sensitive then ': it is sensitive' else '' end
      using errcode = '42501',
            detail = case when v_sensitive then format('%s is read by the Data Owners of %s and by the roles a sensitive '
                                                       'grant in policies/%s.yml names', v_denied, v_fg.project, v_fg.project)
                          else format('%s holds no SELECT on column %s of %s', session_user, v_denied, v_table) end,
            hint = 'ask for the other features by name';
  end if;
  return p_features;
end $$;
comment on function fstore.check_readable_features(bigint,text[]) is
  'The features of a group the session may read: p_features as given when it may read each (an error naming the first it may not: a sensitive feature, or a column withheld), or, for NULL, every feature it may read. Drift, statistics and the resolver ask it.';

create or replace function fstore.check_readable_columns(p_relation regclass, p_columns text[] default null)
returns void language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_denied text;
  v_source record;
begin
  select a.attname::text into v_denied from pg_catalog.pg_attribute a
   where a.attrelid = p_relation and a.attnum > 0 and not a.attisdropped
     and (p_columns is null or a.attname::text = any(p_columns))
     and not pg_catalog.has_column_privilege(session_user, p_relation, a.attnum, 'SELECT')
   order by a.attnum limit 1;
  if v_denied is null then
    return;
  end if;
  select s.project, s.feature_group, s.feature into v_source from fstore.sensitive_columns(p_relation) s
   where s.column_name = v_denied limit 1;
  raise exception 'permission denied for column % of % (to %)%', v_denied, p_relation, session_user,
    case when v_source.feature is not null
         then format(': it holds sensitive feature %s.%s:%s', v_source.project, v_source.feature_group, v_source.feature)
         else '' end
    using errcode = '42501', hint = 'read the other columns by name';
end $$;
comment on function fstore.check_readable_columns(regclass,text[]) is
  'An error naming the first column of a relation (of p_columns, default all) the session may not read, and the sensitive feature it holds; nothing otherwise. Exports and training-dataset reads ask it first.';

create or replace function fstore.check_feature_view_readable(p_view fstore.feature_views) returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_group jsonb;
begin
  for v_group in select g from jsonb_array_elements(p_view.plan) g loop
    perform fstore.check_readable_features((v_group->>'id')::bigint,
                                           array(select f->>'name' from jsonb_array_elements(v_group->'features') f));
  end loop;
end $$;
comment on function fstore.check_feature_view_readable(fstore.feature_views) is
  'An error naming the first feature of a view the session may not read (a sensitive one): serving, training data and fits of the view ask it.';

-- Stored statistics and fitted parameters describe a column's values (min, max,
-- histograms, top values, vocabularies, means): hidden from those who may not read it.
create or replace function fstore.statistic_readable(p_commit_id bigint, p_feature text) returns boolean
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce((
    select not exists (select 1 from fstore.sensitive_features s
                        where s.project = g.project and s.feature_group = g.name and s.feature = p_feature)
        or coalesce(pg_catalog.has_column_privilege(session_user,
                      to_regclass(format('%I.%I', g.project, g.offline_table)), p_feature, 'SELECT'), false)
      from fstore.commits c join fstore.feature_groups g on g.id = c.feature_group_id
     where c.id = p_commit_id), false)
$$;
comment on function fstore.statistic_readable(bigint,text) is
  'Whether the session may see the stored statistics of one column of a commit: it is not a sensitive feature, or the session may read that column.';

create or replace function fstore.fit_readable(p_training_dataset_id bigint, p_params jsonb) returns boolean
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce((
    select bool_and(coalesce(pg_catalog.has_column_privilege(session_user,
                      to_regclass(format('%I.%I', t.project, t.table_name)), k, 'SELECT'), false))
      from fstore.training_datasets t, jsonb_object_keys(coalesce(p_params, '{}')) k
     where t.id = p_training_dataset_id), true)
$$;
comment on function fstore.fit_readable(bigint,jsonb) is
  'Whether the session may read every column of a training dataset that a fit has parameters of.';

drop policy if exists sensitive on fstore.commit_statistics;
create policy sensitive on fstore.commit_statistics as restrictive for select
  using (fstore.statistic_readable(commit_id, feature));

drop policy if exists sensitive on fstore.feature_view_fits;
create policy sensitive on fstore.feature_view_fits as restrictive for select
  using (fstore.fit_readable(training_dataset_id, params));

drop policy if exists visible on fstore.sensitive_features;
create policy visible on fstore.sensitive_features for select
  using ((select fstore.session_is_admin()) or project in (select unnest(fstore.visible_projects())));

drop policy if exists own_project on fstore.sensitive_grants;
create policy own_project on fstore.sensitive_grants for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

grant execute on function
  fstore.sensitive_columns(regclass),
  fstore.check_sensitive_feature(text,text,text),
  fstore.set_sensitive(text,text[],boolean,text),
  fstore.set_sensitive_grants(text,jsonb),
  fstore.check_readable_features(bigint,text[]),
  fstore.check_readable_columns(regclass,text[]),
  fstore.check_feature_view_readable(fstore.feature_views),
  fstore.statistic_readable(bigint,text),
  fstore.fit_readable(bigint,jsonb)
  to public;
reset role;
