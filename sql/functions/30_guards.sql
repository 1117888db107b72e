-- Guards on project schemas, enforced for everybody by event triggers. The rule:
-- nothing a tenant writes is ever evaluated by anyone else. Readers of a shared table,
-- the writers of a read-write share, a project's Data Scientists and fstore's own
-- SECURITY DEFINER code all run expressions attached to project objects (policies,
-- view bodies, defaults, checks, index expressions, triggers, domain checks), so:
--
--  * policies, triggers and rules in project schemas are created only by fstore's
--    control plane (fstore.secure_table), from checked input: CREATE/ALTER POLICY,
--    CREATE TRIGGER, CREATE RULE, functions, procedures, aggregates, operators, types
--    and domains are refused there, and fstore's own policies and triggers cannot be
--    dropped or disabled;

set role fstore_control;

create or replace function fstore.is_project_schema(p_schema text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.projects where name = p_schema)
$$;
comment on function fstore.is_project_schema(text) is
  'True when the schema is a project''s.';

create or replace function fstore.managed_table(p_relid oid) returns fstore.managed_tables
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select * from fstore.managed_tables where relid = p_relid
$$;
comment on function fstore.managed_table(oid) is
  'The record of one of fstore''s own tables in a project schema (feature-group offline or online table, training dataset), or NULLs.';

create or replace function fstore.is_managed_table(p_relid oid) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.managed_tables where relid = p_relid)
$$;
comment on function fstore.is_managed_table(oid) is
  'True when the table is one of fstore''s own in a project schema (feature-group history, online table, training dataset).';

create or replace function fstore.is_control() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select current_user::text = 'fstore_control'
      or coalesce((select rolsuper from pg_catalog.pg_roles where rolname = current_user), false)
$$;
comment on function fstore.is_control() is
  'True when fstore''s control plane (fstore_control) or a superuser is running the command.';

create or replace function fstore.trusted_type(p_type oid) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select coalesce((select r.rolsuper from pg_catalog.pg_type t join pg_catalog.pg_roles r on r.oid = t.typowner
                    where t.oid = p_type), false)
$$;
comment on function fstore.trusted_type(oid) is
  'A type the platform made: built-in or an extension''s (owned by a superuser). Array types share their element''s owner and domains are owned by whoever made them.';

create or replace function fstore.trusted_function(p_function oid, p_in_default boolean) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select exists (
    select 1 from pg_catalog.pg_proc p
      join pg_catalog.pg_roles r on r.oid = p.proowner
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where p.oid = p_function and r.rolsuper and n.nspname in ('pg_catalog', 'public')
       and not p.prosecdef and p.prokind in ('f', 'a', 'w')
       and (p.provolatile <> 'v'
            or (p_in_default and p.proname in ('nextval', 'gen_random_uuid', 'random', 'clock_timestamp')))
       and p.proname !~ '(_to_xml|_to_xmlschema|_to_xml_and_xmlschema)$'
       and p.proname !~ '^(pg_stat_get_|inet_client_|inet_server_|pg_current_|txid_)'
       and p.proname not in ('current_setting', 'ts_stat', 'ts_rewrite', 'pg_show_all_settings',
                             'pg_settings_get_flags', 'pg_cursor', 'pg_prepared_statement',
                             'pg_listening_channels', 'pg_backend_pid', 'pg_conf_load_time'))
$$;
comment on function fstore.trusted_function(oid,boolean) is
  'A function a tenant''s expression may call (see the header).';

create or replace function fstore.expression_problem(p_tree text, p_in_default boolean) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_key text;
  v_oid oid;
  v_list text;
  v_nextval integer;
  v_nextval_const integer;
