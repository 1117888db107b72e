-- Row policies and the securing of project tables. A row policy is declared in
-- policies/<project>.yml; Python parses its predicate with pglast into a structured
-- tree, and the database renders the tree into SQL itself (fstore.predicate_sql), so
-- no free text ever reaches CREATE POLICY. fstore.secure_table gives every table of a
-- project what it must carry:
--   fstore_access            the base permissive policy (RLS is forced: none means no rows)
--   fstore_rls_<policy>      a declared row policy on this table or feature group (restrictive)
--   fstore_entity_<policy>   an entity policy: a reader it binds sees a row of a table with the
--                            policy's key column only if they can see that key in the policy's
--                            table (so hiding an account in `accounts` hides it in every feature
--                            group, online table and training dataset of the project)
--   fstore_shared_from_<p>   a training dataset built from shared project p is readable only by
--                            those who may read p (the copy follows the share)
--   fstore_commit_rows, fstore_commit_updates, fstore_append_only
--                            feature-group history is written only by a commit open in the
--                            writer's own transaction, never updated or deleted; online tables
--                            are upserted only by commits; training datasets are never changed.
-- Who a policy binds, by session_user (the certificate's identity, so it holds in fstore's
-- SECURITY DEFINER builder too): `data_scientist` binds every reader who is not a Data Owner
-- of the project (its Data Scientists and the members of projects it is shared with);

set role fstore_control;

create or replace function fstore.predicate_sql(p_tree jsonb, p_columns jsonb default null, p_depth integer default 0)
returns text language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_kinds constant text[] := '{column,string,number,boolean,null,cast,op,and,or,not,in,between,like,is_null,is,distinct_from,function,special}';
  c_modifiers constant text[] := '{args,type,list,negated,low,high,pattern,insensitive,test}';
  c_types constant text[] := '{int2,int4,int8,float4,float8,numeric,text,varchar,bool,date,timestamp,timestamptz,interval}';
  c_ops constant text[] := '{=,<>,<,>,<=,>=,+,-,*,/,%}';
  c_functions constant text[] := '{lower,upper,coalesce,abs,length,date_trunc,now,greatest,least,round,floor,ceil,nullif}';
  v_kind text;
  v_not text;
  v_name text;
  v_parts text[];
