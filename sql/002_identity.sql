-- Who is calling: the certificate identity (session_user), its project, its
-- application (from the certificate serial), and what it may see.

set role fstore_control;

create function fstore.check_project_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]{0,29}[a-z0-9]$' or position('__' in p_name) > 0 then
    raise exception 'invalid project name %: use 2-31 characters a-z, 0-9 and _, starting with a letter, not ending with _, without "__"',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
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

create function fstore.project_role_kind(p_role text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_role in ('data-owner', 'data_owner') then return 'data_owner'; end if;
  if p_role in ('data-scientist', 'data_scientist') then return 'data_scientist'; end if;
  raise exception 'invalid project role %: use data-owner or data-scientist',
    coalesce(quote_literal(left(p_role, 80)), 'NULL') using errcode = '22023';
end $$;

-- The certificate serial of this session, as the server verified it.
create function fstore.session_serial() returns numeric
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select client_serial from pg_stat_ssl where pid = pg_backend_pid()
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

-- Terminate every session logged in as one of these roles (pg_signal_backend).
create function fstore.end_sessions(p_roles text[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count integer := 0;
  v_pid integer;
begin
  for v_pid in select pid from pg_stat_activity
                where usename = any(p_roles) and pid <> pg_backend_pid() loop
    perform pg_terminate_backend(v_pid);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;

revoke execute on all functions in schema fstore from public;
grant execute on function
  fstore.check_project_name(text), fstore.check_user_name(text), fstore.project_user_role(text, text),
  fstore.project_role_kind(text), fstore.session_serial(), fstore.session_app_id(),
  fstore.session_project(), fstore.session_is_admin(), fstore.visible_projects()
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
create policy own_project on fstore.audit_log for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));
create policy own_project on fstore.row_policies for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

grant select on fstore.projects, fstore.members, fstore.shares, fstore.blocked_users,
  fstore.certificates, fstore.audit_log, fstore.row_policies to public;

reset role;
