-- Distributed spines (docs/cluster.md, "Spines and training tables on a cluster").
--
-- When every feature group of a point-in-time join is distributed and they are co-located
-- (one colocation group) and joined on their distribution keys by one spine column, the
-- spine is loaded into a distributed table co-located with them, so that Citus runs the
-- join (probe or merge) per shard, on the workers. A temporary table cannot be distributed:
-- the spine goes into schema fstore_spines (migration 014), where nobody but fstore_control
-- can create anything. fstore.create_spine_table makes one table with a fresh random name
-- (refused if it exists), like the caller's own temporary template, distributed by the
-- column given, granted SELECT and INSERT to the caller (session_user) only; the caller
-- loads it (COPY), joins, and drops it with fstore.drop_spine_table.
--
--   select fstore.spine_placement(array['activity:*'], null);   -- {"distributed": true, "column": ...}

set role fstore_control;

create or replace function fstore.distribution_column(p_table regclass) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_column text;
begin
  if not fstore.is_distributed(p_table) then
    return null;
  end if;
  execute 'select pg_catalog.column_to_column_name(logicalrelid, partkey) from pg_catalog.pg_dist_partition'
          ' where logicalrelid = $1 and partmethod = ''h'''
    into v_column using p_table;
  return v_column;
end $$;
comment on function fstore.distribution_column(regclass) is
  'The column a hash-distributed Citus table is distributed by (NULL for any other table, and on a single node).';

create or replace function fstore.colocation_id(p_table regclass) returns integer
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_id integer;
begin
  if not fstore.is_distributed(p_table) then
    return null;
  end if;
  execute 'select colocationid from pg_catalog.pg_dist_partition where logicalrelid = $1' into v_id using p_table;
  return v_id;
end $$;
comment on function fstore.colocation_id(regclass) is
  'The Citus colocation group of a distributed table (NULL for any other table, and on a single node).';

create or replace function fstore.spine_colocated(p_spine regclass, p_table regclass) returns boolean
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce((select n.nspname = 'fstore_spines' from pg_catalog.pg_class c
                     join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_spine), false)
     and fstore.colocation_id(p_spine) is not null
     and fstore.colocation_id(p_spine) = fstore.colocation_id(p_table)
$$;
comment on function fstore.spine_colocated(regclass,regclass) is
  'True when p_spine is a distributed spine of fstore_spines co-located with the distributed table p_table: a join of the two on the distribution key runs per shard on the workers.';

-- Where the spine of a join of these features goes: distributed (with the column to
-- distribute by and the table to co-locate with) when every group is distributed, all
-- are co-located, and the groups' distribution keys come from one spine column; else the
-- coordinator, with the reason.
create or replace function fstore.spine_placement(p_features text[], p_keys jsonb default null,
                                                  p_full_feature_names boolean default false) returns jsonb
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_plan jsonb := fstore.resolve_features(p_features, p_full_feature_names);
  v_fg jsonb;
  v_table regclass;
  v_first regclass;
  v_key text;
  v_column text;
  v_spine_column text;
  v_colocation integer;
begin
  if not fstore.cluster_has_workers() then
    return jsonb_build_object('distributed', false, 'reason', 'a single node');
  end if;
  for v_fg in select g from jsonb_array_elements(v_plan) g loop
    v_table := format('%I.%I', v_fg->>'project', v_fg->>'table')::regclass;
    v_key := fstore.distribution_column(v_table);
    if v_key is null then
      return jsonb_build_object('distributed', false, 'reason',
        format('feature group %s.%s is not distributed: the spine stays on the coordinator', v_fg->>'project', v_fg->>'name'));
    end if;
    v_column := coalesce((select k.key from jsonb_each_text(coalesce(p_keys, '{}')) k where k.value = v_key limit 1), v_key);
    if v_first is null then
      v_first := v_table;
      v_spine_column := v_column;
      v_colocation := fstore.colocation_id(v_table);
    elsif fstore.colocation_id(v_table) <> v_colocation then
      return jsonb_build_object('distributed', false, 'reason',
        format('feature groups %s and %s are not co-located: the spine stays on the coordinator', v_first, v_table));
    elsif v_column <> v_spine_column then
      return jsonb_build_object('distributed', false, 'reason',
        format('%s is distributed by spine column %s, %s by %s: one spine cannot be co-located with both',
               v_first, v_spine_column, v_table, v_column));
    end if;
  end loop;
  return jsonb_build_object('distributed', true, 'column', v_spine_column, 'colocate_with', v_first::text,
    'reason', format('every feature group is distributed and co-located: the spine is distributed by %s, co-located with %s',
                     v_spine_column, v_first));
end $$;
comment on function fstore.spine_placement(text[],jsonb,boolean) is
  'Where the spine of a point-in-time join of these features goes on a cluster: {distributed: true, column, colocate_with, reason} when every feature group is distributed, all are co-located and their distribution keys come from one spine column (keys maps spine columns to group keys); else {distributed: false, reason}.';

create or replace function fstore.create_spine_table(p_template regclass, p_column text, p_colocate_with regclass)
returns text language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_max_live constant integer := 8;  -- spine tables one person may hold at once (each has a shard per colocated shard)
  v_name text := 's_' || replace(pg_catalog.gen_random_uuid()::text, '-', '');
  v_table text;
  v_key text;
  v_key_type oid;
  v_type oid;
  v_old record;