begin
  if p_depth > 64 then
    raise exception 'row policy predicate is nested too deeply' using errcode = '22023';
  end if;
  if jsonb_typeof(p_tree) is distinct from 'object' then
    raise exception 'row policy predicate: expected an object node, got %', left(coalesce(p_tree::text, 'NULL'), 80)
      using errcode = '22023';
  end if;
  select array_agg(k) into v_parts from jsonb_object_keys(p_tree) k where k = any(c_kinds);
  if cardinality(v_parts) is distinct from 1
     or exists (select 1 from jsonb_object_keys(p_tree) k where not (k = any(c_kinds) or k = any(c_modifiers))) then
    raise exception 'row policy predicate: invalid node %', left(p_tree::text, 120) using errcode = '22023';
  end if;
  v_kind := v_parts[1];
  v_not := case when coalesce(p_tree->>'negated', 'false')::boolean then 'not ' else '' end;
  case v_kind
  when 'column' then
    v_name := fstore.check_column_name(p_tree->>'column');
    if p_columns is not null then
      if not p_columns ? v_name then
        raise exception 'column % is not in this table', v_name using errcode = 'FS001';
      end if;
      v_name := p_columns->>v_name;
    end if;
    return format('%I', v_name);
  when 'string' then
    if jsonb_typeof(p_tree->'string') <> 'string' then
      raise exception 'row policy predicate: "string" takes a string' using errcode = '22023';
    end if;
    return quote_literal(p_tree->>'string');
  when 'number' then
    if coalesce(p_tree->>'number', '') !~ '^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$' then
      raise exception 'row policy predicate: invalid number %', left(p_tree->>'number', 40) using errcode = '22023';
    end if;
    return p_tree->>'number';
  when 'boolean' then
    return case (p_tree->>'boolean')::boolean when true then 'true' else 'false' end;
  when 'null' then
    return 'null';
  when 'cast' then
    if not coalesce(p_tree->>'type' = any(c_types), false) then
      raise exception 'row policy predicate: cast to % is not allowed', coalesce(quote_literal(p_tree->>'type'), 'NULL')
        using errcode = '22023';
    end if;
    return format('(%s)::pg_catalog.%s', fstore.predicate_sql(p_tree->'cast', p_columns, p_depth + 1), p_tree->>'type');
  when 'op' then
    if not coalesce(p_tree->>'op' = any(c_ops), false) or jsonb_typeof(p_tree->'args') is distinct from 'array'
       or jsonb_array_length(p_tree->'args') not in (1, 2)
       or (jsonb_array_length(p_tree->'args') = 1 and p_tree->>'op' <> '-') then
      raise exception 'row policy predicate: operator % is not allowed here', coalesce(quote_literal(p_tree->>'op'), 'NULL')
        using errcode = '22023';
    end if;
    if jsonb_array_length(p_tree->'args') = 1 then
      return format('(- %s)', fstore.predicate_sql(p_tree->'args'->0, p_columns, p_depth + 1));
    end if;
    return format('(%s %s %s)', fstore.predicate_sql(p_tree->'args'->0, p_columns, p_depth + 1), p_tree->>'op',
                  fstore.predicate_sql(p_tree->'args'->1, p_columns, p_depth + 1));
  when 'and', 'or' then
    if jsonb_typeof(p_tree->v_kind) is distinct from 'array' or jsonb_array_length(p_tree->v_kind) = 0 then
      raise exception 'row policy predicate: "%" takes a non-empty list', v_kind using errcode = '22023';
    end if;
    select array_agg(fstore.predicate_sql(e, p_columns, p_depth + 1) order by i) into v_parts
      from jsonb_array_elements(p_tree->v_kind) with ordinality x(e, i);
    return '(' || array_to_string(v_parts, ' ' || v_kind || ' ') || ')';
  when 'not' then
    return format('(not %s)', fstore.predicate_sql(p_tree->'not', p_columns, p_depth + 1));
  when 'in' then
    if jsonb_typeof(p_tree->'list') is distinct from 'array' or jsonb_array_length(p_tree->'list') = 0 then
      raise exception 'row policy predicate: "in" takes a non-empty "list"' using errcode = '22023';
    end if;
    select array_agg(fstore.predicate_sql(e, p_columns, p_depth + 1) order by i) into v_parts
      from jsonb_array_elements(p_tree->'list') with ordinality x(e, i);
    return format('(%s %sin (%s))', fstore.predicate_sql(p_tree->'in', p_columns, p_depth + 1), v_not,
                  array_to_string(v_parts, ', '));
  when 'between' then
    return format('(%s %sbetween %s and %s)', fstore.predicate_sql(p_tree->'between', p_columns, p_depth + 1), v_not,
                  fstore.predicate_sql(p_tree->'low', p_columns, p_depth + 1),
                  fstore.predicate_sql(p_tree->'high', p_columns, p_depth + 1));
  when 'like' then
    return format('(%s %s%s %s)', fstore.predicate_sql(p_tree->'like', p_columns, p_depth + 1), v_not,
                  case when coalesce(p_tree->>'insensitive', 'false')::boolean then 'ilike' else 'like' end,
                  fstore.predicate_sql(p_tree->'pattern', p_columns, p_depth + 1));
  when 'is_null' then
    return format('(%s is %snull)', fstore.predicate_sql(p_tree->'is_null', p_columns, p_depth + 1), v_not);
  when 'is' then
    if not coalesce(p_tree->>'test' in ('true', 'false', 'unknown'), false) then
      raise exception 'row policy predicate: "is" tests true, false or unknown' using errcode = '22023';
    end if;
    return format('(%s is %s%s)', fstore.predicate_sql(p_tree->'is', p_columns, p_depth + 1), v_not, p_tree->>'test');
  when 'distinct_from' then
    if jsonb_typeof(p_tree->'distinct_from') is distinct from 'array' or jsonb_array_length(p_tree->'distinct_from') <> 2 then
      raise exception 'row policy predicate: "distinct_from" takes two operands' using errcode = '22023';
    end if;
    return format('(%s is %sdistinct from %s)', fstore.predicate_sql(p_tree->'distinct_from'->0, p_columns, p_depth + 1),
                  v_not, fstore.predicate_sql(p_tree->'distinct_from'->1, p_columns, p_depth + 1));
  when 'function' then
    if not coalesce(p_tree->>'function' = any(c_functions), false)
       or jsonb_typeof(coalesce(p_tree->'args', '[]')) <> 'array' then
      raise exception 'row policy predicate: function % is not allowed', coalesce(quote_literal(p_tree->>'function'), 'NULL')
        using errcode = '22023';
    end if;
    select coalesce(array_agg(fstore.predicate_sql(e, p_columns, p_depth + 1) order by i), '{}') into v_parts
      from jsonb_array_elements(coalesce(p_tree->'args', '[]')) with ordinality x(e, i);
    return format('%s(%s)', case when p_tree->>'function' in ('coalesce', 'greatest', 'least', 'nullif')
                                 then p_tree->>'function' else 'pg_catalog.' || (p_tree->>'function') end,
                  array_to_string(v_parts, ', '));
  when 'special' then
    if not coalesce(p_tree->>'special' in ('session_user', 'current_user', 'current_date', 'current_timestamp'), false) then
      raise exception 'row policy predicate: % is not allowed', coalesce(quote_literal(p_tree->>'special'), 'NULL')
        using errcode = '22023';
    end if;
    return p_tree->>'special';
  end case;
