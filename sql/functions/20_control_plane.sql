-- Control-plane functions. SECURITY DEFINER, owned by fstore_control, search_path
-- pinned (pg_temp last), EXECUTE revoked from PUBLIC: the admin may create/delete
-- projects and block users; a project's Data Owners manage its members and shares.
-- Every identifier goes through format('%I'); every name is validated first. Roles
-- are created, granted and dropped by the fstore_roles functions (11_roles.sql).

set role fstore_control;

create or replace function fstore.grant_project_reads(p_project text, p_reader_project text, p_write boolean)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := fstore.owner_role(p_project);
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
  perform fstore.apply_sensitive_project(p_project);  -- the new readers get no sensitive column
end $$;
comment on function fstore.grant_project_reads(text,text,boolean) is
  'Privileges a project''s groups hold on its schema (also for future tables).';

create or replace function fstore.revoke_project_reads(p_project text, p_reader_project text)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_owner text := fstore.owner_role(p_project);
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
comment on function fstore.revoke_project_reads(text,text) is
  'Revoke every privilege a reader project''s groups hold on a project''s schema and tables (and future tables).';

create or replace function fstore.create_member_role(p_project text, p_user text, p_kind text) returns text
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
  if exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
    raise exception 'a role named % already exists', v_role using errcode = '42710';
  end if;
  -- a role name comes back only when none of its earlier certificates can log in
  perform fstore.require_retired_certificates(v_role);
  insert into fstore.members (project, user_name, role_name, project_role)
  values (p_project, p_user, v_role, p_kind);
  perform fstore.roles_create(v_role, true, true);
  perform fstore.roles_grant(p_project || '__' || p_kind, v_role, true);
  return v_role;
end $$;
comment on function fstore.create_member_role(text,text,text) is
  'Create a person''s login role in a project (refused while earlier certificates of that role are not in the published CRL) and record the membership.';

create or replace function fstore.create_project(p_name text, p_owner_user text) returns text
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
  v_owner := fstore.owner_role(p_name);
  v_do := p_name || '__data_owner';
  v_ds := p_name || '__data_scientist';
  if exists (select 1 from fstore.projects where name = p_name) then
    raise exception 'project % already exists', p_name using errcode = '42710';
  end if;
  if exists (select 1 from pg_catalog.pg_namespace where nspname = p_name) then
    raise exception 'a schema named % already exists', p_name using errcode = '42P06';
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname = p_name) then
    raise exception 'a role named % exists: a project may not have the name of a role', p_name using errcode = '42710';
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname like replace(p_name, '_', '\_') || '\_\_%') then
    raise exception 'roles named %__* already exist', p_name using errcode = '42710';
  end if;

  insert into fstore.projects (name, owner_user) values (p_name, p_owner_user);
  perform fstore.roles_create(v_owner, false, true);
  perform fstore.roles_create(v_do, false, false);  -- members may SET ROLE owner, not inherit it
  perform fstore.roles_create(v_ds, false, true);
  perform fstore.roles_grant(v_owner, v_do, true);
  -- the control plane creates and secures the project's objects as its owner
  perform fstore.roles_grant(v_owner, 'fstore_control', true);
  execute format('grant connect, temporary on database %I to %I, %I', current_database(), v_do, v_ds);
  -- dbt stages incremental models and snapshots in temporary tables as the owner role; what
  -- a session makes in pg_temp is seen by it alone, and the guard keeps it out of project tables
  execute format('grant temporary on database %I to %I', current_database(), v_owner);

  execute format('create schema %I authorization %I', p_name, v_owner);
  execute format('revoke all on schema %I from public', p_name);
  execute format('grant usage on schema %I to %I, %I, fstore_auditor, fstore_builder', p_name, v_do, v_ds);
  execute format('alter default privileges for role %I in schema %I grant select, insert, update, delete on tables to %I',
                 v_owner, p_name, v_do);
  execute format('alter default privileges for role %I in schema %I grant usage, select on sequences to %I',
                 v_owner, p_name, v_do);
  execute format('alter default privileges for role %I in schema %I grant select on tables to %I, fstore_auditor, fstore_builder',
                 v_owner, p_name, v_ds);
  execute format('alter default privileges for role %I revoke execute on functions from public', v_owner);

  foreach v_fn in array array[
    'fstore.add_member(text, text, text)', 'fstore.set_member_role(text, text, text)',
    'fstore.remove_member(text, text)', 'fstore.share_project(text, text, boolean)',
    'fstore.unshare_project(text, text)', 'fstore.set_row_policies(text, jsonb)'] loop
    execute format('grant execute on function %s to %I', v_fn, v_do);
  end loop;

  v_role := fstore.create_member_role(p_name, p_owner_user, 'data_owner');
  perform fstore.audit(p_name, 'create_project', jsonb_build_object('owner', v_role));
  return v_role;
