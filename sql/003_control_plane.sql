-- Control-plane functions. SECURITY DEFINER, owned by fstore_control, search_path
-- pinned, EXECUTE revoked from PUBLIC: the admin may create/delete projects and
-- block users; a project's Data Owners manage its members and shares.
-- Every identifier goes through format('%I'); every name is validated first.

set role fstore_control;

-- Temporarily take (or drop) membership in a project role: PostgreSQL 15 needs it
-- to create a schema for, alter default privileges of, or drop what a role owns.
create function fstore.borrow_role(p_role text, p_take boolean) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  if p_take then
    execute format('grant %I to fstore_control', p_role);
  else
    execute format('revoke %I from fstore_control', p_role);
  end if;
end $$;

-- Privileges a project's groups hold on its schema (also for future tables).
create function fstore.grant_project_reads(p_project text, p_reader_project text, p_write boolean)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := p_project || '__owner';
  v_do text := p_reader_project || '__data_owner';
  v_ds text := p_reader_project || '__data_scientist';
begin
  execute format('grant usage on schema %I to %I, %I', p_project, v_do, v_ds);
  execute format('grant select on all tables in schema %I to %I, %I', p_project, v_do, v_ds);
  execute format('alter default privileges for role %I in schema %I grant select on tables to %I, %I',
                 v_owner, p_project, v_do, v_ds);
  if p_write then
    execute format('grant insert, update, delete on all tables in schema %I to %I', p_project, v_do);
    execute format('grant usage, select on all sequences in schema %I to %I', p_project, v_do);
    execute format('alter default privileges for role %I in schema %I grant insert, update, delete on tables to %I',
                   v_owner, p_project, v_do);
    execute format('alter default privileges for role %I in schema %I grant usage, select on sequences to %I',
                   v_owner, p_project, v_do);
  end if;
end $$;

create function fstore.revoke_project_reads(p_project text, p_reader_project text)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := p_project || '__owner';
  v_do text := p_reader_project || '__data_owner';
  v_ds text := p_reader_project || '__data_scientist';
begin
  execute format('revoke all on all tables in schema %I from %I, %I', p_project, v_do, v_ds);
  execute format('revoke all on all sequences in schema %I from %I, %I', p_project, v_do, v_ds);
  execute format('revoke all on schema %I from %I, %I', p_project, v_do, v_ds);
  execute format('alter default privileges for role %I in schema %I revoke all on tables from %I, %I',
                 v_owner, p_project, v_do, v_ds);
  execute format('alter default privileges for role %I in schema %I revoke all on sequences from %I, %I',
                 v_owner, p_project, v_do, v_ds);
end $$;

