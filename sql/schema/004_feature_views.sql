-- Versioned schema migration: feature views (one definition of what a model consumes, for
-- training and for serving), the transformation parameters fitted on a training
-- dataset's training split, and the log of served vectors.

set role fstore_control;

create table fstore.feature_views (
  id               bigserial primary key,
  project          text not null references fstore.projects (name) on delete cascade,
  name             text not null,
  version          integer not null check (version >= 1),
  features         text[] not null,   -- the references, each pinned to its group's version
  plan             jsonb not null,    -- fstore.resolve_features of those references
  label            text[] not null default '{}',
  serving_keys     text[] not null,
  passed_features  jsonb not null default '[]',   -- [{name, type}]: known only at request time
  transformations  jsonb not null default '{}',   -- {column: {"fn": ..., ...}}
  outputs          jsonb not null,    -- [{name, source: feature|passed, type, transform}] in the view's order
  description      text not null default '',
  tags             text[] not null default '{}',
  options          jsonb not null default '{}',   -- {"log_rate": 0.01}
  created_at       timestamptz not null default now(),
  created_by       text not null default session_user,
  client_serial    numeric,
  app_id           text,
  unique (project, name, version)
);

create table fstore.feature_view_fits (
  feature_view_id      bigint not null references fstore.feature_views (id) on delete cascade,
  training_dataset_id  bigint not null references fstore.training_datasets (id) on delete cascade,
  params               jsonb not null,   -- {column: {mean, std} | {min, max} | {median, iqr} | {vocabulary}}
  fitted_on            text,             -- the split fitted on (NULL: the whole dataset, which has no split)
  fitted_rows          bigint not null,
  fitted_at            timestamptz not null default now(),
  fitted_by            text not null default session_user,
  primary key (feature_view_id, training_dataset_id)
);

create table fstore.served_vectors (
  id               bigserial primary key,
  feature_view_id  bigint not null references fstore.feature_views (id) on delete cascade,
  training_dataset_id bigint,
  keys             jsonb not null,
  passed           jsonb not null default '{}',
  vector           float8[] not null,
  found            boolean not null,
  served_at        timestamptz not null default clock_timestamp(),
  session_role     text not null default session_user,
  client_serial    numeric,
  app_id           text
);
create index on fstore.served_vectors (feature_view_id, served_at);

alter table fstore.feature_views enable row level security;
alter table fstore.feature_view_fits enable row level security;
alter table fstore.served_vectors enable row level security;
grant select on fstore.feature_views, fstore.feature_view_fits, fstore.served_vectors to public;
grant insert on fstore.feature_view_fits to fstore_builder;  -- fstore.fit_feature_view records what it fitted

reset role;