end $$;
comment on function fstore.create_project(text,text) is
  'Create a project: its schema, group roles, default privileges and its first Data Owner (the platform admin only). Returns the owner''s login role.';

create or replace function fstore.delete_project(p_name text) returns text[]
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_members text[];
  v_groups text[];
  v_role text;
begin
  perform fstore.require_admin('delete a project');
  perform fstore.require_project(p_name);
  perform fstore.lock_project(p_name);
  select coalesce(array_agg(role_name order by role_name), '{}') into v_members
    from fstore.members where project = p_name;
  v_groups := array[p_name || '__data_scientist', p_name || '__data_owner', fstore.owner_role(p_name)];
  foreach v_role in array v_members loop
    perform fstore.roles_set_login(v_role, false);
  end loop;
  perform fstore.end_sessions(v_members);
  perform fstore.retire_certificates(v_members);
  -- pg_cron's jobs of its members' monitors go before their roles (sql/functions/88_monitors.sql)
  perform fstore.unschedule_monitor_jobs(array(select m.id from fstore.monitors m
                                                where m.project = p_name or m.created_by = any(v_members)));
  -- copies of this project's data in projects it was shared with follow the share
  perform fstore.drop_derived_training_datasets(p_name, s.with_project)
     from fstore.shares s where s.project = p_name;
  execute format('drop schema %I cascade', p_name);
  foreach v_role in array v_members || v_groups loop
    if v_role <> fstore.owner_role(p_name) then
      perform fstore.roles_grant(v_role, 'fstore_control', true);  -- DROP OWNED needs the role's privileges
    end if;
    execute format('drop owned by %I cascade', v_role);
  end loop;
  foreach v_role in array v_members || v_groups loop
    perform fstore.roles_drop(v_role);
  end loop;
  delete from fstore.projects where name = p_name;
  perform fstore.audit(p_name, 'delete_project', jsonb_build_object('dropped_roles', v_members));
  return v_members;
end $$;
comment on function fstore.delete_project(text) is
  'Delete a project: its members'' sessions end and their certificates are retired, copies of its data in projects it was shared with are dropped, and its schema and roles go (the platform admin only). Returns the login roles dropped.';

create or replace function fstore.add_member(p_project text, p_user text, p_role text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_kind text := fstore.project_role_kind(p_role);
  v_role text;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'add members');
  perform fstore.lock_project(p_project);
  v_role := fstore.create_member_role(p_project, p_user, v_kind);
  perform fstore.audit(p_project, 'add_member', jsonb_build_object('role', v_role, 'project_role', v_kind));
  return v_role;
end $$;
comment on function fstore.add_member(text,text,text) is
  'Add a person to a project as data-owner or data-scientist (its Data Owners only). Returns the new login role; its certificate is the operator''s to issue.';

create or replace function fstore.require_another_data_owner(p_project text, p_user text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from fstore.members where project = p_project
                  and project_role = 'data_owner' and user_name <> p_user) then
    raise exception 'user % is the last Data Owner of project %: make someone else a Data Owner first',
      p_user, p_project using errcode = '55000';
  end if;
end $$;
comment on function fstore.require_another_data_owner(text,text) is
  'Raise an error when this user is the project''s last Data Owner.';

create or replace function fstore.require_member(p_project text, p_user text) returns fstore.members
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
comment on function fstore.require_member(text,text) is
  'The membership of a user in a project, or an error naming them.';

create or replace function fstore.set_member_role(p_project text, p_user text, p_role text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_kind text := fstore.project_role_kind(p_role);
  v_member fstore.members;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'change member roles');
  perform fstore.lock_project(p_project);
  v_member := fstore.require_member(p_project, p_user);
  if v_member.project_role = v_kind then
    return v_member.role_name;
  end if;
  if v_member.project_role = 'data_owner' then
    perform fstore.require_another_data_owner(p_project, p_user);
  end if;
  perform fstore.roles_grant(p_project || '__' || v_member.project_role, v_member.role_name, false);
  perform fstore.roles_grant(p_project || '__' || v_kind, v_member.role_name, true);
  update fstore.members set project_role = v_kind where project = p_project and user_name = p_user;
  perform fstore.end_sessions(array[v_member.role_name]);
  perform fstore.audit(p_project, 'set_member_role',
                       jsonb_build_object('role', v_member.role_name, 'from', v_member.project_role, 'to', v_kind));
  return v_member.role_name;
end $$;
comment on function fstore.set_member_role(text,text,text) is
  'Make a member a data-owner or data-scientist (the project''s Data Owners only; the last Data Owner cannot step down); their open sessions end.';

