-- Versioned schema migration: the feature store's catalog tables: feature groups, their
-- features, commits and statistics, the commit lock rows, fstore's own tables in project
-- schemas (managed_tables), training datasets and their exports. Row-level security is
-- enabled here; the policies live in sql/functions/90_catalog_policies.sql.

set role fstore_control;

create table fstore.feature_groups (
  id                  bigserial primary key,
  project             text not null references fstore.projects (name) on delete cascade,
  name                text not null,
  version             integer not null check (version >= 1),
  entity_keys         text[] not null,
  event_time          text not null default 'event_time',
  online              boolean not null default false,
  ttl                 interval,
  description         text not null default '',
  tags                text[] not null default '{}',
  offline_table       text not null,
  online_table        text,
  statistics_enabled  boolean not null default true,
  options             jsonb not null default '{}',
  upstream            jsonb not null default '[]',
  created_at          timestamptz not null default now(),
  created_by          text not null default session_user,
  unique (project, name, version)
);

create table fstore.features (
  feature_group_id  bigint not null references fstore.feature_groups (id) on delete cascade,
  name              text not null,
  data_type         text not null,
  description       text not null default '',
  position          integer not null,
  is_key            boolean not null default false,
  primary key (feature_group_id, name)
);

create table fstore.commits (
  id                bigserial primary key,
  feature_group_id  bigint not null references fstore.feature_groups (id) on delete cascade,
  rows              bigint not null default 0,
  online_rows       bigint not null default 0,
  min_event_time    timestamptz,
  max_event_time    timestamptz,
  source            text not null default 'python',
  committed_at      timestamptz not null default now(),
  session_role      text not null default session_user,
  client_serial     numeric,
  app_id            text,
  validation        jsonb not null default '{}',
  -- open: begun in transaction `xact` of backend `backend_pid`, the only one whose rows
  -- the feature group's tables accept (fstore.open_commit); done: finished, immutable
  state             text not null default 'open' check (state in ('open', 'done')),
  backend_pid       integer not null default pg_catalog.pg_backend_pid(),
  xact              xid8 not null default pg_catalog.pg_current_xact_id()
);

create index on fstore.commits (feature_group_id, id);

create index on fstore.commits (feature_group_id) where state = 'open';

-- One row per feature group: its commits (and schema changes) take this row's lock, one
-- at a time. A row lock, so that nobody without UPDATE on the table (every tenant) can
-- take it to stall the group's commits, as an advisory lock would let them.
create table fstore.feature_group_locks (
  feature_group_id  bigint primary key references fstore.feature_groups (id) on delete cascade
);

create table fstore.commit_statistics (
  commit_id  bigint not null references fstore.commits (id) on delete cascade,
  feature    text not null,
  stats      jsonb not null,
  primary key (commit_id, feature)
);

alter table fstore.feature_groups enable row level security;

alter table fstore.features enable row level security;

alter table fstore.commits enable row level security;

alter table fstore.commit_statistics enable row level security;

-- (the policy on fstore.commit_statistics is in sql/functions/90_catalog_policies.sql)
grant select on fstore.feature_groups, fstore.features, fstore.commits, fstore.commit_statistics to public;

-- fstore's own tables in project schemas, with the shape they must keep.
create table fstore.managed_tables (
  relid                oid primary key,
  project              text not null references fstore.projects (name) on delete cascade,
  relname              text not null,
  kind                 text not null check (kind in ('offline', 'online', 'training')),
  feature_group_id     bigint,
  training_dataset_id  bigint,
  columns              jsonb not null   -- [{"name", "type" (oid), "not_null"}] at the last check
);

alter table fstore.managed_tables enable row level security;

grant select on fstore.managed_tables to public;

create table fstore.training_datasets (
  id                  bigserial primary key,
  project             text not null references fstore.projects (name) on delete cascade,
  name                text not null,
  version             integer not null check (version >= 1),
  table_name          text not null,
  features            text[] not null,
  feature_groups      jsonb not null,   -- [{id, project, name, version, max_commit, commits: [...],
                                        --   features: [{name, output}], key_columns: {group key: spine column}}]
  spine_columns       text[] not null,
  event_time_column   text not null,
  ttl                 interval,
  full_feature_names  boolean not null default false,
  keys                jsonb,
  label               text[] not null default '{}',
  split               jsonb,
  seed                bigint not null default 0,
  spine_hash          text not null,
  rows                bigint not null,
  description         text not null default '',
  created_at          timestamptz not null default now(),
  created_by          text not null default session_user,
  client_serial       numeric,
  app_id              text,
  unique (project, name, version)
);

alter table fstore.training_datasets enable row level security;

grant select on fstore.training_datasets to public;

-- Files a training dataset was written to, each recorded by the session that wrote it.
create table fstore.training_dataset_exports (
  id                   bigserial primary key,
  training_dataset_id  bigint not null references fstore.training_datasets (id) on delete cascade,
  format               text not null,
  path                 text not null,
  rows                 bigint not null,
  at                   timestamptz not null default now(),
  by                   text not null default session_user,
  client_serial        numeric,
  app_id               text
);

create index on fstore.training_dataset_exports (training_dataset_id);

alter table fstore.training_dataset_exports enable row level security;

grant select on fstore.training_dataset_exports to public;

reset role;