begin
  if p_tree is null then
    return null;
  end if;
  for v_key, v_oid in
    select m[1], m[2]::oid from regexp_matches(p_tree,
      ':(funcid|opfuncid|aggfnoid|winfnoid|hashfuncid|negfuncid|tsmhandler|startInRangeFunc|endInRangeFunc) (\d+)', 'g') m
  loop
    if v_oid <> 0 and not fstore.trusted_function(v_oid, p_in_default) then
      return format('function %s', v_oid::regprocedure);
    end if;
  end loop;
  for v_oid in
    select m[2]::oid from regexp_matches(p_tree, ':(opno|eqop|sortop) (\d+)', 'g') m
    union all
    select o::oid from regexp_matches(p_tree, ':opnos \(o ([0-9 ]+)\)', 'g') m,
                       unnest(string_to_array(btrim(m[1]), ' ')) o
  loop
    if v_oid <> 0 and not coalesce((select fstore.trusted_function(o.oprcode, p_in_default)
                                       from pg_catalog.pg_operator o where o.oid = v_oid), false) then
      return format('operator %s', v_oid::regoperator);
    end if;
  end loop;
  for v_key, v_list in
    select m[1], m[2] from regexp_matches(p_tree,
      ':(consttype|vartype|paramtype|funcresulttype|opresulttype|resulttype|aggtype|wintype|casetype|coalescetype'
      '|minmaxtype|array_typeid|element_typeid|row_typeid|refcontainertype|refelemtype|refrestype|aggtranstype'
      '|aggargtypes|coltypes|ctecoltypes|funccoltypes|type|typeId) (\d+|\(o [0-9 ]*\))', 'g') m
  loop
    for v_oid in select t::oid from unnest(string_to_array(btrim(regexp_replace(v_list, '[()o]', '', 'g')), ' ')) t
                  where t <> '' loop
      if v_oid <> 0 and not fstore.trusted_type(v_oid) then
        return format('type %s', v_oid::regtype);
      end if;
    end loop;
  end loop;
  -- nextval only of a constant sequence (its argument decides which sequence moves)
  v_nextval := (select count(*) from regexp_matches(p_tree, ':funcid 1574 ', 'g'));
  v_nextval_const := (select count(*) from regexp_matches(p_tree, ':funcid 1574 [^{}]*:args \(\{CONST ', 'g'));
  if v_nextval > v_nextval_const then
    return 'nextval of a computed sequence';
  end if;
  if p_tree ~ ':rowMarks \(' then
    return 'FOR UPDATE/FOR SHARE';
  end if;
  return null;
end $$;
comment on function fstore.expression_problem(text,boolean) is
  'What, if anything, an expression tree (pg_node_tree text) holds that a tenant may not use: NULL when it is clean, else a description. The tree''s function, operator and type references are read from its text form (":funcid 870", ":opno 96", ":consttype 25", ":coltypes (o 23 25)", ...).';

create or replace function fstore.check_relation(p_relid oid) returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rel record;
  v_name text;
  v_what text;
  v_problem text;
  v_managed fstore.managed_tables;
  v_col jsonb;
