-- Versioned schema migration (applied once, in order, guarded by the ledger; see sql/README.md):
-- the catalog schema `fstore`, the roles that run the control plane and the platform's
-- catalog tables (projects, members, shares, certificates, audit log, row policies).
--
-- Roles (all NOLOGIN but the admin; nobody can SET ROLE to them):
--   fstore_control  owns the catalog and the control-plane functions (SECURITY DEFINER).
--                   No CREATEROLE (on PostgreSQL 15 it can grant itself any role,
--                   pg_execute_server_program included). It is a member of every
--                   project's owner role, so it can create and secure the project's
--                   objects; it never evaluates anything a tenant wrote.
--   fstore_roles    CREATEROLE, and nothing else: owns the few small functions that
--                   create, grant and drop project roles (sql/functions/11_roles.sql). Only
--                   fstore_control may call them; they touch no tenant object.
--   fstore_builder  reads the feature tables of every project (SELECT granted by each
--                   project's default privileges) and owns the point-in-time builder
--                   of stored training datasets, so that a stored version is computed by
--                   fstore itself; the rows it reads are the caller's (row policies
--                   identify the reader by session_user).
--   fstore_auditor  pgaudit's object-audit role: a SELECT grant to it makes reads audited.
--   fstore_admin    the platform admin (LOGIN, by certificate): creates and deletes
--                   projects, blocks users; no access to project data.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'fstore_control') then
    create role fstore_control nologin nocreaterole;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_roles') then
    create role fstore_roles nologin createrole;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_builder') then
    create role fstore_builder nologin nocreaterole;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_auditor') then
    create role fstore_auditor nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fstore_admin') then
    create role fstore_admin login nosuperuser nocreaterole nocreatedb noreplication;
  end if;
end $$;

grant pg_signal_backend to fstore_control;

do $$
begin
  execute format('grant connect, temporary, create on database %I to fstore_control with grant option',
                 current_database());
  execute format('grant connect, temporary on database %I to fstore_builder', current_database());
  execute format('grant connect on database %I to fstore_admin', current_database());
end $$;

-- functions fstore_control creates are executable only by those they are granted to
alter default privileges for role fstore_control revoke execute on functions from public;

create schema fstore authorization fstore_control;

revoke all on schema fstore from public;

grant usage on schema fstore to public;

set role fstore_control;

create table fstore.projects (
  name        text primary key,
  owner_user  text not null,
  created_at  timestamptz not null default clock_timestamp(),
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

-- The database's copy of the CA registry. A membership or project that ends marks its
-- certificates revoked here (revoked_at); the operator's CRL keeper signs them into
-- the CRL and sets crl_published_at. A role name is not given out again while any of
-- its unexpired certificates is not in the published CRL.
create table fstore.certificates (
  serial            numeric primary key,
  role_name         text not null,
  kind              text not null check (kind in ('user', 'application', 'service')),
  app_id            text,
  not_before        timestamptz not null,
  not_after         timestamptz not null,
  revoked_at        timestamptz,
  crl_published_at  timestamptz
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

-- Declarative row policies (from policies/), applied by fstore to every table they cover.
--   kind 'row'     a predicate over the table's columns (predicate_tree: the structured
--                  form the database renders, see fstore.predicate_sql)
--   kind 'entity'  the rows of table_name the predicate hides are hidden entities: every
--                  other table of the project with column entity_key shows a bound reader
--                  only the keys that reader can see in table_name
create table fstore.row_policies (
  project         text not null references fstore.projects (name) on delete cascade,
  name            text not null,
  table_name      text not null,
  roles           text[] not null,
  command         text not null default 'select',
  predicate       text not null,
  predicate_tree  jsonb not null,
  entity_key      text,
  applied_at      timestamptz not null default now(),
  applied_by      text not null default session_user,
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

set role fstore_control;

-- The catalog is under RLS: a project-user sees its project and what is shared with it.
alter table fstore.projects enable row level security;

alter table fstore.members enable row level security;

alter table fstore.shares enable row level security;

alter table fstore.blocked_users enable row level security;

alter table fstore.certificates enable row level security;

alter table fstore.audit_log enable row level security;

alter table fstore.row_policies enable row level security;

grant select on fstore.projects, fstore.members, fstore.shares, fstore.blocked_users,
  fstore.certificates, fstore.audit_log, fstore.row_policies to public;

reset role;
