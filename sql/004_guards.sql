-- Guards on project schemas, enforced for everybody by an event trigger:
--  * every table created in a project schema gets row-level security enabled and
--    forced, the base access policy, and the project's declared row policies;
--  * row-level security cannot be switched off there;
--  * views there must be security_invoker (a view reads with its owner's rights);
--  * no materialized views or SECURITY DEFINER functions there (both read as owner).

set role fstore_control;

create function fstore.is_project_schema(p_schema text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.projects where name = p_schema)
$$;

create function fstore.declared_row_policies(p_project text, p_table text)
returns table (name text, roles text[], command text, predicate text)
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
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
    select string_agg(case r when 'everyone' then 'public'
                             else quote_ident(p_schema || '__' || r) end, ', ')
      into v_roles from unnest(v_policy.roles) r;
    execute format('create policy %I on %I.%I as restrictive for %s to %s using (%s)',
                   'fstore_rls_' || v_policy.name, p_schema, p_table,
                   case v_policy.command when 'all' then 'all' else 'select' end,
                   v_roles, v_policy.predicate);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;

reset role;

create function fstore.guard_project_ddl() returns event_trigger
language plpgsql set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_cmd record;
  v_class record;
begin
  for v_cmd in select * from pg_event_trigger_ddl_commands() loop
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
end $$;
alter function fstore.guard_project_ddl() owner to fstore_control;

create event trigger fstore_guard_project_ddl on ddl_command_end
  execute function fstore.guard_project_ddl();

set role fstore_control;
grant execute on function fstore.is_project_schema(text), fstore.declared_row_policies(text, text),
  fstore.apply_table_policies(text, text), fstore.guard_project_ddl() to public;
reset role;
