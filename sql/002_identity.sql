-- Who is calling: the certificate identity (session_user), its project, its
-- application (from the certificate serial), and what it may see. Then the role
-- management functions (owned by fstore_roles, callable only by fstore_control) and
-- the catalog's row-level security.

set role fstore_control;

-- Names that are, or look like, roles and schemas of the platform itself.
create function fstore.check_project_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]{0,29}[a-z0-9]$' or position('__' in p_name) > 0 then
    raise exception 'invalid project name %: use 2-31 characters a-z, 0-9 and _, starting with a letter, not ending with _, without "__"',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  if p_name in ('postgres', 'public', 'information_schema') or p_name ~ '^(pg_|fstore)' then
    raise exception 'invalid project name %: it is reserved (postgres, public, information_schema, pg_*, fstore*)',
      quote_literal(p_name) using errcode = '22023';
  end if;
  return p_name;
end $$;

create function fstore.check_user_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]*$' or position('__' in p_name) > 0
     or p_name in ('owner', 'data_owner', 'data_scientist') or octet_length(p_name) > 60 then
    raise exception 'invalid user name %: use a-z, 0-9 and _, starting with a letter, without "__", not owner, data_owner or data_scientist',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  return p_name;
end $$;

-- project__user, checked against PostgreSQL's 63-byte identifier limit
create function fstore.project_user_role(p_project text, p_user text) returns text
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_role text := fstore.check_project_name(p_project) || '__' || fstore.check_user_name(p_user);
begin
  if octet_length(v_role) > 63 then
    raise exception 'role name % is longer than 63 bytes', quote_literal(v_role) using errcode = '22023';
  end if;
  return v_role;
end $$;

-- The role that owns a project's schema and every object in it.
create function fstore.owner_role(p_project text) returns text
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select fstore.check_project_name(p_project) || '__owner'
$$;

