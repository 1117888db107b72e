-- Versioned schema migration: the fstore_asof extension (ext/fstore_asof, built and
-- installed by scripts/setup.sh), the one-pass ASOF merge of the point-in-time join's
-- 'asof' strategy. Created by the superuser that applies migrations, in its own schema
-- fstore_asof (no project may take that name: fstore* names are reserved).
-- Where the extension is not installed (an image without it), nothing is created: the
-- planner then never offers 'asof' (fstore.point_in_time_strategies checks pg_extension),
-- and a server that gets it later creates it with: create extension fstore_asof.
do $$
begin
  if exists (select 1 from pg_catalog.pg_available_extensions where name = 'fstore_asof') then
    create extension if not exists fstore_asof;
  end if;
end $$;
