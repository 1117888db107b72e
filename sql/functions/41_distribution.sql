-- Distributed feature groups on a Citus coordinator (docs/cluster.md, "Data placement").
--
-- On a coordinator with workers, fstore.create_feature_group distributes the offline and
-- online tables by one entity key (options.distribution_key, default the first key),
-- co-located with every other table distributed by a column of the same type (Citus's
-- default colocation), so the point-in-time join of groups on that key and an online
-- lookup by key run on the shard that holds the key.
--
-- Two things differ from a single node, both forced by Citus 13.2:
--  * Policies: Citus refuses subqueries in policies of distributed tables, and it
--    creates a table's policies on the shards as PERMISSIVE even when they are
--    RESTRICTIVE (seen on 13.2.2: pg_policies on a worker). Permissive policies are
--    OR-ed, so a distributed table carries exactly one permissive policy per command
--    (fstore_read, fstore_insert, fstore_update, fstore_delete), each the AND of all
--    that applies to it, and no policy FOR ALL (fstore.apply_table_rules).
--  * The commit gate: the shards live on workers, which cannot see the coordinator's
--    catalog (fstore.commits, the session's open commit). Rows reach a distributed table
--    only through fstore.write_commit_batch, SECURITY DEFINER owned by fstore_writer;
--    the shards' insert and update policies accept current_user = fstore_writer only
--    (on a worker current_user is the role Citus logged in as, the coordinator's
--    current role). write_commit_batch itself accepts only the commit open in the
--    caller's transaction of the caller's session (as fstore.finish_commit does), so a
--    writer can still only add rows to a commit of their own, as on a single node.

set role fstore_control;

create or replace function fstore.citus_present() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select exists (select 1 from pg_catalog.pg_extension where extname = 'citus')
$$;
comment on function fstore.citus_present() is
  'True on a Citus coordinator (or worker): the citus extension is installed.';

create or replace function fstore.is_distributed(p_table regclass) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_found boolean;
begin
  if not fstore.citus_present() then
    return false;
  end if;
  execute 'select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = $1)'
    into v_found using p_table;
  return v_found;
end $$;
comment on function fstore.is_distributed(regclass) is
  'True when p_table is a Citus distributed table (false on a single node).';

create or replace function fstore.cluster_has_workers() returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_found boolean;
begin
  if not fstore.citus_present() then
    return false;
  end if;
  execute 'select exists (select 1 from pg_catalog.pg_dist_node where groupid <> 0 and noderole = ''primary'')'
    into v_found;
  return v_found;
end $$;
comment on function fstore.cluster_has_workers() is
  'True on a Citus coordinator with at least one worker: feature groups created there are distributed.';

create or replace function fstore.check_distribution_key(p_name text, p_keys text[], p_options jsonb) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_key text := coalesce(p_options->>'distribution_key', p_keys[1]);
begin
  if p_options ? 'distribution_key' and jsonb_typeof(p_options->'distribution_key') <> 'string' then
    raise exception 'options.distribution_key of % must name one entity key column (keys: %)',
      p_name, array_to_string(p_keys, ', ') using errcode = '22023';
  end if;
  if not (v_key = any(p_keys)) then
    raise exception 'options.distribution_key % is not an entity key of % (keys: %)',
      quote_literal(v_key), p_name, array_to_string(p_keys, ', ') using errcode = '22023';
  end if;
  return v_key;
end $$;
comment on function fstore.check_distribution_key(text,text[],jsonb) is
  'The column a feature group is distributed by: options.distribution_key (which must be one of its entity keys) or its first key.';

create or replace function fstore.distribute_feature_group(p_feature_group_id bigint) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_key text;
  v_table regclass;
  v_old record;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'create feature groups');
  v_key := fstore.check_distribution_key(v_fg.name, v_fg.entity_keys, v_fg.options);
  foreach v_table in array array[format('%I.%I', v_fg.project, v_fg.offline_table)::regclass]
                            || case when v_fg.online then array[format('%I.%I', v_fg.project, v_fg.online_table)::regclass]
                                    else '{}'::regclass[] end loop
    if fstore.is_distributed(v_table) then
      continue;
    end if;
    -- the single-node policies (subqueries, RESTRICTIVE) go first: Citus refuses the one and
    -- would make the other permissive on the shards; apply_table_rules writes the
    -- distributed ones below
    for v_old in select polname from pg_catalog.pg_policy where polrelid = v_table loop
      execute format('drop policy %I on %s', v_old.polname, v_table);
    end loop;
    if v_fg.online and v_table = format('%I.%I', v_fg.project, v_fg.online_table)::regclass then
      perform pg_catalog.create_distributed_table(v_table, v_key,
                                                  colocate_with => format('%I.%I', v_fg.project, v_fg.offline_table));
    else
      perform pg_catalog.create_distributed_table(v_table, v_key);
    end if;
    execute format('grant select, insert, update, delete on %s to fstore_writer', v_table);  -- delete: erasure
    perform fstore.apply_table_rules(v_table);
  end loop;
  execute format('grant usage on schema %I to fstore_writer', v_fg.project);
end $$;
comment on function fstore.distribute_feature_group(bigint) is
  'On a Citus coordinator: distribute a new feature group''s tables by its distribution key (co-located with the other groups of that key type), give fstore_writer its write grants, and write the distributed policies. Called by fstore.create_feature_group for a Data Owner (as p__owner).';