create function fstore.project_role_kind(p_role text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_role in ('data-owner', 'data_owner') then return 'data_owner'; end if;
  if p_role in ('data-scientist', 'data_scientist') then return 'data_scientist'; end if;
  raise exception 'invalid project role %: use data-owner or data-scientist',
    coalesce(quote_literal(left(p_role, 80)), 'NULL') using errcode = '22023';
end $$;

-- The certificate serial of this session, as the server verified it (sslinfo reads the
-- session's own connection whoever is current_user: pg_stat_ssl would show a definer
-- function the caller's row only with pg_read_all_stats).
create function fstore.session_serial() returns numeric
language sql stable set search_path = pg_catalog, pg_temp as $$
  select public.ssl_client_serial()
$$;

-- The application id recorded with this session's certificate (NULL for user certificates).
create function fstore.session_app_id() returns text
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select c.app_id from fstore.certificates c where c.serial = fstore.session_serial()
$$;

-- The project this session belongs to (NULL for the admin or anyone else).
create function fstore.session_project() returns text
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select m.project from fstore.members m where m.role_name = session_user::text
$$;

create function fstore.session_is_admin() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select session_user::text = 'fstore_admin'
$$;

-- Projects whose metadata this session may read: its own and those shared with it.
create function fstore.visible_projects() returns text[]
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce(array_agg(p), '{}') from (
    select m.project as p from fstore.members m where m.role_name = session_user::text
    union
    select s.project from fstore.shares s
      join fstore.members m on m.project = s.with_project
     where m.role_name = session_user::text
  ) visible
$$;

-- True when this session's person may read project p's data: p is their project or
-- shared with it. Row policies of data copied out of p (training datasets built from a
-- shared project) ask this, so the copies follow the share.
create function fstore.session_sees_project(p_project text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select p_project = any(fstore.visible_projects())
$$;

-- Append one audit record; who and which certificate come from the session, never from arguments.
create function fstore.audit(p_project text, p_action text, p_details jsonb default '{}')
returns void language sql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
  insert into fstore.audit_log (session_role, project, action, details, client_serial, app_id)
  values (session_user::text, p_project, p_action, coalesce(p_details, '{}'),
          fstore.session_serial(), fstore.session_app_id())
$$;

create function fstore.refuse_audit_change() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  raise exception 'the audit log is append-only' using errcode = '42501';
end $$;
create trigger audit_log_append_only before update or delete on fstore.audit_log
  for each row execute function fstore.refuse_audit_change();
create trigger audit_log_no_truncate before truncate on fstore.audit_log
  for each statement execute function fstore.refuse_audit_change();

create function fstore.require_admin(p_what text) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  if session_user::text <> 'fstore_admin' then
    raise exception 'permission denied: only the platform admin may %', p_what using errcode = '42501';
  end if;
end $$;

create function fstore.require_data_owner(p_project text, p_what text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from fstore.members m
                  where m.project = p_project and m.role_name = session_user::text
                    and m.project_role = 'data_owner') then
    raise exception 'permission denied: only a Data Owner of project % may %', p_project, p_what
      using errcode = '42501';
  end if;
end $$;

create function fstore.require_project(p_project text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform fstore.check_project_name(p_project);
  if not exists (select 1 from fstore.projects where name = p_project) then
    raise exception 'project % does not exist', p_project using errcode = 'P0002';
  end if;
end $$;

-- Serialise the control operations of one project (membership, shares, policies,
-- training-dataset versions) until the transaction ends. A row lock on the catalog:
-- unlike an advisory lock, nobody without UPDATE on fstore.projects can take it.
create function fstore.lock_project(p_project text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform 1 from fstore.projects where name = p_project for no key update;
  if not found then
    raise exception 'project % does not exist', p_project using errcode = 'P0002';
  end if;
end $$;

-- Terminate every session logged in as one of these roles (pg_signal_backend).
create function fstore.end_sessions(p_roles text[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count integer := 0;
  v_pid integer;
begin
  for v_pid in select pid from pg_catalog.pg_stat_activity
                where usename = any(p_roles) and pid <> pg_catalog.pg_backend_pid() loop
    perform pg_catalog.pg_terminate_backend(v_pid);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;

-- A membership or project has ended: its certificates are revoked for good. The CRL
-- keeper (the operator's process holding the CA key) is told at once and signs them
-- into the CRL; until it has, the role name cannot be given out again.
create function fstore.retire_certificates(p_roles text[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_count integer;
  v_role text;
begin
  update fstore.certificates set revoked_at = clock_timestamp()
   where role_name = any(p_roles) and revoked_at is null and kind <> 'service';
  get diagnostics v_count = row_count;
  foreach v_role in array p_roles loop
    perform pg_catalog.pg_notify('fstore_certificates', v_role);
  end loop;
  return v_count;
end $$;

-- The operator's CA registry into the catalog (server start, issue, revocation, the CRL
-- keeper): [{serial, role, kind, app_id, not_before, not_after, revoked_at,
-- crl_published_at}]. A revocation, once recorded, stays. The superuser's only.
create function fstore.record_certificates(p_records jsonb) returns integer
language sql volatile set search_path = pg_catalog, fstore, pg_temp as $$
  with upserted as (
    insert into fstore.certificates as c (serial, role_name, kind, app_id, not_before, not_after, revoked_at,
                                          crl_published_at)
    select (r->>'serial')::numeric, r->>'role', r->>'kind', r->>'app_id', (r->>'not_before')::timestamptz,
           (r->>'not_after')::timestamptz, (r->>'revoked_at')::timestamptz, (r->>'crl_published_at')::timestamptz
      from jsonb_array_elements(p_records) r
    on conflict (serial) do update
      set revoked_at = coalesce(c.revoked_at, excluded.revoked_at),
          crl_published_at = coalesce(excluded.crl_published_at, c.crl_published_at)
    returning 1)
  select count(*)::integer from upserted
$$;

-- A role name may be given (again) to a person only when none of its earlier
-- certificates can still log in: each is expired, or revoked and in the published CRL.
create function fstore.require_retired_certificates(p_role text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_pending integer;
begin
  select count(*) into v_pending from fstore.certificates
   where role_name = p_role and kind <> 'service' and not_after > now()
     and (revoked_at is null or crl_published_at is null);
  if v_pending > 0 then
    perform pg_catalog.pg_notify('fstore_certificates', p_role);
    raise exception 'earlier certificates of role % are not yet in the server''s CRL (% pending)', p_role, v_pending
      using errcode = '55000',
            hint = 'the CRL keeper publishes revocations within seconds; otherwise run `fstore cert crl`';
  end if;
end $$;

reset role;

-- Role management. CREATEROLE is needed to create, grant and drop roles; fstore_roles
-- holds it and nothing else, and owns only these functions. Each takes names of
-- project roles only (checked by their shape and attributes here, with no catalog
-- lookup) and touches no tenant object. EXECUTE: fstore_control only.
create function fstore.check_managed_role(p_role text, p_may_exist boolean) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_role pg_catalog.pg_roles;
begin
  if p_role is null or p_role !~ '^[a-z][a-z0-9_]{0,29}[a-z0-9]__[a-z][a-z0-9_]*$' or octet_length(p_role) > 63
     or split_part(p_role, '__', 1) ~ '^(pg_|fstore)' then
    raise exception '% is not a project role', coalesce(quote_literal(p_role), 'NULL') using errcode = '42501';
  end if;
  select * into v_role from pg_catalog.pg_roles where rolname = p_role;
  if found and not p_may_exist then
    raise exception 'a role named % already exists', p_role using errcode = '42710';
  end if;
  if found and (v_role.rolsuper or v_role.rolcreaterole or v_role.rolcreatedb or v_role.rolreplication
                or v_role.rolbypassrls
                or exists (select 1 from pg_catalog.pg_auth_members m join pg_catalog.pg_roles g on g.oid = m.roleid
                            where m.member = v_role.oid
                              and g.rolname not like replace(split_part(p_role, '__', 1), '_', '\_') || '\_\_%')) then
    raise exception 'role % has privileges fstore never gives: refusing to manage it', p_role using errcode = '42501';
  end if;
  return p_role;
end $$;

create function fstore.roles_create(p_role text, p_login boolean, p_inherit boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, false);
  execute format('create role %I %s %s nosuperuser nocreatedb nocreaterole noreplication nobypassrls',
                 p_role, case when p_login then 'login' else 'nologin' end,
                 case when p_inherit then 'inherit' else 'noinherit' end);
end $$;

-- Membership only within one project, or of fstore_control in a project's role.
create function fstore.roles_grant(p_group text, p_member text, p_grant boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_group, true);
  if p_member <> 'fstore_control' then
    perform fstore.check_managed_role(p_member, true);
    if split_part(p_member, '__', 1) <> split_part(p_group, '__', 1) then
      raise exception 'roles % and % belong to different projects', p_group, p_member using errcode = '42501';
    end if;
  end if;
  if p_grant then
    execute format('grant %I to %I', p_group, p_member);
  else
    execute format('revoke %I from %I', p_group, p_member);
  end if;
end $$;

create function fstore.roles_set_login(p_role text, p_login boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, true);
  execute format('alter role %I %s', p_role, case when p_login then 'login' else 'nologin' end);
end $$;

create function fstore.roles_drop(p_role text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, true);
  execute format('drop role if exists %I', p_role);
end $$;

alter function fstore.check_managed_role(text, boolean) owner to fstore_roles;
alter function fstore.roles_create(text, boolean, boolean) owner to fstore_roles;
alter function fstore.roles_grant(text, text, boolean) owner to fstore_roles;
alter function fstore.roles_set_login(text, boolean) owner to fstore_roles;
alter function fstore.roles_drop(text) owner to fstore_roles;
revoke execute on function fstore.check_managed_role(text, boolean), fstore.roles_create(text, boolean, boolean),
  fstore.roles_grant(text, text, boolean), fstore.roles_set_login(text, boolean), fstore.roles_drop(text)
  from public;
grant execute on function fstore.check_managed_role(text, boolean), fstore.roles_create(text, boolean, boolean),
  fstore.roles_grant(text, text, boolean), fstore.roles_set_login(text, boolean), fstore.roles_drop(text)
  to fstore_control;

set role fstore_control;

revoke execute on all functions in schema fstore from public;
grant execute on function
  fstore.check_project_name(text), fstore.check_user_name(text), fstore.project_user_role(text, text),
  fstore.owner_role(text), fstore.project_role_kind(text), fstore.session_serial(), fstore.session_app_id(),
  fstore.session_project(), fstore.session_is_admin(), fstore.visible_projects(), fstore.session_sees_project(text)
  to public;

-- The catalog is under RLS: a project-user sees its project and what is shared with it.
alter table fstore.projects enable row level security;
alter table fstore.members enable row level security;
alter table fstore.shares enable row level security;
alter table fstore.blocked_users enable row level security;
alter table fstore.certificates enable row level security;
alter table fstore.audit_log enable row level security;
alter table fstore.row_policies enable row level security;

create policy visible on fstore.projects for select
  using ((select fstore.session_is_admin()) or name in (select unnest(fstore.visible_projects())));
create policy own_project on fstore.members for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));
create policy visible on fstore.shares for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project())
         or with_project = (select fstore.session_project()));
create policy admin_only on fstore.blocked_users for select
  using ((select fstore.session_is_admin()));
create policy own_certificates on fstore.certificates for select
  using ((select fstore.session_is_admin()) or role_name = session_user::text);
-- a project's audit records, from its creation on: a new project under the name of a
-- deleted one does not read the deleted one's history (the admin reads all of it)
create policy own_project on fstore.audit_log for select
  using ((select fstore.session_is_admin())
         or (project = (select fstore.session_project())
             and at >= (select p.created_at from fstore.projects p where p.name = (select fstore.session_project()))));
create policy own_project on fstore.row_policies for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

grant select on fstore.projects, fstore.members, fstore.shares, fstore.blocked_users,
  fstore.certificates, fstore.audit_log, fstore.row_policies to public;

reset role;