begin
  select c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.reloptions, n.nspname
    into v_rel from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = p_relid;
  if not found then
    return;
  end if;
  v_name := format('%I.%I', v_rel.nspname, v_rel.relname);
  if v_rel.relkind = 'm' then
    raise exception 'materialized views are not allowed in project %: they bypass row policies', v_rel.nspname
      using errcode = '42501';
  end if;
  if v_rel.relkind = 'v' then
    if not coalesce(array_to_string(v_rel.reloptions, ',') ~ 'security_invoker=(true|on|1|yes)', false) then
      raise exception 'views in project % must be created WITH (security_invoker = true)', v_rel.nspname
        using errcode = '42501',
              hint = 'a view without security_invoker reads with its owner''s rights and bypasses row policies';
    end if;
    select fstore.expression_problem(r.ev_action::text, false) into v_problem
      from pg_catalog.pg_rewrite r where r.ev_class = p_relid and r.rulename = '_RETURN';
    if v_problem is not null then
      raise exception 'view % uses %, which views in project schemas may not use', v_name, v_problem
        using errcode = '42501',
              hint = 'a view runs with its reader''s rights: only trusted built-in functions that run no query and change nothing';
    end if;
  end if;
  if v_rel.relkind not in ('r', 'p') then
    return;
  end if;
  if not v_rel.relrowsecurity or not v_rel.relforcerowsecurity then
    raise exception 'row-level security cannot be disabled on tables of project %', v_rel.nspname
      using errcode = '42501';
  end if;
  -- column types, defaults and generated columns
  select format('column %I has type %s, which is not a built-in or extension type', a.attname,
                format_type(a.atttypid, a.atttypmod)) into v_what
    from pg_catalog.pg_attribute a
   where a.attrelid = p_relid and a.attnum > 0 and not a.attisdropped and not fstore.trusted_type(a.atttypid)
   limit 1;
  if v_what is null then
    select format('the %s of column %I uses %s', case when a.attgenerated = '' then 'default' else 'generation expression' end,
                  a.attname, fstore.expression_problem(d.adbin::text, a.attgenerated = '')) into v_what
      from pg_catalog.pg_attrdef d join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
     where d.adrelid = p_relid and fstore.expression_problem(d.adbin::text, a.attgenerated = '') is not null
     limit 1;
  end if;
  -- check and exclusion constraints
  if v_what is null then
    select format('constraint %I uses %s', k.conname, coalesce(fstore.expression_problem(k.conbin::text, false),
                  'an untrusted operator')) into v_what
      from pg_catalog.pg_constraint k
     where k.conrelid = p_relid
       and (fstore.expression_problem(k.conbin::text, false) is not null
            or exists (select 1 from unnest(k.conexclop) o join pg_catalog.pg_operator op on op.oid = o
                        where not fstore.trusted_function(op.oprcode, false)))
     limit 1;
  end if;
  -- index expressions and predicates
  if v_what is null then
    select format('index %s uses %s', i.indexrelid::regclass,
                  coalesce(fstore.expression_problem(i.indexprs::text, false), fstore.expression_problem(i.indpred::text, false)))
      into v_what
      from pg_catalog.pg_index i
     where i.indrelid = p_relid
       and (fstore.expression_problem(i.indexprs::text, false) is not null
            or fstore.expression_problem(i.indpred::text, false) is not null)
     limit 1;
  end if;
  if v_what is null then
    select format('partition key uses %s', fstore.expression_problem(pt.partexprs::text, false)) into v_what
      from pg_catalog.pg_partitioned_table pt
     where pt.partrelid = p_relid and fstore.expression_problem(pt.partexprs::text, false) is not null;
  end if;
  -- triggers, rules and policies are fstore's own
  if v_what is null then
    select format('trigger %I', t.tgname) into v_what from pg_catalog.pg_trigger t
     where t.tgrelid = p_relid and not t.tgisinternal
       and not (t.tgname like 'fstore\_%' and t.tgfoid in (select p.oid from pg_catalog.pg_proc p
                                                              where p.pronamespace = 'fstore'::regnamespace))
     limit 1;
  end if;
  if v_what is null then
    select format('trigger %I is disabled', t.tgname) into v_what from pg_catalog.pg_trigger t
     where t.tgrelid = p_relid and t.tgname like 'fstore\_%' and t.tgenabled not in ('O', 'A')
     limit 1;
  end if;
  if v_what is null then
    select format('rule %I', r.rulename) into v_what from pg_catalog.pg_rewrite r
     where r.ev_class = p_relid limit 1;
  end if;
  if v_what is null then
    select format('policy %I', p.polname) into v_what from pg_catalog.pg_policy p
     where p.polrelid = p_relid and p.polname not like 'fstore\_%' limit 1;
  end if;
  if v_what is not null then
    raise exception 'table % may not carry %: project tables hold only what fstore attaches', v_name, v_what
      using errcode = '42501',
            hint = 'anything attached to a table runs as whoever reads or writes it (Data Scientists, shared projects); '
                   || 'declare row policies in policies/ and use only built-in types and functions';
  end if;

  -- fstore's own tables keep their shape: no inheritance, no renames, no dropped or
  -- retyped columns, no defaults; feature-group tables may gain nullable columns
  if exists (select 1 from pg_catalog.pg_inherits h
              where (h.inhrelid = p_relid or h.inhparent = p_relid)
                and (fstore.is_managed_table(h.inhrelid) or fstore.is_managed_table(h.inhparent))) then
    raise exception 'feature-group and training-dataset tables take no part in inheritance or partitioning (%)', v_name
      using errcode = '42501';
  end if;
  v_managed := fstore.managed_table(p_relid);
  if v_managed.relid is null then
    return;
  end if;
  if v_managed.relname <> v_rel.relname then
    raise exception 'table %.% belongs to a % and cannot be renamed', v_rel.nspname, v_managed.relname,
      case v_managed.kind when 'training' then 'training dataset' else 'feature group' end using errcode = '42501';
  end if;
  for v_col in select * from jsonb_array_elements(v_managed.columns) loop
    if not exists (select 1 from pg_catalog.pg_attribute a
                    where a.attrelid = p_relid and a.attname = v_col->>'name' and not a.attisdropped
                      and a.atttypid = (v_col->>'type')::oid and a.attnotnull = (v_col->>'not_null')::boolean) then
      raise exception 'column % of % cannot be dropped, renamed or changed: bump the feature group''s version instead',
        v_col->>'name', v_name using errcode = '42501';
    end if;
  end loop;
  if exists (select 1 from pg_catalog.pg_attribute a
              where a.attrelid = p_relid and a.attnum > 0 and not a.attisdropped
                and (a.atthasdef or (v_managed.kind = 'training'
                                     and not v_managed.columns @> jsonb_build_array(jsonb_build_object('name', a.attname::text))))) then
    raise exception 'columns of % take no defaults%', v_name,
      case when v_managed.kind = 'training' then ' and no new columns: a training dataset is stored once' else '' end
      using errcode = '42501';
  end if;
