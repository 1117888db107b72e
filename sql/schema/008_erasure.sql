-- Versioned schema migration: erasure of an entity (GDPR article 17), the one audited
-- exception to "feature-group history and stored training datasets are append-only".
--
-- fstore.erasures  one row per erasure, written only by fstore's erasure functions
--                  (sql/functions/87_erasure.sql; nobody holds INSERT, UPDATE or DELETE).
--                  While it is open (state 'open', in transaction `xact` of backend
--                  `backend_pid`, by `session_role`) the tables listed in `targets` accept a
--                  DELETE of the rows whose columns equal `key_values`, and nothing else
--                  (the triggers of sql/functions/35_row_policies.sql). When it is done, the
--                  values are gone: the record keeps the key names, a digest and the report.
-- fstore.erased_rows  how many rows each erasure removed from each table, counted by
--                  fstore's own trigger on that table (not by the caller), and the commits
--                  those rows came from (their statistics are recomputed). Readers of a
--                  training dataset see its erased row count (and no values).

set role fstore_control;

create table fstore.erasures (
  id             bigserial primary key,
  project        text not null references fstore.projects (name) on delete cascade,
  key_names      text[] not null,
  key_values     jsonb,            -- {key: canonical text}; NULL once the erasure is done
  keys_sha256    text not null,    -- sha256 of the canonical {key: value} JSON, to recognise a request again
  targets        jsonb not null,   -- [{relid, table, kind, feature_group_id, training_dataset_id, columns: {column: key}}]
  state          text not null default 'open' check (state in ('open', 'done')),
  report         jsonb not null default '{}',
  requested_at   timestamptz not null default clock_timestamp(),
  session_role   text not null default session_user,
  client_serial  numeric,
  app_id         text,
  backend_pid    integer not null default pg_catalog.pg_backend_pid(),
  xact           xid8 not null default pg_catalog.pg_current_xact_id(),
  check (state = 'open' or key_values is null)
);

-- one erasure per transaction: an open erasure never covers another entity's rows
create unique index erasures_one_per_transaction on fstore.erasures (xact);

create index on fstore.erasures (project, requested_at);

create table fstore.erased_rows (
  erasure_id           bigint not null references fstore.erasures (id) on delete cascade,
  project              text not null,
  relid                oid not null,
  table_name           text not null,
  kind                 text not null check (kind in ('offline', 'online', 'training')),
  feature_group_id     bigint,
  training_dataset_id  bigint,
  rows                 bigint not null default 0,
  commits              bigint[] not null default '{}',
  primary key (erasure_id, relid)
);

create index on fstore.erased_rows (training_dataset_id) where training_dataset_id is not null;

alter table fstore.erasures enable row level security;

alter table fstore.erased_rows enable row level security;

-- (the policies are in sql/functions/87_erasure.sql)
grant select on fstore.erasures, fstore.erased_rows to public;

reset role;
