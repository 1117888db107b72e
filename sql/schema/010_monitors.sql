-- Versioned schema migration: monitors (scheduled drift checks that run inside the server
-- with pg_cron, as the identity that created them), their runs and their alerts. Row-level
-- security is enabled here; the policies live in sql/functions/88_monitors.sql. Writes go
-- only through fstore's functions (create_monitor, drop_monitor, record_monitor_run).
--
-- Schema fstore_cron belongs to the superuser that applies migrations, not to fstore_control:
-- it holds the one procedure pg_cron runs as the superuser (fstore_cron.sync_monitors), so
-- that no role but the superuser can replace code the superuser runs. That procedure calls
-- no function of fstore_control's either: it reads fstore.monitors as plain values.

set role fstore_control;

create table fstore.monitors (
  id                bigserial primary key,
  project           text not null references fstore.projects (name) on delete cascade,
  name              text not null,
  feature_group_id  bigint not null references fstore.feature_groups (id) on delete cascade,
  baseline          jsonb not null,   -- a drift window, or {"last": interval, "before": interval} (relative to the run)
  current           jsonb not null,
  every             text not null,    -- as given: 1m, 5m, 1h, 1d or a cron expression
  schedule          text not null,    -- the cron expression pg_cron runs it on
  features          text[],           -- NULL: every feature
  slice_by          text,
  bins              integer not null default 10,
  threshold         float8 not null default 0.2,
  thresholds        jsonb,            -- per-feature thresholds of any measure, over the group's stored ones
  sample_rows       bigint,           -- measure windows larger than that on samples (estimates)
  created_by        text not null default session_user,   -- the job logs in as this role
  creator_since     timestamptz not null,                  -- the creator's membership (fstore.members.added_at)
  created_at        timestamptz not null default clock_timestamp(),
  client_serial     numeric,
  active            boolean not null default true,
  stopped_at        timestamptz,
  stopped_reason    text,
  unique (project, name)
);

create table fstore.monitor_runs (
  id                bigserial primary key,
  monitor_id        bigint not null references fstore.monitors (id) on delete cascade,
  started_at        timestamptz not null,
  finished_at       timestamptz not null default clock_timestamp(),
  status            text not null check (status in ('ok', 'drifted', 'error', 'stopped')),
  baseline          jsonb,            -- the windows as measured (relative ones resolved)
  current           jsonb,
  baseline_rows     bigint,
  current_rows      bigint,
  drifted_features  text[] not null default '{}',
  flagged_slices    text[] not null default '{}',
  results           jsonb not null default '[]',   -- fstore.feature_drift's rows
  slices            jsonb,                         -- fstore.slice_statistics' rows (slice_by)
  error             text
);

create index on fstore.monitor_runs (monitor_id, id);

create table fstore.monitor_alerts (
  id                bigserial primary key,
  monitor_id        bigint not null references fstore.monitors (id) on delete cascade,
  run_id            bigint not null references fstore.monitor_runs (id) on delete cascade,
  raised_at         timestamptz not null default clock_timestamp(),
  drifted_features  text[] not null default '{}',
  flagged_slices    text[] not null default '{}'
);

create index on fstore.monitor_alerts (monitor_id, id);

alter table fstore.monitors enable row level security;

alter table fstore.monitor_runs enable row level security;

alter table fstore.monitor_alerts enable row level security;

grant select on fstore.monitors, fstore.monitor_runs, fstore.monitor_alerts to public;

reset role;

create schema fstore_cron;

revoke all on schema fstore_cron from public;