begin
  perform fstore.require_session_project();
  if not fstore.cluster_has_workers() then
    raise exception 'a distributed spine needs a Citus cluster with workers' using errcode = '0A000';
  end if;
  -- the template: an ordinary temporary table of this session that the caller owns, with built-in types
  if not exists (select 1 from pg_catalog.pg_class c
                  where c.oid = p_template and c.relkind = 'r' and c.relnamespace = pg_catalog.pg_my_temp_schema()
                    and pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER'))
     or exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = p_template and a.attnum > 0
                   and not a.attisdropped and not fstore.trusted_type(a.atttypid)) then
    raise exception 'a spine table is made only like an ordinary temporary table of this session with built-in types, not %',
      p_template using errcode = '42501';
  end if;
  -- co-located with a distributed feature group the caller may read
  if not exists (select 1 from fstore.feature_groups g
                  where format('%I.%I', g.project, g.offline_table)::regclass = p_colocate_with
                    and fstore.session_sees_project(g.project))
     or not pg_catalog.has_table_privilege(session_user, p_colocate_with, 'SELECT')
     or fstore.distribution_column(p_colocate_with) is null then
    raise exception 'permission denied: % is not a distributed feature group of a project visible to %',
      p_colocate_with, session_user using errcode = '42501';
  end if;
  select a.atttypid into v_type from pg_catalog.pg_attribute a
   where a.attrelid = p_template and a.attname = p_column and a.attnum > 0 and not a.attisdropped;
  if v_type is null then
    raise exception 'the spine has no column % (the distribution key of %)', coalesce(quote_ident(p_column), 'NULL'),
      p_colocate_with using errcode = '42703';
  end if;
  v_key := fstore.distribution_column(p_colocate_with);
  select a.atttypid into v_key_type from pg_catalog.pg_attribute a where a.attrelid = p_colocate_with and a.attname = v_key;

  -- the caller's spine tables left behind by sessions that are gone; and a bound on the live ones
  for v_old in select s.relname from fstore.spine_tables s
                where s.created_by = session_user::text
                  and not exists (select 1 from pg_catalog.pg_stat_activity a  -- backend_start is hidden from
                                   where a.pid = s.backend_pid and a.usename = s.created_by) loop  -- fstore_control
    execute format('drop table if exists fstore_spines.%I', v_old.relname);
    delete from fstore.spine_tables where relname = v_old.relname;
  end loop;
  if (select count(*) from fstore.spine_tables s where s.created_by = session_user::text) >= c_max_live then
    raise exception '% holds % distributed spines already: drop them (fstore.drop_spine_table) first', session_user,
      c_max_live using errcode = '53400';
  end if;

  -- a fresh name; CREATE TABLE (not IF NOT EXISTS) refuses a table that is there already
  v_table := format('fstore_spines.%I', v_name);
  execute format('create table %s (like %s)', v_table, p_template);
  if v_type <> v_key_type then  -- the key as the group's type: co-location and the join need it
    execute format('alter table %s alter column %I type %s using %I::%s', v_table, p_column,
                   format_type(v_key_type, null), p_column, format_type(v_key_type, null));
  end if;
  perform pg_catalog.create_distributed_table(v_table::regclass, p_column, colocate_with => p_colocate_with::text);
  execute format('grant select, insert on %s to %I', v_table, session_user);
  insert into fstore.spine_tables (relname, relid) values (v_name, v_table::regclass);
  return v_table;
end $$;
comment on function fstore.create_spine_table(regclass,text,regclass) is
  'Make a distributed spine table: fstore_spines.s_<random>, with the columns of the caller''s temporary table p_template (the distribution column as the group''s key type), distributed by p_column co-located with the distributed feature group p_colocate_with (which the caller must be able to read), granted SELECT and INSERT to the caller only. A fresh name each time (CREATE TABLE refuses one that exists); at most 8 live per person; the caller''s tables left by dead sessions are dropped first. Returns the table''s name.';

create or replace function fstore.drop_spine_table(p_table text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_name text := case when p_table like 'fstore\_spines.%' then substr(p_table, length('fstore_spines.') + 1)
                      else p_table end;
begin
  v_name := btrim(v_name, '"');
  if not exists (select 1 from fstore.spine_tables s where s.relname = v_name and s.created_by = session_user::text) then
    raise exception 'spine table % does not exist or is not %''s', coalesce(quote_literal(left(p_table, 80)), 'NULL'),
      session_user using errcode = '42501';
  end if;
  execute format('drop table if exists fstore_spines.%I', v_name);
  delete from fstore.spine_tables where relname = v_name;
  return true;
end $$;
comment on function fstore.drop_spine_table(text) is
  'Drop a distributed spine table (fstore_spines.s_...) its caller made with fstore.create_spine_table; anyone else''s is refused.';

revoke all on function fstore.create_spine_table(regclass,text,regclass), fstore.drop_spine_table(text) from public;
grant execute on function
  fstore.distribution_column(regclass),
  fstore.colocation_id(regclass),
  fstore.spine_colocated(regclass,regclass),
  fstore.spine_placement(text[],jsonb,boolean),
  fstore.create_spine_table(regclass,text,regclass),
  fstore.drop_spine_table(text)
  to public;
reset role;

set role fstore_control;
create or replace function fstore.spine_location(p_spine regclass, p_table regclass) returns text
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select case when fstore.spine_colocated(p_spine, p_table)
              then format('distributed: %s by %s, co-located with %s (the join runs per shard on the workers)',
                          p_spine, fstore.distribution_column(p_spine), p_table)
              when fstore.is_distributed(p_spine)
              then format('distributed: %s, not co-located with %s', p_spine, p_table)
              else 'coordinator' end
$$;
comment on function fstore.spine_location(regclass,regclass) is
  'Where a point-in-time join''s spine is, said for one distributed feature group''s table: a distributed spine co-located with it, or the coordinator.';
grant execute on function fstore.spine_location(regclass,regclass) to public;
reset role;
