-- Guards on project schemas, enforced for everybody by an event trigger:
--  * every table created in a project schema gets row-level security enabled and
--    forced, the base access policy, and the project's declared row policies;
--  * row-level security cannot be switched off there;
--  * views there must be security_invoker (a view reads with its owner's rights);
--  * no materialized views or SECURITY DEFINER functions there (both read as owner);
--  * privileges there go only to the project's own roles, the auditor and the groups
--    of projects it is shared with: a project role's GRANT to anyone else is refused.

set role fstore_control;

create function fstore.is_project_schema(p_schema text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.projects where name = p_schema)
$$;

-- Security fix (attack suite): SECURITY INVOKER, so fstore.row_policies' own RLS
-- applies. As SECURITY DEFINER (granted to public) it let any member of another
-- project read this project's policies. Table creators see their own project's rows
-- (their session is a member); fstore_control and superusers see all.
create function fstore.declared_row_policies(p_project text, p_table text)
returns table (name text, roles text[], command text, predicate text)
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select name, roles, command, predicate from fstore.row_policies
   where project = p_project
     -- a policy on "x" covers table x and every version of feature group x, offline and online
     and (table_name = p_table or p_table ~ ('^' || table_name || '__v[0-9]+(__online)?$'))
   order by name
$$;

-- Apply the base policy and the declared row policies to one table. Runs with the
-- caller's rights (the table's owner), so it can do nothing the owner could not.
create function fstore.apply_table_policies(p_schema text, p_table text) returns integer
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_policy record;
  v_roles text;
  v_guard text;
  v_count integer := 0;
begin
  execute format('alter table %I.%I enable row level security, force row level security', p_schema, p_table);
  for v_policy in select polname from pg_policy
                   where polrelid = format('%I.%I', p_schema, p_table)::regclass loop
    execute format('drop policy %I on %I.%I', v_policy.polname, p_schema, p_table);
  end loop;
  execute format('create policy fstore_access on %I.%I as permissive for all to public using (true) with check (true)',
                 p_schema, p_table);
  for v_policy in select * from fstore.declared_row_policies(p_schema, p_table) loop
    -- Security fix (attack suite): this may run as fstore_control (store_training_table)
    -- or a superuser (restore); a ';' in a predicate would run a second statement as them.
    if position(';' in v_policy.predicate) > 0 then
      raise exception 'row policy % of project % has a predicate with ";": refusing to apply it',
        v_policy.name, p_schema using errcode = '22023';
    end if;
    -- Who a policy binds: `everyone` -> all roles; `data_owner` -> the project's Data Owners;
    -- `data_scientist` -> every reader who is not a Data Owner of this project (its Data
    -- Scientists AND the members of projects it is shared with), so a share never shows
    -- another project more than the project's own scientists see.
    if 'everyone' = any(v_policy.roles)
       or ('data_owner' = any(v_policy.roles) and 'data_scientist' = any(v_policy.roles)) then
      v_roles := 'public';
      v_guard := '';
    elsif 'data_scientist' = any(v_policy.roles) then
      v_roles := 'public';
      v_guard := format('(select pg_has_role(current_user, %L, ''MEMBER'')) or ', p_schema || '__owner');
    else
      v_roles := quote_ident(p_schema || '__data_owner');
      v_guard := '';
    end if;
    execute format('create policy %I on %I.%I as restrictive for %s to %s using (%s(%s))',
                   'fstore_rls_' || v_policy.name, p_schema, p_table,
                   case v_policy.command when 'all' then 'all' else 'select' end,
                   v_roles, v_guard, v_policy.predicate);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;

-- Security fix (attack suite): a project's owner role could GRANT its tables or schema
-- to PUBLIC, the platform admin or another project's roles, bypassing share_project,
-- its audit record and unshare. After a GRANT or ALTER DEFAULT PRIVILEGES by a project
-- role, every privilege on what that role owns in its project schema must go to the
-- project's own roles (without grant option), to fstore_auditor (read), or to the
-- groups of a project it is shared with (read; and write for the Data Owners of a
-- read-write share) -- what fstore's control functions grant. SECURITY INVOKER: it
-- looks at what the current role owns; fstore.shares' RLS shows a member its shares.
create function fstore.check_project_grants() returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_me oid := (select oid from pg_roles where rolname = current_user);
  v_project text := split_part(current_user::text, '__', 1);
  v_bad record;
