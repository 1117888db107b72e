-- Versioned schema migration: distributed spines of point-in-time joins on a Citus cluster
-- (docs/cluster.md, "Spines and training tables on a cluster"; sql/functions/44_spines.sql).
--
-- A temporary table cannot be distributed, so a spine that is to be co-located with
-- distributed feature groups goes into schema fstore_spines: owned by fstore_control, no
-- CREATE for anyone else (so no spine table can be pre-created by a tenant), USAGE for
-- everyone (each table is granted to the person who loaded it, and to nobody else). The
-- tables are made only by fstore.create_spine_table (SECURITY DEFINER) with a fresh random
-- name, recorded in fstore.spine_tables, and dropped by fstore.drop_spine_table after the
-- join (or, left behind by a session that died, by its creator's next spine).

set role fstore_control;

create schema fstore_spines;
revoke all on schema fstore_spines from public;
grant usage on schema fstore_spines to public;

create table fstore.spine_tables (
  relname        text primary key,            -- in schema fstore_spines: s_<32 random hex digits>
  relid          oid not null,
  created_by     text not null default session_user,
  backend_pid    integer not null default pg_backend_pid(),
  created_at     timestamptz not null default clock_timestamp()
);
revoke all on fstore.spine_tables from public;

reset role;

comment on schema fstore_spines is 'Distributed spines of point-in-time joins on a Citus cluster: one table per join, made by fstore.create_spine_table with a random name, granted to its creator only, dropped after the join.';
comment on table fstore.spine_tables is 'The spine tables of schema fstore_spines and who made them (session_user, backend pid: a table whose backend is gone is dropped by its creator''s next spine): written only by fstore.create_spine_table and fstore.drop_spine_table; nobody reads it but those functions.';

-- distributed training tables (sql/functions/75_training_datasets.sql): the local copy Citus
-- leaves behind a distributed table goes (revoked from PUBLIC on a coordinator: fstore/citus.py)
do $$
begin
  if exists (select 1 from pg_extension where extname = 'citus') then
    execute 'grant execute on function pg_catalog.truncate_local_data_after_distributing_table(regclass) to fstore_control';
  end if;
end $$;
