-- Versioned schema migration: distributed feature groups on a Citus coordinator
-- (docs/cluster.md, "Data placement").
--
--   fstore_writer  NOLOGIN (LOGIN on the workers only, where only the node certificate
--                  logs in), BYPASSRLS, no CREATEROLE. It owns one SECURITY DEFINER
--                  function, fstore.write_commit_batch, the only way rows reach a
--                  *distributed* offline or online table: the shards' commit gate is
--                  "current_user = fstore_writer", which a worker can check without the
--                  coordinator's catalog (the single-node gate, _commit_id = the
--                  session's open commit, reads fstore.commits, which only the
--                  coordinator holds). BYPASSRLS so that its newer-only online upsert
--                  sees every existing row whatever the declared row policies hide.
--
-- On a Citus coordinator, fstore_control may distribute tables (create_distributed_table
-- is revoked from PUBLIC there: fstore/citus.py).

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'fstore_writer') then
    create role fstore_writer nologin nocreaterole bypassrls;
  end if;
  if exists (select 1 from pg_extension where extname = 'citus') then
    execute 'grant execute on function pg_catalog.create_distributed_table(regclass, text, citus.distribution_type, text, integer) to fstore_control';
  end if;
end $$;