grant execute on function
  fstore.citus_present(),
  fstore.is_distributed(regclass),
  fstore.cluster_has_workers(),
  fstore.check_distribution_key(text,text[],jsonb),
  fstore.distribute_feature_group(bigint)
  to public;
reset role;

-- created by the superuser, then given to fstore_writer: re-applying this file replaces it
-- over fstore_writer's ownership (CREATE OR REPLACE keeps the owner), which fstore_control,
-- not a member of fstore_writer, could not
create or replace function fstore.write_commit_batch(p_feature_group_id bigint, p_batch regclass) returns bigint[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_commit bigint;
  v_fg fstore.feature_groups;
  v_offline regclass;
  v_rel record;
  v_cols text;
  v_keys text;
  v_updates text;
  v_rows bigint := 0;
  v_online_rows bigint := 0;
  v_missing text;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_commit := fstore.open_commit(p_feature_group_id);
  if v_commit is null then
    raise exception 'no commit of feature group %.% is open in this session', v_fg.project, v_fg.name
      using errcode = '42501', hint = 'rows reach a distributed feature group only through fstore.commit_feature_rows';
  end if;
  v_offline := format('%I.%I', v_fg.project, v_fg.offline_table)::regclass;
  if not fstore.is_distributed(v_offline) then
    raise exception 'feature group %.% is not distributed: its rows come from fstore.commit_feature_rows', v_fg.project,
      v_fg.name using errcode = '42501';
  end if;
  -- the batch: a plain table of this session's own temporary schema, with nothing that would
  -- run code of the caller's while it is read here (no row security, rules, triggers,
  -- indexes; read with ONLY, so no child table), and exactly the target's column types (so
  -- no cast, operator or type of the caller's is evaluated)
  select c.relkind, c.relrowsecurity, c.relhasrules, c.relhastriggers, c.relhasindex, c.relnamespace into v_rel
    from pg_catalog.pg_class c where c.oid = p_batch;
  if not found or v_rel.relkind <> 'r' or v_rel.relnamespace <> pg_catalog.pg_my_temp_schema()
     or v_rel.relrowsecurity or v_rel.relhasrules or v_rel.relhastriggers or v_rel.relhasindex then
    raise exception 'the batch of commit % must be a plain temporary table of this session', v_commit
      using errcode = '42501';
  end if;
  select string_agg(t.attname::text, ', ' order by t.attnum) into v_missing
    from pg_catalog.pg_attribute t
   where t.attrelid = v_offline and t.attnum > 0 and not t.attisdropped
     and t.attname <> '_commit_id'
     and not exists (select 1 from pg_catalog.pg_attribute b where b.attrelid = p_batch and b.attname = t.attname
                        and not b.attisdropped and b.atttypid = t.atttypid and b.atttypmod = t.atttypmod);
  if v_missing is not null then
    raise exception 'the batch of commit % lacks columns of %.% (or has other types): %', v_commit,
      v_fg.project, v_fg.offline_table, v_missing using errcode = '42804';
  end if;
  -- the columns from the table itself (fstore_writer reads no catalog table)
  select string_agg(format('%I', attname), ', ' order by attnum) into v_cols from pg_catalog.pg_attribute
   where attrelid = v_offline and attnum > 0 and not attisdropped and attname not in ('_commit_id', v_fg.event_time);
  select string_agg(format('%I', k), ', ') into v_keys from unnest(v_fg.entity_keys) k;
  execute format('insert into %1$I.%2$I (%3$s, %4$I, _commit_id) select %3$s, %4$I, $1 from only %5$s',
                 v_fg.project, v_fg.offline_table, v_cols, v_fg.event_time, p_batch) using v_commit;
  get diagnostics v_rows = row_count;
  if v_fg.online and v_rows > 0 then
    select string_agg(format('%1$I = excluded.%1$I', attname), ', ' order by attnum) into v_updates
      from pg_catalog.pg_attribute where attrelid = v_offline and attnum > 0 and not attisdropped
       and attname not in ('_commit_id', v_fg.event_time) and not (attname::text = any(v_fg.entity_keys));
    v_updates := concat_ws(', ', v_updates, format('%1$I = excluded.%1$I', v_fg.event_time),
                           '_commit_id = excluded._commit_id');
    -- newer-only: an older event_time never replaces a newer one; ties go to the later commit
    execute format(
      'insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
         select distinct on (%5$s) %3$s, %4$I, $1 from only %6$s order by %5$s, %4$I desc
       on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
      v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, p_batch, v_updates) using v_commit;
    get diagnostics v_online_rows = row_count;
  end if;
  return array[v_rows, v_online_rows];
end $$;
comment on function fstore.write_commit_batch(bigint,regclass) is
  'Write the rows of the commit of feature group p_feature_group_id open in this session (staged in a plain temporary table with the target''s column types) to its distributed offline table and, newer-only, online table; returns {offline rows, online rows}. The only writer of distributed feature tables (owned by fstore_writer, which their shards'' policies accept).';

grant execute on function fstore.write_commit_batch(bigint,regclass) to public;
alter function fstore.write_commit_batch(bigint,regclass) owner to fstore_writer;
