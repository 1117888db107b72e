-- Erasure of an entity (GDPR article 17): fstore.forget(project, keys) deletes the rows of
-- one entity everywhere in the project, in the caller's transaction, and says what it
-- removed and what it could not reach. It is the one exception to "feature-group history
-- and stored training datasets are append-only" (sql/functions/35_row_policies.sql), and
-- it is narrow:
--
--  * fstore.begin_erasure (SECURITY DEFINER, Data Owners only) records the erasure: the
--    entity's key values (as canonical text), the tables that hold its rows (from fstore's
--    catalog: every feature-group version's offline and online table and every stored
--    training dataset of the project with a column for each key), in this transaction of
--    this session. One erasure per transaction. Nobody may write fstore.erasures otherwise.
--  * While it is open, those tables take a DELETE (fstore_append_only lets it pass) and
--    every deleted row must carry exactly the recorded values (fstore_erasure_rows, which
--    compares in the deleter's own rights); any other row refuses the whole statement.
--    UPDATE and TRUNCATE stay refused. fstore counts what went (fstore_erasure_count,
--    its own trigger, from the statement's transition table) in fstore.erased_rows.
--  * fstore.finish_erasure closes it: served vectors of the entity go, the statistics of
--    every commit that held its rows are recomputed (by fstore.forget) or removed, the
--    files exported from affected training datasets, feature-view fits, copies in other
--    projects and other sessions' temporary tables are listed (the sessions are ended),
--    the key values are dropped from the record (a digest stays) and the report is
--    audited. An erasure begun and not finished refuses the commit of its transaction.
--
-- Values are cast only in the caller's context (fstore.forget and the row trigger are
-- SECURITY INVOKER): the definers compare names and plain text and count rows.

set role fstore_control;

drop policy if exists own_project on fstore.erasures;
create policy own_project on fstore.erasures for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

drop policy if exists visible on fstore.erased_rows;
create policy visible on fstore.erased_rows for select
  using ((select fstore.session_is_admin()) or project in (select unnest(fstore.visible_projects())));

create or replace function fstore.open_erasure() returns fstore.erasures
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select e.* from fstore.erasures e
   where e.xact = pg_catalog.pg_current_xact_id_if_assigned() and e.backend_pid = pg_catalog.pg_backend_pid()
     and e.session_role = session_user::text and e.state = 'open'
$$;
comment on function fstore.open_erasure() is
  'The erasure open in this transaction of this session (its key values included), or NULLs.';

create or replace function fstore.erasure_columns(p_relid oid) returns jsonb
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select (select jsonb_object_agg(c.key, e.key_values ->> (c.value #>> '{}')) from jsonb_each(t -> 'columns') c)
    from fstore.erasures e, jsonb_array_elements(e.targets) t
   where e.xact = pg_catalog.pg_current_xact_id_if_assigned() and e.backend_pid = pg_catalog.pg_backend_pid()
     and e.session_role = session_user::text and e.state = 'open' and (t ->> 'relid')::oid = p_relid
$$;
comment on function fstore.erasure_columns(oid) is
  'During an erasure open in this transaction that targets this table: {column: the erased entity''s value as text}; else NULL. The append-only triggers ask it.';

create or replace function fstore.check_erased_row() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_columns jsonb;
  v_column text;
  v_value text;
  v_type text;
  v_same boolean;
begin
  if session_user = 'fstore_writer' then
    return old;  -- a shard on a worker: fstore.erase_distributed_rows chose exactly the erasure's rows
  end if;
  v_columns := fstore.erasure_columns(tg_relid);
  if v_columns is null then
    raise exception '% on %.% is not allowed: history is append-only (only an erasure, fstore.forget, deletes rows)',
      tg_op, tg_table_schema, tg_table_name using errcode = '42501';
  end if;
  for v_column, v_value in select key, value from jsonb_each_text(v_columns) loop
    select pg_catalog.format_type(a.atttypid, a.atttypmod) into v_type from pg_catalog.pg_attribute a
     where a.attrelid = tg_relid and a.attname = v_column and not a.attisdropped;
    -- in the deleter's own rights (SECURITY INVOKER), on a built-in type (the DDL guard's rule)
    execute format('select ($1).%I = $2::%s', v_column, v_type) into v_same using old, v_value;
    if v_same is not true then
      raise exception 'DELETE on %.% is not allowed: the erasure open in this transaction removes only the rows of its entity, and this row''s % is another''s',
        tg_table_schema, tg_table_name, v_column using errcode = '42501',
        hint = 'one erasure per transaction, of one entity (fstore.forget)';
    end if;
  end loop;
  return old;
end $$;
comment on function fstore.check_erased_row() is
  'Trigger (before delete, per row) of feature-group and training-dataset tables: a row goes only when it is the entity of the erasure open in this transaction.';

create or replace function fstore.record_erased_rows(p_relid oid, p_rows bigint, p_commits bigint[]) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_erasure fstore.erasures := fstore.open_erasure();
  v_target jsonb;
begin
  select t into v_target from jsonb_array_elements(v_erasure.targets) t where (t ->> 'relid')::oid = p_relid;
  if v_target is null then
    raise exception 'DELETE on % is not allowed: history is append-only', p_relid::regclass using errcode = '42501';
  end if;
  insert into fstore.erased_rows as r (erasure_id, project, relid, table_name, kind, feature_group_id,
                                       training_dataset_id, rows, commits)
  values (v_erasure.id, v_erasure.project, p_relid, v_target ->> 'table', v_target ->> 'kind',
          (v_target ->> 'feature_group_id')::bigint, (v_target ->> 'training_dataset_id')::bigint, p_rows,
          case when v_target ->> 'kind' in ('offline', 'online') then coalesce(p_commits, '{}') else '{}' end)
  on conflict (erasure_id, relid) do update
    set rows = r.rows + excluded.rows,
        commits = array(select distinct c from unnest(r.commits || excluded.commits) c order by c);
end $$;
comment on function fstore.record_erased_rows(oid,bigint,bigint[]) is
  'Record in fstore.erased_rows what an erasure open in this session removed from one of its target tables: a count and the commits of the rows. Called by fstore''s erasure trigger and by fstore.erase_distributed_rows only (EXECUTE: fstore_writer).';

create or replace function fstore.count_erased_rows() returns trigger
language plpgsql security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rows bigint;
  v_commits bigint[] := '{}';
begin
  if session_user = 'fstore_writer' then
    return null;  -- a shard on a worker: fstore.erase_distributed_rows records what went
  end if;
  -- what went: a count and the commits of the rows (fstore's own bigint column), nothing else
  select count(*) into v_rows from fstore_erased;
  if exists (select 1 from pg_catalog.pg_attribute where attrelid = tg_relid and attname = '_commit_id'
                                                    and not attisdropped) then
    select coalesce(array_agg(distinct _commit_id order by _commit_id), '{}') into v_commits from fstore_erased;
  end if;
  perform fstore.record_erased_rows(tg_relid, v_rows, v_commits);
  return null;
end $$;
comment on function fstore.count_erased_rows() is
  'Trigger (after delete, per statement, with the transition table fstore_erased) of feature-group and training-dataset tables: counts the rows an erasure removed, and their commits, in fstore.erased_rows. Executable by nobody: only fstore attaches it.';

create or replace function fstore.require_finished_erasure() returns trigger
language plpgsql security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if exists (select 1 from fstore.erasures where id = new.id and state = 'open') then
    raise exception 'erasure % was begun and not finished (fstore.finish_erasure): nothing is erased', new.id
      using errcode = '55000', hint = 'use fstore.forget(project, keys), which does every step';
  end if;
  return null;
end $$;
comment on function fstore.require_finished_erasure() is
  'Deferred constraint trigger of fstore.erasures: a transaction that began an erasure commits only once it is finished (and audited).';

drop trigger if exists erasure_must_finish on fstore.erasures;
create constraint trigger erasure_must_finish after insert on fstore.erasures
  deferrable initially deferred for each row execute function fstore.require_finished_erasure();

create or replace function fstore.erasure_targets(p_project text, p_keys text[]) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_td fstore.training_datasets;
  v_relid oid;
  v_table text;
  v_targets jsonb := '[]';
  v_columns jsonb;
  v_key text;
  v_column text;
begin
  for v_fg in select * from fstore.feature_groups where project = p_project order by id loop
    foreach v_table in array array_remove(array[v_fg.offline_table, case when v_fg.online then v_fg.online_table end], null) loop
      v_relid := to_regclass(format('%I.%I', p_project, v_table));
      continue when v_relid is null or exists (
        select 1 from unnest(p_keys) k where not exists (
          select 1 from pg_catalog.pg_attribute a where a.attrelid = v_relid and a.attname = k and not a.attisdropped));
      v_targets := v_targets || jsonb_build_array(jsonb_build_object(
        'relid', v_relid, 'table', format('%I.%I', p_project, v_table),
        'kind', case when v_table = v_fg.offline_table then 'offline' else 'online' end,
        'feature_group_id', v_fg.id, 'feature_group', v_fg.name, 'version', v_fg.version,
        'columns', (select jsonb_object_agg(k, k) from unnest(p_keys) k)));
    end loop;
  end loop;
  for v_td in select * from fstore.training_datasets where project = p_project order by id loop
    v_relid := to_regclass(format('%I.%I', p_project, v_td.table_name));
    continue when v_relid is null;
    v_columns := '{}';
    foreach v_key in array p_keys loop
      -- the spine column the dataset joined on this key (key_columns), else a column of that name
      select c into v_column
        from (select g -> 'key_columns' ->> v_key as c, i from jsonb_array_elements(v_td.feature_groups) with ordinality x(g, i)
              union all select v_key, 1000000) m
       where c is not null and exists (select 1 from pg_catalog.pg_attribute a
                                        where a.attrelid = v_relid and a.attname = m.c and not a.attisdropped)
       order by i limit 1;
      exit when v_column is null;
      v_columns := v_columns || jsonb_build_object(v_column, v_key);
    end loop;
    continue when v_column is null or (select count(*) from jsonb_object_keys(v_columns)) < cardinality(p_keys);
    v_targets := v_targets || jsonb_build_array(jsonb_build_object(
      'relid', v_relid, 'table', format('%I.%I', p_project, v_td.table_name), 'kind', 'training',
      'training_dataset_id', v_td.id, 'training_dataset', v_td.name, 'version', v_td.version, 'columns', v_columns));
  end loop;
  return v_targets;
end $$;
comment on function fstore.erasure_targets(text,text[]) is
  'The tables of a project that hold rows of an entity with these keys, from the catalog: offline and online tables of feature-group versions with a column of each key''s name, stored training datasets with a column for each key (the spine column joined on it, else one of that name). [{relid, table, kind, feature_group_id | training_dataset_id, columns: {column: key}}]';

create or replace function fstore.begin_erasure(p_project text, p_keys jsonb) returns fstore.erasures
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_names text[];
  v_key text;
  v_targets jsonb;
  v_target jsonb;
  v_fg bigint;
  v_erasure fstore.erasures;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'erase entities');
  if jsonb_typeof(p_keys) is distinct from 'object' or p_keys = '{}'::jsonb
     or exists (select 1 from jsonb_each(p_keys) e where jsonb_typeof(e.value) <> 'string') then
    raise exception 'an erasure needs the entity''s keys as a JSON object of text values, e.g. {"account_id": "42"}'
      using errcode = '22023';
  end if;
  select array_agg(k order by k) into v_names from jsonb_object_keys(p_keys) k;
  foreach v_key in array v_names loop
    perform fstore.check_column_name(v_key);
  end loop;
  if fstore.open_erasure() is not null or exists (select 1 from fstore.erasures
                                                   where xact = pg_catalog.pg_current_xact_id_if_assigned()) then
    raise exception 'an erasure is already open in this transaction: one erasure (of one entity) per transaction'
      using errcode = '55000';
  end if;
  perform fstore.lock_project(p_project);
  -- keys name entities, not arbitrary columns: erasure never becomes "delete where country = 'DE'"
  foreach v_key in array v_names loop
    if not exists (select 1 from fstore.feature_groups g where g.project = p_project and v_key = any(g.entity_keys)) then
      raise exception 'no feature group of project % has an entity key %: nothing is erased by that key', p_project, v_key
        using errcode = '22023', hint = 'give the entity''s key columns by name, e.g. --key account_id=42';
    end if;
  end loop;
  v_targets := fstore.erasure_targets(p_project, v_names);
  if not exists (select 1 from jsonb_array_elements(v_targets) t where t ->> 'kind' = 'offline') then
    raise exception 'no feature group of project % has all of the columns %: give the keys of one entity',
      p_project, array_to_string(v_names, ', ') using errcode = '22023';
  end if;
  -- erasure must reach every row: a row policy that hides rows from this Data Owner refuses it
  for v_target in select * from jsonb_array_elements(v_targets) loop
    if fstore.session_bound_by_policies(p_project, (v_target ->> 'relid')::oid) then
      raise exception 'permission denied: a row policy of project % hides rows of % from %, so an erasure could not reach them',
        p_project, v_target ->> 'table', session_user using errcode = '42501',
        hint = 'a Data Owner whom no row policy binds erases entities';
    end if;
  end loop;
  -- no commit lands in these groups until the erasure is done
  for v_fg in select distinct (t ->> 'feature_group_id')::bigint from jsonb_array_elements(v_targets) t
               where t ? 'feature_group_id' order by 1 loop
    perform fstore.lock_feature_group(v_fg);
  end loop;
  insert into fstore.erasures (project, key_names, key_values, keys_sha256, targets, client_serial, app_id)
  values (p_project, v_names, p_keys, encode(sha256(convert_to(p_keys::text, 'UTF8')), 'hex'), v_targets,
          fstore.session_serial(), fstore.session_app_id())
  returning * into v_erasure;
  return v_erasure;
end $$;
comment on function fstore.begin_erasure(text,jsonb) is
  'Open the erasure of one entity ({key: canonical text value}) in this transaction: Data Owners only, whom no row policy binds; one per transaction. fstore.forget calls it; it deletes nothing itself.';

create or replace function fstore.replace_erased_statistics(p_erasure bigint, p_commit bigint, p_stats jsonb)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_erasure fstore.erasures := fstore.open_erasure();
begin
  if v_erasure.id is distinct from p_erasure or not exists (
       select 1 from fstore.erased_rows r where r.erasure_id = p_erasure and r.kind = 'offline' and p_commit = any(r.commits)) then
    raise exception 'permission denied: statistics of commit % change only in an erasure of its rows open in this session',
      p_commit using errcode = '42501', hint = 'a finished commit is immutable';
  end if;
  if jsonb_typeof(p_stats) is distinct from 'object' then
    raise exception 'statistics must be a JSON object {column: stats}' using errcode = '22023';
  end if;
  delete from fstore.commit_statistics where commit_id = p_commit;
  insert into fstore.commit_statistics (commit_id, feature, stats)
  select p_commit, s.key, s.value || jsonb_build_object('recomputed_after_erasure', p_erasure)
    from jsonb_each(p_stats) s where jsonb_typeof(s.value) = 'object';
end $$;
comment on function fstore.replace_erased_statistics(bigint,bigint,jsonb) is
  'During an erasure open in this session: the statistics of a commit whose rows it removed, recomputed over the rows left (fstore.forget computes them with fstore.batch_statistics, as a commit does). Each column says "recomputed_after_erasure".';

create or replace function fstore.finish_erasure(p_erasure bigint) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_erasure fstore.erasures := fstore.open_erasure();
  v_tables jsonb;
  v_statistics jsonb;
  v_served bigint;
  v_exports jsonb;
  v_fits jsonb;
  v_copies jsonb;
  v_temp jsonb;
  v_roles text[];
  v_ended integer := 0;
  v_report jsonb;
begin
  if v_erasure.id is distinct from p_erasure then
    raise exception 'permission denied: erasure % is not open in this session', p_erasure using errcode = '42501';
  end if;
  -- rows per table, every target listed (0 when the entity had no rows there)
  select coalesce(jsonb_agg(jsonb_build_object(
           'table', t ->> 'table', 'kind', t ->> 'kind',
           'feature_group', t -> 'feature_group', 'training_dataset', t -> 'training_dataset', 'version', t -> 'version',
           'rows', coalesce(r.rows, 0)) order by t ->> 'kind' <> 'offline', t ->> 'table'), '[]')
    into v_tables
    from jsonb_array_elements(v_erasure.targets) t
    left join fstore.erased_rows r on r.erasure_id = p_erasure and r.relid = (t ->> 'relid')::oid;

  -- statistics of the commits that held the entity's rows: recomputed by the caller, or removed
  select coalesce(jsonb_agg(jsonb_build_object(
           'feature_group', g.name, 'version', g.version, 'commit', c.commit_id,
           'action', case when exists (select 1 from fstore.commit_statistics s where s.commit_id = c.commit_id
                                          and (s.stats ->> 'recomputed_after_erasure')::bigint = p_erasure) then 'recomputed'
                          when exists (select 1 from fstore.commit_statistics s where s.commit_id = c.commit_id) then 'removed'
                          else 'none stored' end) order by c.commit_id), '[]')
    into v_statistics
    from (select distinct r.feature_group_id, unnest(r.commits) as commit_id from fstore.erased_rows r
           where r.erasure_id = p_erasure and r.kind = 'offline') c
    join fstore.feature_groups g on g.id = c.feature_group_id;
  delete from fstore.commit_statistics s
   where s.commit_id in (select unnest(r.commits) from fstore.erased_rows r where r.erasure_id = p_erasure and r.kind = 'offline')
     and (s.stats ->> 'recomputed_after_erasure')::bigint is distinct from p_erasure;

  -- served vectors of the entity, by views of this project or views elsewhere that read it
  with gone as (
    delete from fstore.served_vectors s using fstore.feature_views v
     where s.feature_view_id = v.id
       and (v.project = v_erasure.project
            or exists (select 1 from jsonb_array_elements(v.plan) g where g ->> 'project' = v_erasure.project))
       and not exists (select 1 from unnest(v_erasure.key_names) k
                        where not (s.keys ? k and s.keys ->> k = v_erasure.key_values ->> k))
    returning s.id)
  select count(*) into v_served from gone;

  -- what fstore cannot reach: files written from affected datasets, fits made on them,
  -- copies built in other projects from this project's groups
  select coalesce(jsonb_agg(jsonb_build_object(
           'training_dataset', t.name, 'version', t.version, 'format', x.format, 'path', x.path, 'rows', x.rows,
           'exported_at', x.at, 'exported_by', x.by, 'action', 'delete or rewrite this file: it holds the entity''s rows')
           order by x.id), '[]')
    into v_exports
    from fstore.training_dataset_exports x join fstore.training_datasets t on t.id = x.training_dataset_id
   where x.training_dataset_id in (select r.training_dataset_id from fstore.erased_rows r
                                    where r.erasure_id = p_erasure and r.rows > 0);
  select coalesce(jsonb_agg(jsonb_build_object(
           'feature_view', v.name, 'version', v.version, 'training_dataset', t.name, 'training_dataset_version', t.version,
           'fitted_at', f.fitted_at, 'action', 'stale: fitted on rows that held the entity; build the view''s training data again')
           order by v.name, v.version, t.version), '[]')
    into v_fits
    from fstore.feature_view_fits f join fstore.feature_views v on v.id = f.feature_view_id
    join fstore.training_datasets t on t.id = f.training_dataset_id
   where f.training_dataset_id in (select r.training_dataset_id from fstore.erased_rows r
                                    where r.erasure_id = p_erasure and r.rows > 0);
  select coalesce(jsonb_agg(jsonb_build_object('project', t.project, 'training_dataset', t.name, 'version', t.version,
           'action', format('built from this project''s groups in project %s: its Data Owners erase it there', t.project))
           order by t.project, t.name, t.version), '[]')
    into v_copies
    from fstore.training_datasets t
   where t.project <> v_erasure.project
     and exists (select 1 from jsonb_array_elements(t.feature_groups) g where g ->> 'project' = v_erasure.project);

  -- temporary tables of the project's roles in other sessions, with a key column: only
  -- their own session reads them, and they go when it ends, so those sessions end now
  select coalesce(jsonb_agg(jsonb_build_object('table', format('%I.%I', n.nspname, c.relname), 'owner', r.rolname)
                            order by n.nspname, c.relname), '[]'),
         coalesce(array_agg(distinct r.rolname), '{}')
    into v_temp, v_roles
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_roles r on r.oid = c.relowner
   where c.relpersistence = 't' and c.relkind in ('r', 'p') and n.oid <> pg_catalog.pg_my_temp_schema()
     and r.rolname like replace(v_erasure.project, '_', '\_') || '\_\_%'
     and exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = c.oid and not a.attisdropped
                    and a.attname = any(v_erasure.key_names));
  if cardinality(v_roles) > 0 then
    -- a table of the owner role may be any Data Owner's (dbt stages there as the owner)
    v_roles := v_roles || array(select m.role_name from fstore.members m
                                 where m.project = v_erasure.project and m.project_role = 'data_owner'
                                   and fstore.owner_role(v_erasure.project) = any(v_roles));
    v_roles := array(select distinct x from unnest(v_roles) x
                      where x in (select m.role_name from fstore.members m where m.project = v_erasure.project));
    v_ended := fstore.end_sessions(v_roles);
  end if;

  v_report := jsonb_build_object(
    'erasure', p_erasure, 'project', v_erasure.project, 'key_names', to_jsonb(v_erasure.key_names),
    'keys_sha256', v_erasure.keys_sha256, 'at', v_erasure.requested_at,
    'rows', (select coalesce(sum((t ->> 'rows')::bigint), 0) from jsonb_array_elements(v_tables) t),
    'tables', v_tables, 'statistics', v_statistics, 'served_vectors', v_served,
    'temp_tables', v_temp, 'sessions_ended', v_ended,
    'needs_action', jsonb_build_object('exports', v_exports, 'feature_view_fits', v_fits, 'copies_in_other_projects', v_copies));
  update fstore.erasures set state = 'done', key_values = null, report = v_report where id = p_erasure;
  perform fstore.audit(v_erasure.project, 'forget', v_report);
  return v_report || jsonb_build_object('keys', v_erasure.key_values);
end $$;
comment on function fstore.finish_erasure(bigint) is
  'Close the erasure open in this session: served vectors of the entity go, statistics not recomputed go, exports, fits, copies and temporary tables are listed (those sessions end), the key values leave the record; audited. Returns the report.';

create or replace function fstore.forget(p_project text, p_keys jsonb) returns jsonb
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_keys jsonb := '{}';
  v_key text;
  v_value jsonb;
  v_text text;
  v_type text;
  v_canonical text;
  v_found boolean;
  v_erasure fstore.erasures;
  v_target jsonb;
  v_where text;
  v_relid oid;
  v_commit bigint;
  v_fg_id bigint;
  v_fg fstore.feature_groups;
  v_own jsonb := '[]';
  v_role text;
  v_rows bigint;
  v_report jsonb;
  v_left_stats jsonb := '{}';
begin
  perform fstore.check_project_name(p_project);
  perform fstore.require_data_owner(p_project, 'erase entities');
  if jsonb_typeof(p_keys) is distinct from 'object' or p_keys = '{}'::jsonb then
    raise exception 'give the entity''s keys as a JSON object, e.g. {"account_id": 42}' using errcode = '22023';
  end if;
  -- each value as the text of its column's type, cast here, in the caller's own rights
  for v_key, v_value in select key, value from jsonb_each(p_keys) loop
    perform fstore.check_column_name(v_key);
    if jsonb_typeof(v_value) not in ('string', 'number', 'boolean') then
      raise exception 'key %: give a plain value (text, number or boolean), not %', v_key, jsonb_typeof(v_value)
        using errcode = '22023';
    end if;
    v_text := v_value #>> '{}';
    v_canonical := null;
    v_found := false;
    for v_type in
      select pg_catalog.format_type(a.atttypid, a.atttypmod)
        from fstore.feature_groups g
        join pg_catalog.pg_class c on c.relname = g.offline_table
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace and n.nspname = g.project
        join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attname = v_key and not a.attisdropped
       where g.project = p_project
       group by 1 order by bool_or(v_key = any(g.entity_keys)) desc, min(g.id)
    loop
      v_found := true;
      begin
        execute format('select ($1::%s)::text', v_type) into v_text using v_value #>> '{}';
      exception when data_exception or sqlstate '42846' then
        raise exception 'key %: % is not a valid % (%)', v_key, v_value #>> '{}', v_type, sqlerrm using errcode = '22023';
      end;
      v_canonical := coalesce(v_canonical, v_text);
    end loop;
    if not v_found or not exists (select 1 from fstore.feature_groups g
                                   where g.project = p_project and v_key = any(g.entity_keys)) then
      raise exception 'no feature group of project % has an entity key %: nothing is erased by that key', p_project, v_key
        using errcode = '22023', hint = 'give the entity''s key columns by name, e.g. --key account_id=42';
    end if;
    v_keys := v_keys || jsonb_build_object(v_key, v_canonical);
  end loop;

  v_erasure := fstore.begin_erasure(p_project, v_keys);

  -- a Citus distributed table (feature group or training dataset on a cluster): its shards'
  -- triggers run on the workers, which cannot see the open erasure, so they refuse the
  -- DELETE; say so before anything goes, by name (docs/cluster.md, "Erasure")
  select string_agg(t ->> 'table', ', ' order by t ->> 'table') into v_where
    from jsonb_array_elements(v_erasure.targets) t
   where fstore.is_distributed((t ->> 'relid')::oid::regclass)
     and not has_table_privilege('fstore_writer', (t ->> 'relid')::oid, 'DELETE');
  if v_where is not null then
    raise exception 'fstore.forget cannot erase from these distributed tables (on a Citus cluster): %', v_where
      using errcode = '0A000', hint = 'nothing was erased; fstore erases from distributed feature-group tables only';
  end if;

  -- a distributed group's commits that hold the entity: their statistics over the rows that
  -- will be left, computed now, as the caller, before fstore_writer deletes (Citus refuses a
  -- read of placements another role changed in this transaction); stored after the delete
  for v_target in select * from jsonb_array_elements(v_erasure.targets) t where t ->> 'kind' = 'offline' loop
    v_relid := (v_target ->> 'relid')::oid;
    continue when not fstore.is_distributed(v_relid::regclass);
    v_fg := fstore.feature_group_by_id((v_target ->> 'feature_group_id')::bigint);
    continue when not v_fg.statistics_enabled;
    select string_agg(format('%I = %L::%s', c.key, v_keys ->> (c.value #>> '{}'),
                             pg_catalog.format_type(a.atttypid, a.atttypmod)), ' and ' order by c.key)
      into v_where
      from jsonb_each(v_target -> 'columns') c
      join pg_catalog.pg_attribute a on a.attrelid = v_relid and a.attname = c.key and not a.attisdropped;
    for v_commit in execute format('select distinct _commit_id from %s where %s', v_relid::regclass, v_where) loop
      continue when not exists (select 1 from fstore.commit_statistics s where s.commit_id = v_commit);
      drop view if exists pg_temp._fstore_erased_commit;
      execute format('create temp view _fstore_erased_commit as select * from %s where _commit_id = %s and not (%s)',
                     v_relid::regclass, v_commit, v_where);
      v_left_stats := v_left_stats || jsonb_build_object(v_commit::text,
        coalesce(fstore.batch_statistics(v_fg.id, 'pg_temp._fstore_erased_commit'::regclass), '{}'));
      drop view if exists pg_temp._fstore_erased_commit;
    end loop;
  end loop;

  -- the rows, in the caller's rights: fstore's triggers let only this entity's rows go
  for v_target in select * from jsonb_array_elements(v_erasure.targets) loop
    v_relid := (v_target ->> 'relid')::oid;
    select string_agg(format('%I = ($1 ->> %L)::%s', c.key, c.value #>> '{}', pg_catalog.format_type(a.atttypid, a.atttypmod)),
                      ' and ' order by c.key)
      into v_where
      from jsonb_each(v_target -> 'columns') c
      join pg_catalog.pg_attribute a on a.attrelid = v_relid and a.attname = c.key and not a.attisdropped;
    if fstore.is_distributed(v_relid::regclass) then
      -- its shards' triggers run on the workers, which cannot see this erasure: fstore's definer deletes
      perform fstore.erase_distributed_rows(v_relid::regclass);
    elsif has_table_privilege(v_relid, 'DELETE') then
      execute format('delete from %s where %s', v_relid::regclass, v_where) using v_keys;
    else
      -- stored training datasets grant nobody DELETE: their owner role deletes, which a Data
      -- Owner may SET ROLE to (session_user, whom the erasure names, stays the caller)
      v_role := current_setting('role');
      perform set_config('role', fstore.owner_role(p_project), true);
      execute format('delete from %s where %s', v_relid::regclass, v_where) using v_keys;
      perform set_config('role', v_role, true);
    end if;
  end loop;

  -- this session's own temporary tables with the keys' columns
  for v_relid in
    select c.oid from pg_catalog.pg_class c
     where c.relnamespace = pg_catalog.pg_my_temp_schema() and c.relkind = 'r'
       and not exists (select 1 from jsonb_object_keys(v_keys) k where not exists (
             select 1 from pg_catalog.pg_attribute a where a.attrelid = c.oid and a.attname = k and not a.attisdropped))
  loop
    select string_agg(format('%I = ($1 ->> %L)::%s', a.attname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ' and ')
      into v_where
      from pg_catalog.pg_attribute a where a.attrelid = v_relid and a.attname in (select jsonb_object_keys(v_keys));
    execute format('delete from %s where %s', v_relid::regclass, v_where) using v_keys;
    get diagnostics v_rows = row_count;
    v_own := v_own || jsonb_build_array(jsonb_build_object('table', v_relid::regclass::text, 'rows', v_rows));
  end loop;

  -- statistics of the commits that held the entity: recomputed over the rows left, as a commit computes them
  for v_commit, v_fg_id in
    select distinct c.commit_id, g.id from fstore.erased_rows r
      cross join lateral unnest(r.commits) c(commit_id)
      join fstore.feature_groups g on g.id = r.feature_group_id
     where r.erasure_id = v_erasure.id and r.kind = 'offline' and g.statistics_enabled
       and exists (select 1 from fstore.commit_statistics s where s.commit_id = c.commit_id)
     order by c.commit_id
  loop
    v_fg := fstore.feature_group_by_id(v_fg_id);
    if v_left_stats ? v_commit::text then  -- a distributed group's, computed before the delete
      perform fstore.replace_erased_statistics(v_erasure.id, v_commit, v_left_stats -> (v_commit::text));
      continue;
    end if;
    continue when fstore.is_distributed(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass);
    drop view if exists pg_temp._fstore_erased_commit;
    execute format('create temp view _fstore_erased_commit as select * from %I.%I where _commit_id = %s',
                   v_fg.project, v_fg.offline_table, v_commit);
    perform fstore.replace_erased_statistics(v_erasure.id, v_commit,
      coalesce(fstore.batch_statistics(v_fg.id, 'pg_temp._fstore_erased_commit'::regclass), '{}'));
    drop view if exists pg_temp._fstore_erased_commit;  -- "if exists": a Citus coordinator refuses the schema name pg_temp in DROP VIEW without it
  end loop;

  v_report := fstore.finish_erasure(v_erasure.id);
  return v_report || jsonb_build_object('own_temp_tables', v_own);
end $$;
comment on function fstore.forget(text,jsonb) is
  'Erase one entity everywhere in a project, in the caller''s transaction (GDPR article 17): select fstore.forget(''fraud'', ''{"account_id": 42}''). Every feature-group version (offline and online), stored training dataset, served-vector log and the project''s temporary tables; the statistics of the commits that held it are recomputed. Data Owners only; audited. Returns the report: rows per table, and what fstore cannot reach (exported files by path, fits, copies in other projects).';

grant execute on function
  fstore.erasure_columns(oid),
  fstore.check_erased_row(),
  fstore.begin_erasure(text,jsonb),
  fstore.replace_erased_statistics(bigint,bigint,jsonb),
  fstore.finish_erasure(bigint),
  fstore.forget(text,jsonb)
  to public;
-- fstore's own: the trigger functions only fstore attaches, and what only the erasure steps call
revoke execute on function fstore.count_erased_rows(), fstore.require_finished_erasure(), fstore.open_erasure(),
  fstore.erasure_targets(text,text[]), fstore.record_erased_rows(oid,bigint,bigint[]) from public;
grant execute on function fstore.record_erased_rows(oid,bigint,bigint[]) to fstore_writer;
reset role;

-- created by the superuser, then given to fstore_writer (as fstore.write_commit_batch): the
-- only role whose DELETE the shards of a distributed table take, for exactly the rows of the
-- erasure open in the caller's transaction of the caller's session
create or replace function fstore.erase_distributed_rows(p_relid regclass) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_columns jsonb := fstore.erasure_columns(p_relid);
  v_where text;
  v_commit bigint;
  v_rows bigint := 0;
  v_commits bigint[] := '{}';
begin
  if v_columns is null then
    raise exception 'permission denied: rows of % go only in an erasure open in this transaction that targets it',
      p_relid using errcode = '42501', hint = 'use fstore.forget(project, keys)';
  end if;
  if not fstore.is_distributed(p_relid) then
    raise exception '% is not distributed: fstore.forget deletes its rows itself', p_relid using errcode = '42501';
  end if;
  -- the erasure's values as literals of the columns' types (so Citus prunes to their shard)
  select string_agg(format('%I = %L::%s', c.key, c.value, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                    ' and ' order by c.key)
    into v_where
    from jsonb_each_text(v_columns) c
    join pg_catalog.pg_attribute a on a.attrelid = p_relid and a.attname = c.key and not a.attisdropped;
  if v_where is null or (select count(*) from pg_catalog.pg_attribute a, jsonb_object_keys(v_columns) k
                          where a.attrelid = p_relid and a.attname = k and not a.attisdropped)
                        <> (select count(*) from jsonb_object_keys(v_columns)) then
    raise exception 'the erasure''s columns are not all columns of %', p_relid using errcode = '42501';
  end if;
  if exists (select 1 from pg_catalog.pg_attribute where attrelid = p_relid and attname = '_commit_id' and not attisdropped) then
    for v_commit in execute format('delete from %s where %s returning _commit_id', p_relid, v_where) loop
      v_rows := v_rows + 1;
      v_commits := v_commits || v_commit;
    end loop;
  else
    execute format('delete from %s where %s', p_relid, v_where);
    get diagnostics v_rows = row_count;
  end if;
  perform fstore.record_erased_rows(p_relid, v_rows, array(select distinct c from unnest(v_commits) c order by c));
  return v_rows;
end $$;
comment on function fstore.erase_distributed_rows(regclass) is
  'During an erasure open in this transaction of this session that targets the distributed table p_relid: delete exactly the erased entity''s rows (on the workers, as fstore_writer, whom the shards'' append-only triggers let delete) and record them; returns the count. Called by fstore.forget.';
grant execute on function fstore.erase_distributed_rows(regclass) to public;
alter function fstore.erase_distributed_rows(regclass) owner to fstore_writer;


-- tables secured before the erasure triggers existed (an upgrade) get them
do $$
declare
  v_relid oid;
begin
  for v_relid in select m.relid from fstore.managed_tables m
                  where exists (select 1 from pg_catalog.pg_class c where c.oid = m.relid)
                    and not exists (select 1 from pg_catalog.pg_trigger t
                                     where t.tgrelid = m.relid and t.tgname = 'fstore_erasure_rows') loop
    perform fstore.apply_table_rules(v_relid::regclass);
  end loop;
end $$;