create or replace function fstore.remove_member(p_project text, p_user text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_member fstore.members;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'remove members');
  perform fstore.lock_project(p_project);
  v_member := fstore.require_member(p_project, p_user);
  if v_member.project_role = 'data_owner' then
    perform fstore.require_another_data_owner(p_project, p_user);
  end if;
  -- their monitors stop now (sql/functions/88_monitors.sql); pg_cron's jobs follow within a minute
  perform fstore.stop_member_monitors(p_project, v_member.role_name,
    format('its creator %s is no longer a member of project %s (removed)', v_member.role_name, p_project));
  perform fstore.roles_set_login(v_member.role_name, false);
  perform fstore.end_sessions(array[v_member.role_name]);
  perform fstore.retire_certificates(array[v_member.role_name]);
  perform fstore.roles_grant(v_member.role_name, 'fstore_control', true);  -- REASSIGN/DROP OWNED need it
  execute format('reassign owned by %I to %I', v_member.role_name, fstore.owner_role(p_project));
  execute format('drop owned by %I', v_member.role_name);
  perform fstore.roles_drop(v_member.role_name);
  delete from fstore.members where project = p_project and user_name = p_user;
  perform fstore.audit(p_project, 'remove_member', jsonb_build_object('role', v_member.role_name));
  return v_member.role_name;
end $$;
comment on function fstore.remove_member(text,text) is
  'Remove a member (the project''s Data Owners only): their monitors stopped, no more logins, sessions ended, certificates retired, login role dropped.';

create or replace function fstore.share_project(p_project text, p_with text, p_read_only boolean default true)
returns void language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'share it');
  perform fstore.require_project(p_with);
  if p_project = p_with then
    raise exception 'a project cannot be shared with itself' using errcode = '22023';
  end if;
  perform fstore.lock_project(p_project);
  perform fstore.revoke_project_reads(p_project, p_with);
  perform fstore.grant_project_reads(p_project, p_with, not coalesce(p_read_only, true));
  insert into fstore.shares (project, with_project, read_only)
  values (p_project, p_with, coalesce(p_read_only, true))
  on conflict (project, with_project) do update
    set read_only = excluded.read_only, shared_at = now(), shared_by = session_user;
  perform fstore.audit(p_project, 'share_project',
                       jsonb_build_object('with', p_with, 'read_only', coalesce(p_read_only, true)));
end $$;
comment on function fstore.share_project(text,text,boolean) is
  'Share a project''s feature store with another project, read-only by default (its Data Owners only); nothing is copied.';

create or replace function fstore.unshare_project(p_project text, p_with text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_dropped jsonb;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'unshare it');
  perform fstore.require_project(p_with);
  if not exists (select 1 from fstore.shares where project = p_project and with_project = p_with) then
    raise exception 'project % is not shared with %', p_project, p_with using errcode = 'P0002';
  end if;
  perform fstore.lock_project(p_project);
  perform fstore.revoke_project_reads(p_project, p_with);
  delete from fstore.shares where project = p_project and with_project = p_with;
  v_dropped := fstore.drop_derived_training_datasets(p_project, p_with);
  perform fstore.stop_shared_monitors(p_project, p_with);  -- sql/functions/88_monitors.sql
  perform fstore.audit(p_project, 'unshare_project', jsonb_build_object('with', p_with, 'dropped', v_dropped));
end $$;
comment on function fstore.unshare_project(text,text) is
  'Stop sharing: the other project''s members lose access at once, the training datasets it built from this project''s data are dropped (and recorded in both projects), and its monitors of this project''s groups stop.';

create or replace function fstore.block_user(p_user text) returns text[]
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
    perform fstore.roles_set_login(v_role, false);
  end loop;
  perform fstore.end_sessions(v_roles);
  perform fstore.retire_certificates(v_roles);
  perform fstore.audit(null, 'block_user', jsonb_build_object('user', p_user, 'roles', v_roles));
  return v_roles;
end $$;
comment on function fstore.block_user(text) is
  'Block a person everywhere: every project-user role of theirs stops logging in now, and their certificates are revoked.';

create or replace function fstore.unblock_user(p_user text) returns text[]
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
    perform fstore.roles_set_login(v_role, true);
  end loop;
  perform fstore.audit(null, 'unblock_user', jsonb_build_object('user', p_user, 'roles', v_roles));
  return v_roles;
end $$;
comment on function fstore.unblock_user(text) is
  'Let a blocked person log in again in every project (the platform admin only); their certificates must be issued anew.';

grant execute on function
  fstore.create_project(text,text),
  fstore.delete_project(text),
  fstore.block_user(text),
  fstore.unblock_user(text)
  to fstore_admin;
reset role;
