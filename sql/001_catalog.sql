-- The catalog schema `fstore` and the roles that run the control plane.
-- Applied by the superuser (fstore migrate / fstore server start), once.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'fstore_control') then
    -- Owns the catalog and every control function. NOLOGIN: nobody can become it.
    create role fstore_control nologin createrole;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_auditor') then
    -- pgaudit's object-audit role: a SELECT grant to it makes reads of a table audited.
    create role fstore_auditor nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_admin') then
    create role fstore_admin login nosuperuser nocreaterole nocreatedb noreplication;
  end if;
end $$;

grant pg_signal_backend, pg_read_all_stats to fstore_control;
do $$
begin
  execute format('grant connect, temporary, create on database %I to fstore_control with grant option',
                 current_database());
end $$;

create schema fstore authorization fstore_control;
revoke all on schema fstore from public;
grant usage on schema fstore to public;

set role fstore_control;

create table fstore.projects (
  name        text primary key,
  owner_user  text not null,
  created_at  timestamptz not null default now(),
  created_by  text not null default session_user
);

create table fstore.members (
  project      text not null references fstore.projects (name) on delete cascade,
  user_name    text not null,
  role_name    text not null unique,
  project_role text not null check (project_role in ('data_owner', 'data_scientist')),
  added_at     timestamptz not null default now(),
  added_by     text not null default session_user,
  primary key (project, user_name)
);

create table fstore.shares (
  project       text not null references fstore.projects (name) on delete cascade,
  with_project  text not null references fstore.projects (name) on delete cascade,
  read_only     boolean not null default true,
  shared_at     timestamptz not null default now(),
  shared_by     text not null default session_user,
  primary key (project, with_project),
  check (project <> with_project)
);

create table fstore.blocked_users (
  user_name   text primary key,
  blocked_at  timestamptz not null default now(),
  blocked_by  text not null default session_user
);

create table fstore.certificates (
  serial      numeric primary key,
  role_name   text not null,
  kind        text not null check (kind in ('user', 'application', 'service')),
  app_id      text,
  not_before  timestamptz not null,
  not_after   timestamptz not null,
  revoked_at  timestamptz
);
create index on fstore.certificates (role_name);

create table fstore.audit_log (
  id             bigserial primary key,
  at             timestamptz not null default clock_timestamp(),
  session_role   text not null default session_user,
  project        text,
  action         text not null,
  details        jsonb not null default '{}',
  client_serial  numeric,
  app_id         text
);
create index on fstore.audit_log (project, at);

-- Declarative row policies (from policies/), re-applied whenever a table is created.
create table fstore.row_policies (
  project     text not null references fstore.projects (name) on delete cascade,
  name        text not null,
  table_name  text not null,
  roles       text[] not null,
  command     text not null default 'select',
  predicate   text not null,
  applied_at  timestamptz not null default now(),
  applied_by  text not null default session_user,
  primary key (project, name)
);

reset role;

-- Security fix (attack suite, tests/security): large objects live outside every schema
-- and their owner may GRANT them to anyone, so a member could park project data in one
-- and hand it to PUBLIC or another project, beyond sharing, unshare and removal. fstore
-- never uses them: only the superuser may create them. (lo_import/lo_export from server
-- files are superuser-only already.)
revoke execute on function pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid),
  pg_catalog.lo_from_bytea(oid, bytea) from public;
