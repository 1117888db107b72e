-- Role management. CREATEROLE is needed to create, grant and drop roles; fstore_roles
-- holds it and nothing else, and owns only these functions (created by the superuser,
-- then given to fstore_roles). Each takes names of project roles only (checked by their
-- shape and attributes here, with no catalog lookup) and touches no tenant object.
-- EXECUTE: fstore_control only.

create or replace function fstore.check_managed_role(p_role text, p_may_exist boolean) returns text
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
comment on function fstore.check_managed_role(text,boolean) is
  'Refuse any role but a project role of the usual shape with no privilege fstore never gives (no superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, no membership outside its project).';

create or replace function fstore.roles_create(p_role text, p_login boolean, p_inherit boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, false);
  -- no superuser, createdb, createrole, replication or bypassrls: the defaults, not spelt out,
  -- because Citus replays this statement on its workers as ALTER ROLE when the role exists
  -- there, and PostgreSQL 15 lets only a superuser name the superuser, replication or
  -- bypassrls attributes in ALTER ROLE
  execute format('create role %I %s %s',
                 p_role, case when p_login then 'login' else 'nologin' end,
                 case when p_inherit then 'inherit' else 'noinherit' end);
end $$;
comment on function fstore.roles_create(text,boolean,boolean) is
  'Create a project role (login or not, inherit or not) with no other privileges. fstore_control only.';

create or replace function fstore.roles_grant(p_group text, p_member text, p_grant boolean) returns void
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
comment on function fstore.roles_grant(text,text,boolean) is
  'Membership only within one project, or of fstore_control in a project''s role.';

create or replace function fstore.roles_set_login(p_role text, p_login boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, true);
  execute format('alter role %I %s', p_role, case when p_login then 'login' else 'nologin' end);
end $$;
comment on function fstore.roles_set_login(text,boolean) is
  'Let a project role log in, or stop it. fstore_control only.';

create or replace function fstore.roles_drop(p_role text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform fstore.check_managed_role(p_role, true);
  execute format('drop role if exists %I', p_role);
end $$;
comment on function fstore.roles_drop(text) is
  'Drop a project role. fstore_control only.';

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