end $$;
comment on function fstore.check_relation(oid) is
  'Refuse what a table (or the table of an index) carries that a tenant may not attach (see the header). Run after every DDL command on it by anyone but fstore itself.';

create or replace function fstore.check_project_grants() returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text;
  v_bad record;
begin
  if fstore.is_control() then
    return;
  end if;
  for v_project in
    select distinct p from unnest(array[split_part(current_user::text, '__', 1), fstore.session_project()]) p
     where p is not null and fstore.is_project_schema(p)
  loop
    select a.object, coalesce(g.rolname, 'PUBLIC') as grantee, a.privilege_type into v_bad
      from (
        select format('%I.%I', n.nspname, c.relname) as object, x.grantee, x.privilege_type, x.is_grantable
          from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace, aclexplode(c.relacl) x
         where n.nspname = v_project
        union all
        select format('%I.%I (%I)', n.nspname, c.relname, t.attname), x.grantee, x.privilege_type, x.is_grantable
          from pg_catalog.pg_attribute t join pg_catalog.pg_class c on c.oid = t.attrelid
          join pg_catalog.pg_namespace n on n.oid = c.relnamespace, aclexplode(t.attacl) x
         where n.nspname = v_project and t.attacl is not null
        union all
        select format('schema %I', n.nspname), x.grantee, x.privilege_type, x.is_grantable
          from pg_catalog.pg_namespace n, aclexplode(n.nspacl) x
         where n.nspname = v_project
      ) a
      left join pg_catalog.pg_roles g on g.oid = a.grantee
     where a.grantee not in (select oid from pg_catalog.pg_roles where rolname = fstore.owner_role(v_project))
       and not coalesce(not a.is_grantable and (  -- PUBLIC (grantee 0) has no pg_roles row: NULL, refused
             g.rolname like replace(v_project, '_', '\_') || '\_\_%'
          or (g.rolname in ('fstore_auditor', 'fstore_builder') and a.privilege_type in ('SELECT', 'USAGE'))
          or (g.rolname = 'fstore_writer' and a.privilege_type in ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'USAGE'))  -- 41, 87
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
    -- what fstore's roles need stays: the auditor (read auditing) and the builder read every table
    select format('%I.%I', n.nspname, c.relname) as object, r.rolname as grantee, 'SELECT' as privilege_type
      into v_bad
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace,
           pg_catalog.pg_roles r
     where n.nspname = v_project and c.relkind in ('r', 'p') and r.rolname in ('fstore_auditor', 'fstore_builder')
       and not has_table_privilege(r.oid, c.oid, 'SELECT')
     limit 1;
    if found then
      raise exception 'permission denied: % may not revoke SELECT on % from %', current_user, v_bad.object, v_bad.grantee
        using errcode = '42501', hint = 'fstore audits every read of project data and builds training datasets with it';
    end if;
  end loop;
end $$;
comment on function fstore.check_project_grants() is
  'Privileges in the caller''s project after a GRANT or REVOKE by one of its roles (see the header). SECURITY INVOKER: fstore.shares'' RLS shows a member its project''s shares.';

grant execute on function
  fstore.is_project_schema(text),
  fstore.managed_table(oid),
  fstore.is_managed_table(oid),
  fstore.is_control(),
  fstore.trusted_type(oid),
  fstore.trusted_function(oid,boolean),
  fstore.expression_problem(text,boolean),
  fstore.check_relation(oid),
  fstore.check_project_grants()
  to public;
reset role;

create or replace function fstore.guard_project_ddl() returns event_trigger
language plpgsql set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_cmd record;
  v_schema text;
  v_grants boolean := false;
  v_relid oid;
begin
  if fstore.is_control() then
    return;  -- fstore's control plane and the operator build from checked input
  end if;
  for v_cmd in select * from pg_event_trigger_ddl_commands() loop
    if v_cmd.command_tag in ('GRANT', 'REVOKE') then
      v_grants := true;  -- these carry no schema: checked once, below
      continue;
    end if;
    if v_cmd.command_tag = 'ALTER DEFAULT PRIVILEGES' then
      raise exception 'permission denied: ALTER DEFAULT PRIVILEGES is reserved to fstore' using errcode = '42501',
        hint = 'new tables of a project get their privileges from fstore (members, shares, auditing)';
    end if;
    v_schema := v_cmd.schema_name;
    if v_cmd.object_type = 'policy' then
      select c.relnamespace::regnamespace::text into v_schema
        from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid where p.oid = v_cmd.objid;
    elsif v_cmd.object_type = 'trigger' then
      select c.relnamespace::regnamespace::text into v_schema
        from pg_catalog.pg_trigger t join pg_catalog.pg_class c on c.oid = t.tgrelid where t.oid = v_cmd.objid;
    elsif v_cmd.object_type = 'rule' then
      select c.relnamespace::regnamespace::text into v_schema
        from pg_catalog.pg_rewrite r join pg_catalog.pg_class c on c.oid = r.ev_class where r.oid = v_cmd.objid;
    end if;
    if v_schema is null or not fstore.is_project_schema(v_schema) then
      continue;
    end if;
    if v_cmd.object_type = 'table' and v_cmd.command_tag in ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') then
      perform fstore.secure_table(v_cmd.objid::regclass);
      perform fstore.check_relation(v_cmd.objid);
    elsif v_cmd.object_type = 'table' then
      perform fstore.check_relation(v_cmd.objid);  -- against the shape fstore recorded, then record the new one
      perform fstore.secure_table(v_cmd.objid::regclass);
    elsif v_cmd.object_type in ('view', 'materialized view') then
      perform fstore.check_relation(v_cmd.objid);
    elsif v_cmd.object_type = 'index' then
      select i.indrelid into v_relid from pg_catalog.pg_index i where i.indexrelid = v_cmd.objid;
      perform fstore.check_relation(v_relid);
    elsif v_cmd.object_type = 'table column' then  -- e.g. RENAME COLUMN: objid is the table
      perform fstore.check_relation(v_cmd.objid);
      perform fstore.secure_table(v_cmd.objid::regclass);
    elsif v_cmd.object_type = 'table constraint' then
      select k.conrelid into v_relid from pg_catalog.pg_constraint k where k.oid = v_cmd.objid;
      perform fstore.check_relation(v_relid);
    elsif v_cmd.object_type in ('sequence', 'statistics object', 'index column') then
      null;
    else
      raise exception '% is not allowed in project %: % are created only by fstore', v_cmd.command_tag, v_schema,
        case v_cmd.object_type when 'policy' then 'row policies (declare them in policies/)'
                               when 'trigger' then 'triggers' when 'rule' then 'rules'
                               else 'objects that hold code or types (' || v_cmd.object_type || 's)' end
        using errcode = '42501',
              hint = 'anything that runs code in a project runs as whoever reads or writes its data';
    end if;
  end loop;
  if v_grants then
    perform fstore.check_project_grants();
  end if;
end $$;
comment on function fstore.guard_project_ddl() is
  'ddl_command_end: every command in a project schema by anyone but fstore itself.';

alter function fstore.guard_project_ddl() owner to fstore_control;

drop event trigger if exists fstore_guard_project_ddl;
create event trigger fstore_guard_project_ddl on ddl_command_end execute function fstore.guard_project_ddl();

create or replace function fstore.guard_project_drop() returns event_trigger
language plpgsql set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_obj record;
  v_tables text[];
begin
  if fstore.is_control() then
    return;
  end if;
  select coalesce(array_agg(object_identity), '{}') into v_tables
    from pg_event_trigger_dropped_objects() where object_type = 'table';
  for v_obj in select * from pg_event_trigger_dropped_objects() loop
    if v_obj.object_type = 'schema' and fstore.is_project_schema(v_obj.object_name) then
      raise exception 'project schema % is dropped only with its project (fstore.delete_project)', v_obj.object_name
        using errcode = '42501';
    end if;
    continue when v_obj.schema_name is null or not fstore.is_project_schema(v_obj.schema_name);
    if v_obj.object_type = 'table' and fstore.is_managed_table(v_obj.objid) then
      raise exception 'table % belongs to a feature group or training dataset: drop it with fstore.drop_feature_group or fstore.drop_training_dataset',
        v_obj.object_identity using errcode = '42501';
    end if;
    if v_obj.object_type in ('policy', 'trigger') and split_part(v_obj.object_identity, ' on ', 1) like 'fstore\_%'
       and not (substring(v_obj.object_identity from ' on (.*)$') = any(v_tables)) then
      raise exception '% % is fstore''s and goes only with its table', v_obj.object_type, v_obj.object_identity
        using errcode = '42501';
    end if;
  end loop;
end $$;
comment on function fstore.guard_project_drop() is
  'sql_drop: fstore''s policies and triggers go only with their table, fstore''s tables and the project schema only through fstore (which audits the drop).';

alter function fstore.guard_project_drop() owner to fstore_control;

drop event trigger if exists fstore_guard_project_drop;
create event trigger fstore_guard_project_drop on sql_drop execute function fstore.guard_project_drop();

create or replace function fstore.guard_managed_rewrite() returns event_trigger
language plpgsql set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not fstore.is_control() and fstore.is_managed_table(pg_event_trigger_table_rewrite_oid()) then
    raise exception 'table % belongs to a feature group or training dataset: its rows are never rewritten',
      pg_event_trigger_table_rewrite_oid()::regclass using errcode = '42501',
      hint = 'history is append-only: commit new rows, or bump the feature group''s version';
  end if;
end $$;
comment on function fstore.guard_managed_rewrite() is
  'table_rewrite: feature-group history and training datasets are never rewritten (ALTER COLUMN ... TYPE ... USING, a volatile default...).';

alter function fstore.guard_managed_rewrite() owner to fstore_control;

drop event trigger if exists fstore_guard_managed_rewrite;
create event trigger fstore_guard_managed_rewrite on table_rewrite execute function fstore.guard_managed_rewrite();

set role fstore_control;

grant execute on function
  fstore.guard_project_ddl(),
  fstore.guard_project_drop(),
  fstore.guard_managed_rewrite()
  to public;
reset role;