begin
  if current_user::text = 'fstore_control' or position('__' in current_user::text) = 0
     or (select rolsuper from pg_roles where rolname = session_user)
     or not fstore.is_project_schema(v_project) then
    return;
  end if;
  select a.object, coalesce(g.rolname, 'PUBLIC') as grantee, a.privilege_type into v_bad
    from (
      select format('%I.%I', n.nspname, c.relname) as object, x.grantee, x.privilege_type, x.is_grantable
        from pg_class c join pg_namespace n on n.oid = c.relnamespace, aclexplode(c.relacl) x
       where n.nspname = v_project and c.relowner = v_me
      union all
      select format('%I.%I (%I)', n.nspname, c.relname, t.attname), x.grantee, x.privilege_type, x.is_grantable
        from pg_attribute t join pg_class c on c.oid = t.attrelid join pg_namespace n on n.oid = c.relnamespace,
             aclexplode(t.attacl) x
       where n.nspname = v_project and c.relowner = v_me and t.attacl is not null
      union all
      select format('schema %I', n.nspname), x.grantee, x.privilege_type, x.is_grantable
        from pg_namespace n, aclexplode(n.nspacl) x
       where n.nspname = v_project and n.nspowner = v_me
      union all
      select 'default privileges', x.grantee, x.privilege_type, x.is_grantable
        from pg_default_acl d, aclexplode(d.defaclacl) x
       where d.defaclrole = v_me
    ) a
    left join pg_roles g on g.oid = a.grantee
   where a.grantee <> v_me
     and not coalesce(not a.is_grantable and (  -- PUBLIC (grantee 0) has no pg_roles row: NULL, refused
           g.rolname like replace(v_project, '_', '\_') || '\_\_%'
        or (g.rolname = 'fstore_auditor' and a.privilege_type in ('SELECT', 'USAGE'))
        or exists (select 1 from fstore.shares s
                    where s.project = v_project
                      and g.rolname in (s.with_project || '__data_owner', s.with_project || '__data_scientist')
                      and (a.privilege_type in ('SELECT', 'USAGE')
                           or (not s.read_only and g.rolname = s.with_project || '__data_owner'
                               and a.privilege_type in ('INSERT', 'UPDATE', 'DELETE'))))), false)
   limit 1;
  if found then
    raise exception 'permission denied: % may not grant % on % to %', current_user, v_bad.privilege_type,
      v_bad.object, v_bad.grantee using errcode = '42501',
      hint = 'project data is shared with other projects only by fstore.share_project';
  end if;
end $$;

reset role;

create function fstore.guard_project_ddl() returns event_trigger
language plpgsql set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_cmd record;
  v_class record;
  v_grants boolean := false;
begin
  for v_cmd in select * from pg_event_trigger_ddl_commands() loop
    if v_cmd.command_tag in ('GRANT', 'ALTER DEFAULT PRIVILEGES') then
      v_grants := true;  -- these carry no schema: checked once, below
      continue;
    end if;
    if v_cmd.schema_name is null or not fstore.is_project_schema(v_cmd.schema_name) then
      continue;
    end if;
    if v_cmd.object_type = 'table' and v_cmd.command_tag in ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') then
      select c.relname, n.nspname into v_class
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = v_cmd.objid;
      perform fstore.apply_table_policies(v_class.nspname, v_class.relname);
    elsif v_cmd.object_type = 'table' and v_cmd.command_tag = 'ALTER TABLE' then
      if exists (select 1 from pg_class where oid = v_cmd.objid
                  and (not relrowsecurity or not relforcerowsecurity)) then
        raise exception 'row-level security cannot be disabled on tables of project %', v_cmd.schema_name
          using errcode = '42501';
      end if;
    elsif v_cmd.object_type = 'view' then
      if not exists (select 1 from pg_class where oid = v_cmd.objid
                      and array_to_string(reloptions, ',') ~ 'security_invoker=(true|on|1|yes)') then
        raise exception 'views in project % must be created WITH (security_invoker = true)', v_cmd.schema_name
          using errcode = '42501',
                hint = 'a view without security_invoker reads with its owner''s rights and bypasses row policies';
      end if;
    elsif v_cmd.object_type = 'materialized view' then
      raise exception 'materialized views are not allowed in project %: they bypass row policies', v_cmd.schema_name
        using errcode = '42501';
    elsif v_cmd.object_type in ('function', 'procedure') then
      if exists (select 1 from pg_proc where oid = v_cmd.objid and prosecdef) then
        raise exception 'SECURITY DEFINER functions are not allowed in project %', v_cmd.schema_name
          using errcode = '42501';
      end if;
    end if;
  end loop;
  if v_grants then
    perform fstore.check_project_grants();
  end if;
end $$;
alter function fstore.guard_project_ddl() owner to fstore_control;

create event trigger fstore_guard_project_ddl on ddl_command_end
  execute function fstore.guard_project_ddl();

set role fstore_control;
grant execute on function fstore.is_project_schema(text), fstore.declared_row_policies(text, text),
  fstore.apply_table_policies(text, text), fstore.check_project_grants(), fstore.guard_project_ddl() to public;
reset role;