end $$;
comment on function fstore.predicate_sql(jsonb,jsonb,integer) is
  'A predicate tree as SQL. Nodes (exactly one kind key each): {"column": c} {"string": s} {"number": "1.5"} {"boolean": b} {"null": true} {"cast": e, "type": t} t in int2 int4 int8 float4 float8 numeric text varchar bool date timestamp timestamptz interval {"op": o, "args": [a, b]} o in = <> < > <= >= + - * / % ({"op": "-", "args": [a]}) {"and": [e...]} {"or": [e...]} {"not": e} {"in": e, "list": [e...], "negated": b} {"between": e, "low": a, "high": b, "negated": b} {"like": e, "pattern": p, "insensitive": b, "negated": b} {"is_null": e, "negated": b} {"is": e, "test": "true"|"false"|"unknown", "negated": b} {"distinct_from": [a, b], "negated": b} {"function": f, "args": [e...]} f in lower upper coalesce abs length date_trunc now greatest least round floor ceil nullif {"special": "session_user"|"current_user"|"current_date"|"current_timestamp"} p_columns, when given, maps column names to the names to render (unmapped: SQLSTATE FS001, which the caller turns into "false").';

create or replace function fstore.check_row_policies(p_policies jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_policy jsonb;
  v_where text;
  v_checked jsonb := '[]';
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
    if v_policy ? 'entity' and jsonb_typeof(v_policy->'entity') <> 'null'
       and coalesce(v_policy->>'entity', '') !~ '^[a-z_][a-z0-9_]{0,62}$' then
      raise exception '%: entity must name the key column (a-z, 0-9, _)', v_where using errcode = '22023';
    end if;
    if v_policy ? 'using' and jsonb_typeof(v_policy->'using') = 'string' then
      raise exception '%: the predicate must be given as a structured tree ("predicate"), not as text', v_where
        using errcode = '22023', hint = 'fstore.policies converts the text of policies/<project>.yml';
    end if;
    begin
      v_checked := v_checked || jsonb_build_array(v_policy || jsonb_build_object('sql', fstore.predicate_sql(v_policy->'predicate')));
    exception when sqlstate '22023' or sqlstate '42602' then
      raise exception '%: %', v_where, sqlerrm using errcode = '22023';
    end;
  end loop;
  if (select count(distinct p->>'name') from jsonb_array_elements(p_policies) p) <> jsonb_array_length(p_policies) then
    raise exception 'row policy names must be unique' using errcode = '22023';
  end if;
  return v_checked;
end $$;
comment on function fstore.check_row_policies(jsonb) is
  'The policies of a project as given (JSON list), checked: names, tables and roles from fixed alphabets, a predicate tree the renderer accepts. Returns them with "sql".';

create or replace function fstore.policy_guard(p_project text, p_roles text[]) returns text
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select case
    when 'everyone' = any(p_roles) or ('data_owner' = any(p_roles) and 'data_scientist' = any(p_roles)) then ''
    when 'data_scientist' = any(p_roles)
      then format('(select pg_catalog.pg_has_role(session_user, %L, ''MEMBER'')) or ', fstore.owner_role(p_project))
    else format('(select not pg_catalog.pg_has_role(session_user, %L, ''MEMBER'')) or ', p_project || '__data_owner')
  end
$$;
comment on function fstore.policy_guard(text,text[]) is
  'The guard that exempts readers a policy does not bind (see the header), as SQL ending in "or ".';

create or replace function fstore.policy_guard_distributed(p_project text, p_roles text[]) returns text
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  -- Citus allows no subquery in the policies of a distributed table, and it checks them on
  -- the workers, where session_user is the role Citus logged in as: the coordinator's
  -- *current* role (a member, or the role they SET ROLE to). Any role a session may SET
  -- is one session_user is a member of, so "member of p__owner" exempts no one the
  -- single-node guard binds. A policy for Data Owners binds every member of p__owner
  -- (p__data_owner, p__owner itself, fstore_control): on a worker, a Data Owner acting
  -- as p__owner is still bound.
  select case
    when 'everyone' = any(p_roles) or ('data_owner' = any(p_roles) and 'data_scientist' = any(p_roles)) then ''
    when 'data_scientist' = any(p_roles)
      then format('pg_catalog.pg_has_role(session_user, %L, ''MEMBER'') or ', fstore.owner_role(p_project))
    else format('(not pg_catalog.pg_has_role(session_user, %L, ''MEMBER'')) or ', fstore.owner_role(p_project))
  end
$$;
comment on function fstore.policy_guard_distributed(text,text[]) is
  'fstore.policy_guard for a distributed table: no subquery, and p__owner bound by Data Owner policies.';

create or replace function fstore.session_bound_by_policies(p_project text, p_relid oid) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (
    select 1 from fstore.row_policies r
     where r.project = p_project
       and exists (select 1 from pg_catalog.pg_policy p where p.polrelid = p_relid
                      and p.polname in ('fstore_rls_' || r.name, 'fstore_entity_' || r.name))
       and ('everyone' = any(r.roles)
            or ('data_scientist' = any(r.roles) and not pg_catalog.pg_has_role(session_user, fstore.owner_role(p_project), 'MEMBER'))
            or ('data_owner' = any(r.roles) and pg_catalog.pg_has_role(session_user, p_project || '__data_owner', 'MEMBER'))))
$$;
comment on function fstore.session_bound_by_policies(text,oid) is
  'True when session_user is bound by a row policy that covers this relation of project p_project (its statistics would show what the policy hides from them).';

create or replace function fstore.refuse_history_change() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  -- the one exception: a DELETE during an erasure open in this transaction that targets this
  -- table (sql/functions/87_erasure.sql); fstore_erasure_rows then checks every row's keys
  -- (on a Citus worker, where a distributed table's shards fire this trigger, the catalog
  -- is not there: no erasure is open, the change is refused)
  if tg_op = 'DELETE' and to_regclass('fstore.erasures') is not null and fstore.erasure_columns(tg_relid) is not null then
    return null;
  end if;
  -- and on a worker: the DELETE of fstore.erase_distributed_rows, the erasure's definer for
  -- distributed tables (owned by fstore_writer; Citus logs in to the workers as the
  -- statement's role, and fstore_writer is NOLOGIN on every node a client reaches)
  if tg_op = 'DELETE' and session_user = 'fstore_writer' then
    return null;
  end if;
  raise exception '% on %.% is not allowed: %', tg_op, tg_table_schema, tg_table_name,
    case tg_argv[0]
      when 'offline' then 'feature-group history is append-only; rows come only from commits (fstore.commit_feature_rows)'
      when 'online' then 'online rows change only by commits (fstore.commit_feature_rows)'
      else 'a training dataset is stored once and never changed; build a new version'
    end using errcode = '42501';
end $$;
comment on function fstore.refuse_history_change() is
  'Raised by the append-only triggers of feature-group and training-dataset tables; a DELETE passes only during an erasure open in this transaction that targets the table (fstore.forget).';

create or replace function fstore.secure_table(p_table regclass) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from pg_catalog.pg_class c where c.oid = p_table
                    and pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER')) then
    raise exception 'permission denied: % may not secure table %', session_user, p_table using errcode = '42501';
  end if;
  perform fstore.apply_table_rules(p_table);
end $$;
comment on function fstore.secure_table(regclass) is
  'Give one table of a project what it must carry (see the header): for the DDL guard, on behalf of a member of the table''s owner role (a Data Owner creating or altering it).';

create or replace function fstore.apply_table_rules(p_table regclass) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rel record;
  v_name text;
  v_kind text;
  v_fg fstore.feature_groups;
  v_td fstore.training_datasets;
  v_policy fstore.row_policies;
  v_sql text;
  v_source jsonb;
  v_map jsonb;
  v_project text;
  v_old record;
  v_distributed boolean;
  v_read text[] := '{}';   -- distributed tables: what a reader must pass (select and all)
  v_all text[] := '{}';    -- ... and what every command must pass (policies for all)
begin
  select c.oid, c.relname, c.relkind, c.relowner, n.nspname into v_rel
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_table;
  if not found or v_rel.relkind not in ('r', 'p') or not fstore.is_project_schema(v_rel.nspname) then
    return;
  end if;
  v_name := format('%I.%I', v_rel.nspname, v_rel.relname);
  execute format('alter table %s enable row level security, force row level security', v_name);
  for v_old in select polname from pg_catalog.pg_policy where polrelid = v_rel.oid and polname like 'fstore\_%' loop
    execute format('drop policy %I on %s', v_old.polname, v_name);
  end loop;
  execute format('drop trigger if exists fstore_append_only on %s', v_name);
  execute format('drop trigger if exists fstore_erasure_rows on %s', v_name);
  execute format('drop trigger if exists fstore_erasure_count on %s', v_name);
  v_distributed := fstore.is_distributed(p_table);
  if not v_distributed then
    execute format('create policy fstore_access on %s as permissive for all to public using (true) with check (true)', v_name);
  end if;

  -- fstore's own tables: feature-group history, online rows, training datasets
  select * into v_fg from fstore.feature_groups
   where project = v_rel.nspname and v_rel.relname in (offline_table, online_table);
  if found then
    v_kind := case when v_rel.relname = v_fg.offline_table then 'offline' else 'online' end;
  else
    select * into v_td from fstore.training_datasets where project = v_rel.nspname and table_name = v_rel.relname;
    if found then
      v_kind := 'training';
    end if;
  end if;
  if v_kind is not null then
    insert into fstore.managed_tables (relid, project, relname, kind, feature_group_id, training_dataset_id, columns)
    select v_rel.oid, v_rel.nspname, v_rel.relname, v_kind, v_fg.id, v_td.id,
           coalesce(jsonb_agg(jsonb_build_object('name', a.attname, 'type', a.atttypid::text, 'not_null', a.attnotnull)
                              order by a.attnum), '[]')
      from pg_catalog.pg_attribute a where a.attrelid = v_rel.oid and a.attnum > 0 and not a.attisdropped
    on conflict (relid) do update set relname = excluded.relname, kind = excluded.kind, columns = excluded.columns,
      feature_group_id = excluded.feature_group_id, training_dataset_id = excluded.training_dataset_id;
  end if;
  if v_kind in ('offline', 'online') and not v_distributed then
    execute format('create policy fstore_commit_rows on %s as restrictive for insert to public '
                   'with check (_commit_id = (select fstore.open_commit(%s)))', v_name, v_fg.id);
  end if;
  if v_kind = 'online' and not v_distributed then
    execute format('create policy fstore_commit_updates on %s as restrictive for update to public '
                   'using (true) with check (_commit_id = (select fstore.open_commit(%s)))', v_name, v_fg.id);
  end if;
  if v_kind is not null then
    execute format('create trigger fstore_append_only before %s on %s for each statement '
                   'execute function fstore.refuse_history_change(%L)',
                   case v_kind when 'offline' then 'update or delete or truncate'
                               when 'online' then 'delete or truncate'
                               else 'insert or update or delete or truncate' end, v_name, v_kind);
    -- erasure (the append-only exception): each deleted row must be the erased entity's, and
    -- fstore counts what went (sql/functions/87_erasure.sql)
    execute format('create trigger fstore_erasure_rows before delete on %s for each row '
                   'execute function fstore.check_erased_row()', v_name);
    execute format('create trigger fstore_erasure_count after delete on %s referencing old table as fstore_erased '
                   'for each statement execute function fstore.count_erased_rows()', v_name);
  end if;

  -- declared row policies
  for v_policy in select * from fstore.row_policies where project = v_rel.nspname order by name loop
    if v_policy.table_name = v_rel.relname or v_rel.relname ~ ('^' || v_policy.table_name || '__v[0-9]+(__online)?$') then
      -- rendered again from the tree: text in the catalog (a restore, an old release) never runs
      if v_distributed then
        v_sql := format('(%s(%s))', fstore.policy_guard_distributed(v_rel.nspname, v_policy.roles),
                        fstore.predicate_sql(v_policy.predicate_tree));
        v_read := v_read || v_sql;
        if v_policy.command = 'all' then
          v_all := v_all || v_sql;
        end if;
      else
      execute format('create policy %I on %s as restrictive for %s to public using (%s(%s))',
                     'fstore_rls_' || v_policy.name, v_name, case v_policy.command when 'all' then 'all' else 'select' end,
                     fstore.policy_guard(v_rel.nspname, v_policy.roles), fstore.predicate_sql(v_policy.predicate_tree));
      end if;
    elsif v_kind = 'training' and v_policy.entity_key is null then
      -- a training dataset carries the row policies of the groups it read, over the
      -- columns it took from them; one whose columns it lacks hides its rows (fail closed)
      for v_source in select g from jsonb_array_elements(v_td.feature_groups) g
                       where g->>'project' = v_rel.nspname and g->>'name' = v_policy.table_name loop
        v_map := coalesce((select jsonb_object_agg(f->>'name', f->>'output') from jsonb_array_elements(v_source->'features') f), '{}')
              || coalesce(v_source->'key_columns', '{}');
        begin
          v_sql := fstore.predicate_sql(v_policy.predicate_tree, v_map);
        exception when sqlstate 'FS001' then
          v_sql := 'false';
        end;
        execute format('create policy %I on %s as restrictive for select to public using (%s(%s))',
                       'fstore_rls_' || v_policy.name, v_name, fstore.policy_guard(v_rel.nspname, v_policy.roles), v_sql);
      end loop;
    end if;
    if v_policy.entity_key is not null and v_rel.relname <> v_policy.table_name
       and exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = v_rel.oid and a.attname = v_policy.entity_key
                      and not a.attisdropped) then
      if v_distributed then
        -- the entity table is coordinator-local and a distributed table's policy may not
        -- read it: the rows an entity policy governs stay hidden from the readers it binds
        v_read := v_read || format('(%sfalse)', fstore.policy_guard_distributed(v_rel.nspname, v_policy.roles));
        continue;
      elsif to_regclass(format('%I.%I', v_rel.nspname, v_policy.table_name)) is not null then
        v_sql := format('exists (select 1 from %I.%I e where e.%I = %s.%I)', v_rel.nspname, v_policy.table_name,
                        v_policy.entity_key, v_name, v_policy.entity_key);
      else
        v_sql := 'false';  -- the entity table is not there (yet): nothing shows
      end if;
      execute format('create policy %I on %s as restrictive for select to public using (%s(%s))',
                     'fstore_entity_' || v_policy.name, v_name, fstore.policy_guard(v_rel.nspname, v_policy.roles), v_sql);
    end if;
  end loop;

  -- a distributed table: one permissive policy per command (Citus makes restrictive policies
  -- permissive on the shards, see sql/functions/41_distribution.sql), none for all
  if v_distributed then
    execute format('create policy fstore_read on %s as permissive for select to public using (%s)', v_name,
                   coalesce(nullif(array_to_string(v_read, ' and '), ''), 'true'));
    execute format('create policy fstore_delete on %s as permissive for delete to public using (%s)', v_name,
                   coalesce(nullif(array_to_string(v_all, ' and '), ''), 'true'));
    if v_kind in ('offline', 'online') then
      -- the commit gate a worker can check: rows come only from fstore.write_commit_batch
      execute format('create policy fstore_insert on %s as permissive for insert to public '
                     'with check (current_user = ''fstore_writer'')', v_name);
      execute format('create policy fstore_update on %s as permissive for update to public using (%s) '
                     'with check (current_user = ''fstore_writer'')', v_name,
                     coalesce(nullif(array_to_string(v_all, ' and '), ''), 'true'));
    else
      execute format('create policy fstore_insert on %s as permissive for insert to public with check (%s)', v_name,
                     coalesce(nullif(array_to_string(v_all, ' and '), ''), 'true'));
      execute format('create policy fstore_update on %s as permissive for update to public using (%s) with check (%s)',
                     v_name, coalesce(nullif(array_to_string(v_all, ' and '), ''), 'true'),
                     coalesce(nullif(array_to_string(v_all, ' and '), ''), 'true'));
    end if;
  end if;

  -- a training dataset built from a shared project's groups follows the share
  if v_kind = 'training' then
    for v_project in select distinct g->>'project' from jsonb_array_elements(v_td.feature_groups) g
                      where g->>'project' <> v_rel.nspname loop
      execute format('create policy %I on %s as restrictive for select to public using ((select fstore.session_sees_project(%L)))',
                     'fstore_shared_from_' || v_project, v_name, v_project);
    end loop;
  end if;

  -- sensitive features: column privileges of the readers (sql/functions/42_sensitive.sql)
  perform fstore.apply_sensitive_columns(p_table);

  -- the entity table of an entity policy appeared or changed: the tables it governs follow
  if exists (select 1 from fstore.row_policies where project = v_rel.nspname and table_name = v_rel.relname
                and entity_key is not null) then
    perform fstore.secure_entity_tables(v_rel.nspname, v_rel.relname);
  end if;
end $$;
comment on function fstore.apply_table_rules(regclass) is
  'The same, for fstore''s own functions (SECURITY DEFINER, not granted to anyone): the control plane owns the policies and triggers; it writes them from the catalog and from predicates it renders itself.';

create or replace function fstore.secure_entity_tables(p_project text, p_entity_table text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_relid oid;
begin
  for v_relid in
    select distinct c.oid from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      join fstore.row_policies r on r.project = p_project and r.table_name = p_entity_table and r.entity_key = a.attname
     where n.nspname = p_project and c.relkind in ('r', 'p') and c.relname <> p_entity_table
  loop
    perform fstore.apply_table_rules(v_relid::regclass);
  end loop;
end $$;
comment on function fstore.secure_entity_tables(text,text) is
  'Re-secure the tables an entity policy of p_project on p_entity_table governs.';

create or replace function fstore.set_row_policies(p_project text, p_policies jsonb) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_checked jsonb;
  v_count integer;
  v_relid oid;
begin
  perform fstore.require_project(p_project);
  perform fstore.require_data_owner(p_project, 'set row policies');
  perform fstore.lock_project(p_project);
  v_checked := fstore.check_row_policies(p_policies);
  delete from fstore.row_policies where project = p_project;
  insert into fstore.row_policies (project, name, table_name, roles, command, predicate, predicate_tree, entity_key)
  select p_project, p->>'name', p->>'table', array(select jsonb_array_elements_text(p->'roles')),
         coalesce(p->>'command', 'select'), p->>'sql', p->'predicate', nullif(p->>'entity', '')
    from jsonb_array_elements(v_checked) p;
  get diagnostics v_count = row_count;
  for v_relid in select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = p_project and c.relkind in ('r', 'p') order by c.relname loop
    perform fstore.apply_table_rules(v_relid::regclass);
  end loop;
  perform fstore.audit(p_project, 'set_row_policies', jsonb_build_object(
    'count', v_count, 'policies', (select jsonb_agg(jsonb_build_object('name', p->>'name', 'table', p->>'table',
                                                                          'entity', p->'entity', 'sql', p->>'sql'))
                                     from jsonb_array_elements(v_checked) p)));
  return v_count;
end $$;
comment on function fstore.set_row_policies(text,jsonb) is
  'Set a project''s row policies (all of them, replacing the earlier ones) and apply them to every table of the project, in the caller''s transaction. Data Owners only.';

grant execute on function
  fstore.predicate_sql(jsonb,jsonb,integer),
  fstore.check_row_policies(jsonb),
  fstore.policy_guard(text,text[]),
  fstore.policy_guard_distributed(text,text[]),
  fstore.session_bound_by_policies(text,oid),
  fstore.refuse_history_change(),
  fstore.secure_table(regclass)
  to public;
reset role;