create function fstore.create_member_role(p_project text, p_user text, p_kind text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_role text := fstore.project_user_role(p_project, p_user);
begin
  if exists (select 1 from fstore.blocked_users where user_name = p_user) then
    raise exception 'user % is blocked by the platform admin', p_user using errcode = '42501';
  end if;
  if exists (select 1 from fstore.members where project = p_project and user_name = p_user) then
    raise exception 'user % is already a member of project %', p_user, p_project using errcode = '42710';
  end if;
  if exists (select 1 from pg_roles where rolname = v_role) then
    raise exception 'a role named % already exists', v_role using errcode = '42710';
  end if;
  execute format('create role %I login inherit nosuperuser nocreatedb nocreaterole noreplication nobypassrls', v_role);
  execute format('grant %I to %I', p_project || '__' || p_kind, v_role);
  insert into fstore.members (project, user_name, role_name, project_role)
  values (p_project, p_user, v_role, p_kind);
  return v_role;
end $$;

create function fstore.create_project(p_name text, p_owner_user text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text;
  v_do text;
  v_ds text;
  v_role text;
  v_fn text;
begin
  perform fstore.require_admin('create a project');
  perform fstore.check_project_name(p_name);
  perform fstore.check_user_name(p_owner_user);
  perform fstore.project_user_role(p_name, p_owner_user);
  v_owner := p_name || '__owner';
  v_do := p_name || '__data_owner';
  v_ds := p_name || '__data_scientist';
  if exists (select 1 from fstore.projects where name = p_name) then
    raise exception 'project % already exists', p_name using errcode = '42710';
  end if;
  if exists (select 1 from pg_namespace where nspname = p_name) then
    raise exception 'a schema named % already exists', p_name using errcode = '42P06';
  end if;
  if exists (select 1 from pg_roles where rolname like replace(p_name, '_', '\_') || '\_\_%') then
    raise exception 'roles named %__* already exist', p_name using errcode = '42710';
  end if;

  execute format('create role %I nologin', v_owner);
  execute format('create role %I nologin noinherit', v_do);  -- members may SET ROLE owner, not inherit it
  execute format('create role %I nologin', v_ds);
  execute format('grant %I to %I', v_owner, v_do);
  execute format('grant connect, temporary on database %I to %I, %I', current_database(), v_do, v_ds);

  perform fstore.borrow_role(v_owner, true);
  execute format('create schema %I authorization %I', p_name, v_owner);
  execute format('revoke all on schema %I from public', p_name);
  execute format('grant usage on schema %I to %I, %I, fstore_auditor', p_name, v_do, v_ds);
  execute format('alter default privileges for role %I in schema %I grant select, insert, update, delete on tables to %I',
                 v_owner, p_name, v_do);
  execute format('alter default privileges for role %I in schema %I grant usage, select on sequences to %I',
                 v_owner, p_name, v_do);
  execute format('alter default privileges for role %I in schema %I grant select on tables to %I, fstore_auditor',
                 v_owner, p_name, v_ds);
  execute format('alter default privileges for role %I revoke execute on functions from public', v_owner);
  execute format('alter default privileges for role %I in schema %I grant execute on functions to %I, %I',
                 v_owner, p_name, v_do, v_ds);
  perform fstore.borrow_role(v_owner, false);

  foreach v_fn in array array[
    'fstore.add_member(text, text, text)', 'fstore.set_member_role(text, text, text)',
    'fstore.remove_member(text, text)', 'fstore.share_project(text, text, boolean)',
    'fstore.unshare_project(text, text)', 'fstore.record_row_policies(text, jsonb)'] loop
    execute format('grant execute on function %s to %I', v_fn, v_do);
  end loop;

  insert into fstore.projects (name, owner_user) values (p_name, p_owner_user);
  v_role := fstore.create_member_role(p_name, p_owner_user, 'data_owner');
  perform fstore.audit(p_name, 'create_project', jsonb_build_object('owner', v_role));
  return v_role;
end $$;

create function fstore.delete_project(p_name text) returns text[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_members text[];
  v_groups text[];
  v_role text;
begin
  perform fstore.require_admin('delete a project');
  perform fstore.require_project(p_name);
  select coalesce(array_agg(role_name order by role_name), '{}') into v_members
    from fstore.members where project = p_name;
  v_groups := array[p_name || '__owner', p_name || '__data_owner', p_name || '__data_scientist'];
  perform fstore.end_sessions(v_members);
  foreach v_role in array v_groups || v_members loop
    perform fstore.borrow_role(v_role, true);
  end loop;
  execute format('drop schema %I cascade', p_name);
  foreach v_role in array v_members || v_groups loop
    execute format('drop owned by %I cascade', v_role);
  end loop;
  foreach v_role in array v_members || array[p_name || '__data_scientist', p_name || '__data_owner', p_name || '__owner'] loop
    execute format('drop role %I', v_role);
  end loop;
  delete from fstore.projects where name = p_name;
  perform fstore.audit(p_name, 'delete_project', jsonb_build_object('dropped_roles', v_members));
  return v_members;
end $$;

create function fstore.add_member(p_project text, p_user text, p_role text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_kind text := fstore.project_role_kind(p_role);
  v_role text;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'add members');
  v_role := fstore.create_member_role(p_project, p_user, v_kind);
  perform fstore.audit(p_project, 'add_member', jsonb_build_object('role', v_role, 'project_role', v_kind));
  return v_role;
end $$;

create function fstore.require_another_data_owner(p_project text, p_user text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from fstore.members where project = p_project
                  and project_role = 'data_owner' and user_name <> p_user) then
    raise exception 'user % is the last Data Owner of project %: make someone else a Data Owner first',
      p_user, p_project using errcode = '55000';
  end if;
end $$;

create function fstore.require_member(p_project text, p_user text) returns fstore.members
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_member fstore.members;
begin
  perform fstore.check_user_name(p_user);
  select * into v_member from fstore.members where project = p_project and user_name = p_user;
  if not found then
    raise exception 'user % is not a member of project %', p_user, p_project using errcode = 'P0002';
  end if;
  return v_member;
end $$;

create function fstore.set_member_role(p_project text, p_user text, p_role text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_kind text := fstore.project_role_kind(p_role);
  v_member fstore.members;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'change member roles');
  v_member := fstore.require_member(p_project, p_user);
  if v_member.project_role = v_kind then
    return v_member.role_name;
  end if;
  if v_member.project_role = 'data_owner' then
    perform fstore.require_another_data_owner(p_project, p_user);
  end if;
  execute format('revoke %I from %I', p_project || '__' || v_member.project_role, v_member.role_name);
  execute format('grant %I to %I', p_project || '__' || v_kind, v_member.role_name);
  update fstore.members set project_role = v_kind where project = p_project and user_name = p_user;
  perform fstore.end_sessions(array[v_member.role_name]);
  perform fstore.audit(p_project, 'set_member_role',
                       jsonb_build_object('role', v_member.role_name, 'from', v_member.project_role, 'to', v_kind));
  return v_member.role_name;
end $$;

create function fstore.remove_member(p_project text, p_user text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_member fstore.members;
  v_owner text := p_project || '__owner';
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'remove members');
  v_member := fstore.require_member(p_project, p_user);
  if v_member.project_role = 'data_owner' then
    perform fstore.require_another_data_owner(p_project, p_user);
  end if;
  execute format('alter role %I nologin', v_member.role_name);
  perform fstore.end_sessions(array[v_member.role_name]);
  perform fstore.borrow_role(v_owner, true);
  perform fstore.borrow_role(v_member.role_name, true);
  execute format('reassign owned by %I to %I', v_member.role_name, v_owner);
  execute format('drop owned by %I', v_member.role_name);
  execute format('drop role %I', v_member.role_name);
  perform fstore.borrow_role(v_owner, false);
  delete from fstore.members where project = p_project and user_name = p_user;
  perform fstore.audit(p_project, 'remove_member', jsonb_build_object('role', v_member.role_name));
  return v_member.role_name;
end $$;

create function fstore.share_project(p_project text, p_with text, p_read_only boolean default true)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := p_project || '__owner';
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'share it');
  perform fstore.require_project(p_with);
  if p_project = p_with then
    raise exception 'a project cannot be shared with itself' using errcode = '22023';
  end if;
  perform fstore.borrow_role(v_owner, true);
  perform fstore.revoke_project_reads(p_project, p_with);
  perform fstore.grant_project_reads(p_project, p_with, not coalesce(p_read_only, true));
  perform fstore.borrow_role(v_owner, false);
  insert into fstore.shares (project, with_project, read_only)
  values (p_project, p_with, coalesce(p_read_only, true))
  on conflict (project, with_project) do update
    set read_only = excluded.read_only, shared_at = now(), shared_by = session_user;
  perform fstore.audit(p_project, 'share_project',
                       jsonb_build_object('with', p_with, 'read_only', coalesce(p_read_only, true)));
end $$;

create function fstore.unshare_project(p_project text, p_with text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := p_project || '__owner';
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'unshare it');
  perform fstore.require_project(p_with);
  if not exists (select 1 from fstore.shares where project = p_project and with_project = p_with) then
    raise exception 'project % is not shared with %', p_project, p_with using errcode = 'P0002';
  end if;
  perform fstore.borrow_role(v_owner, true);
  perform fstore.revoke_project_reads(p_project, p_with);
  perform fstore.borrow_role(v_owner, false);
  delete from fstore.shares where project = p_project and with_project = p_with;
  perform fstore.audit(p_project, 'unshare_project', jsonb_build_object('with', p_with));
end $$;

-- Block a person everywhere: every project-user role of theirs stops logging in now.
create function fstore.block_user(p_user text) returns text[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_roles text[];
  v_role text;
begin
  perform fstore.require_admin('block users');
  perform fstore.check_user_name(p_user);
  insert into fstore.blocked_users (user_name) values (p_user) on conflict do nothing;
  select coalesce(array_agg(role_name order by role_name), '{}') into v_roles
    from fstore.members where user_name = p_user;
  foreach v_role in array v_roles loop
    execute format('alter role %I nologin', v_role);
  end loop;
  perform fstore.end_sessions(v_roles);
  perform fstore.audit(null, 'block_user', jsonb_build_object('user', p_user, 'roles', v_roles));
  return v_roles;
end $$;

create function fstore.unblock_user(p_user text) returns text[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_roles text[];
  v_role text;
begin
  perform fstore.require_admin('unblock users');
  perform fstore.check_user_name(p_user);
  delete from fstore.blocked_users where user_name = p_user;
  select coalesce(array_agg(role_name order by role_name), '{}') into v_roles
    from fstore.members where user_name = p_user;
  foreach v_role in array v_roles loop
    execute format('alter role %I login', v_role);
  end loop;
  perform fstore.audit(null, 'unblock_user', jsonb_build_object('user', p_user, 'roles', v_roles));
  return v_roles;
end $$;

-- Refuse row policies that are not plain data: names, tables, roles and commands from
-- fixed alphabets, a non-empty predicate without ';' (one expression, never a statement).
create function fstore.check_row_policies(p_policies jsonb) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_policy jsonb;
  v_where text;
begin
  if p_policies is null or jsonb_typeof(p_policies) <> 'array' then
    raise exception 'row policies must be a JSON array of policies' using errcode = '22023';
  end if;
  for v_policy in select * from jsonb_array_elements(p_policies) loop
    v_where := 'row policy ' || coalesce(quote_literal(left(v_policy->>'name', 80)), 'NULL');
    if jsonb_typeof(v_policy) <> 'object' then
      raise exception 'row policies must be JSON objects, got %', left(v_policy::text, 80) using errcode = '22023';
    end if;
    if coalesce(v_policy->>'name', '') !~ '^[a-z][a-z0-9_]{0,40}$' then
      raise exception '%: invalid name (use a-z, 0-9 and _, starting with a letter)', v_where using errcode = '22023';
    end if;
    if coalesce(v_policy->>'table', '') !~ '^[a-z_][a-z0-9_]{0,62}$' then
      raise exception '%: invalid table %', v_where, coalesce(quote_literal(left(v_policy->>'table', 80)), 'NULL')
        using errcode = '22023';
    end if;
    if jsonb_typeof(v_policy->'roles') is distinct from 'array' or jsonb_array_length(v_policy->'roles') = 0
       or exists (select 1 from jsonb_array_elements(v_policy->'roles') r
                   where jsonb_typeof(r) <> 'string' or r #>> '{}' not in ('data_owner', 'data_scientist', 'everyone')) then
      raise exception '%: roles must be a non-empty list of data_owner, data_scientist, everyone', v_where
        using errcode = '22023';
    end if;
    if coalesce(v_policy->>'command', 'select') not in ('select', 'all') then
      raise exception '%: command must be select or all', v_where using errcode = '22023';
    end if;
    if jsonb_typeof(v_policy->'using') is distinct from 'string' or btrim(v_policy->>'using') = ''
       or position(';' in v_policy->>'using') > 0 then
      raise exception '%: the predicate must be one non-empty boolean expression without ";"', v_where
        using errcode = '22023';
    end if;
  end loop;
end $$;

-- Store a project's declarative row policies (validated by the caller with pglast);
-- the caller applies them as the owner, and table creation re-applies them.
create function fstore.record_row_policies(p_project text, p_policies jsonb) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_count integer;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'set row policies');
  -- Security fix (attack suite, tests/security): the predicate is pasted into CREATE
  -- POLICY by apply_table_policies, which also runs inside SECURITY DEFINER functions
  -- (store_training_table) and superuser restores. Everything here is checked so that
  -- no field can carry a second statement (no ';') or an unknown role, whoever calls.
  perform fstore.check_row_policies(p_policies);
  delete from fstore.row_policies where project = p_project;
  insert into fstore.row_policies (project, name, table_name, roles, command, predicate)
  select p_project, p->>'name', p->>'table',
         array(select jsonb_array_elements_text(p->'roles')), coalesce(p->>'command', 'select'),
         p->>'using'
    from jsonb_array_elements(p_policies) p;
  get diagnostics v_count = row_count;
  perform fstore.audit(p_project, 'set_row_policies', jsonb_build_object('count', v_count));
  return v_count;
end $$;

revoke execute on all functions in schema fstore from public;
grant execute on function
  fstore.check_project_name(text), fstore.check_user_name(text), fstore.project_user_role(text, text),
  fstore.project_role_kind(text), fstore.session_serial(), fstore.session_app_id(),
  fstore.session_project(), fstore.session_is_admin(), fstore.visible_projects()
  to public;
grant execute on function fstore.create_project(text, text), fstore.delete_project(text),
  fstore.block_user(text), fstore.unblock_user(text) to fstore_admin;

reset role;
