-- Validation of a staged batch before it becomes a commit. The rules come from the
-- feature group's options->'validation' (a JSON array) and the policy from
-- options->>'validation_policy'; fstore.commit_feature_rows calls
--   fstore.validate_batch(fg_id, batch, options->'validation', options->>'validation_policy')
-- before it writes anything. Every rule names its column:
--   {"rule": "not_null",        "column": "amount"}
--   {"rule": "unique",          "columns": ["account_id", "event_time"]}  (default: keys + event_time)
--   {"rule": "min",             "column": "amount", "value": 0}           (NULLs pass)
--   {"rule": "max",             "column": "amount", "value": 1000000}     (NULLs pass)
--   {"rule": "accepted_values", "column": "channel", "values": ["card", "wire"]}
--   {"rule": "regex",           "column": "country", "pattern": "^[A-Z]{2}$"}
--   {"rule": "row_count_min",   "value": 1}
-- Result: {"passed": bool, "rows": n, "policy": "strict"|"warn",
--          "failures": [{"rule", "column", "failing_rows", ...}]}.
-- Policy 'strict' raises SQLSTATE 23514 naming the column, the rule and the failing
-- row count; 'warn' returns the failures so the commit records them.
-- validate_batch is SECURITY INVOKER: it reads the batch with the caller's rights.
-- Identifiers go through format('%I'); rule values reach the query only as the
-- parameter $1. set_validation_rules changes the rules of an existing version.

set role fstore_control;

create or replace function fstore.has_validation_rules(p_options jsonb) returns boolean
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select coalesce(jsonb_typeof(p_options->'validation') in ('array', 'object')
                  and p_options->'validation' not in ('[]'::jsonb, '{}'::jsonb), false)
$$;
comment on function fstore.has_validation_rules(jsonb) is
  'True when a feature group declares validation rules (options.validation).';

create or replace function fstore.raise_validation_failure(p_fg fstore.feature_groups, p_failures jsonb) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  v_message text;
begin
  select string_agg(case when f->>'rule' = 'row_count_min'
                         then format('rule row_count_min: %s rows, at least %s required', f->>'actual', f->>'expected')
                         else format('column %s, rule %s: %s failing rows', f->>'column', f->>'rule', f->>'failing_rows')
                    end, '; ')
    into v_message from jsonb_array_elements(p_failures) f;
  raise exception 'validation failed for feature group %.% version %: %', p_fg.project, p_fg.name, p_fg.version,
    v_message using errcode = '23514',
    detail = p_failures::text,
    hint = 'fix the data, or set validation_policy to warn to commit and record the failures';
end $$;
comment on function fstore.raise_validation_failure(fstore.feature_groups,jsonb) is
  'A strict validation failure: SQLSTATE 23514 naming every failing rule and column (the failures as JSON in the detail). validate_batch and validate_commit raise it.';

create or replace function fstore.batch_column_type(p_batch regclass, p_column text) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
  select format_type(a.atttypid, a.atttypmod) from pg_attribute a
   where a.attrelid = p_batch and a.attname = p_column and a.attnum > 0 and not a.attisdropped
$$;
comment on function fstore.batch_column_type(regclass,text) is
  'The column type of a batch column (NULL when the column does not exist).';

create or replace function fstore.check_validation_rule(p_batch regclass, p_rule jsonb) returns text
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_rule text := p_rule->>'rule';
  v_column text := p_rule->>'column';
  v_type text;
  v_value text;
begin
  if jsonb_typeof(p_rule) is distinct from 'object' then
    raise exception 'invalid validation rule %: each rule is an object like {"rule": "not_null", "column": "amount"}',
      left(p_rule::text, 200) using errcode = '22023';
  end if;
  if v_rule is null or v_rule not in ('not_null', 'unique', 'min', 'max', 'accepted_values', 'regex', 'row_count_min') then
    raise exception 'unknown validation rule %: use not_null, unique, min, max, accepted_values, regex or row_count_min',
      coalesce(quote_literal(v_rule), 'NULL') using errcode = '22023';
  end if;
  if v_rule = 'row_count_min' then
    if jsonb_typeof(p_rule->'value') is distinct from 'number' then
      raise exception 'validation rule row_count_min needs a numeric "value"' using errcode = '22023';
    end if;
    return null;
  end if;
  if v_rule = 'unique' then
    if p_rule ? 'columns' and jsonb_typeof(p_rule->'columns') is distinct from 'array' then
      raise exception 'validation rule unique: "columns" must be a list of column names' using errcode = '22023';
    end if;
    for v_column in select jsonb_array_elements_text(coalesce(p_rule->'columns', jsonb_build_array(p_rule->'column')))
    loop
      continue when v_column is null;  -- no columns: the keys and event_time
      if fstore.batch_column_type(p_batch, v_column) is null then
        raise exception 'validation rule unique names column %, which is not in the batch', quote_ident(v_column)
          using errcode = '42703';
      end if;
    end loop;
    return null;
  end if;
  if v_column is null then
    raise exception 'validation rule % needs a "column"', v_rule using errcode = '22023';
  end if;
  v_type := fstore.batch_column_type(p_batch, v_column);
  if v_type is null then
    raise exception 'validation rule % names column %, which is not in the batch', v_rule, quote_ident(v_column)
      using errcode = '42703';
  end if;
  if v_rule in ('min', 'max') then
    v_value := p_rule->>'value';
    if v_value is null then
      raise exception 'validation rule % on column % needs a "value"', v_rule, v_column using errcode = '22023';
    end if;
    begin
      execute format('select $1::%s', v_type) using v_value;
    exception when others then
      raise exception 'validation rule % on column %: value % is not a valid %', v_rule, v_column,
        quote_literal(v_value), v_type using errcode = '22023';
    end;
  elsif v_rule = 'accepted_values' then
    if jsonb_typeof(p_rule->'values') is distinct from 'array' then
      raise exception 'validation rule accepted_values on column % needs a list "values"', v_column
        using errcode = '22023';
    end if;
    begin
      execute format('select array(select jsonb_array_elements_text($1))::%s[]', v_type) using p_rule->'values';
    exception when others then
      raise exception 'validation rule accepted_values on column %: values % are not all valid %', v_column,
        left((p_rule->'values')::text, 200), v_type using errcode = '22023';
    end;
  elsif v_rule = 'regex' then
    if jsonb_typeof(p_rule->'pattern') is distinct from 'string' then
      raise exception 'validation rule regex on column % needs a string "pattern"', v_column using errcode = '22023';
    end if;
    begin
      perform '' ~ (p_rule->>'pattern');
    exception when others then
      raise exception 'validation rule regex on column %: invalid pattern %', v_column,
        quote_literal(p_rule->>'pattern') using errcode = '22023';
    end;
  end if;
  return v_type;
end $$;
comment on function fstore.check_validation_rule(regclass,jsonb) is
  'Check one rule''s shape and values; returns its column''s type (NULL for row_count_min).';

-- Refuse a validation policy other than strict/warn, or rules that are not a JSON list.
create or replace function fstore.check_validation_config(p_policy text, p_rules jsonb) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_policy not in ('strict', 'warn') then
    raise exception 'invalid validation policy %: use strict or warn', quote_literal(p_policy) using errcode = '22023';
  end if;
  if jsonb_typeof(p_rules) is distinct from 'array' then
    raise exception 'validation rules must be a JSON list of rules, not %', jsonb_typeof(p_rules) using errcode = '22023';
  end if;
end $$;
comment on function fstore.check_validation_config(text,jsonb) is
  'Refuse a validation policy other than strict or warn, or rules that are not a JSON list.';

create or replace function fstore.validate_batch(p_feature_group_id bigint, p_batch regclass, p_rules jsonb,
  p_policy text default 'strict') returns jsonb
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_policy text := coalesce(nullif(btrim(p_policy), ''), 'strict');
  v_rules jsonb := coalesce(p_rules, '[]');
  v_rule jsonb;
  v_type text;
  v_i integer := 0;
  v_exprs text[] := '{}';
  v_counts jsonb;
  v_rows bigint;
  v_failing bigint;
  v_columns text[];
  v_failures jsonb := '[]';
  v_failure jsonb;
begin
  perform fstore.check_validation_config(v_policy, v_rules);
  select * into v_fg from fstore.feature_groups where id = p_feature_group_id;
  if not found then
    raise exception 'feature group % does not exist or is not visible to %', p_feature_group_id, session_user
      using errcode = 'P0002';
  end if;

  -- one scan for the row count and every per-row rule; unique rules group separately
  for v_rule in select * from jsonb_array_elements(v_rules) loop
    v_type := fstore.check_validation_rule(p_batch, v_rule);
    v_exprs := v_exprs || case v_rule->>'rule'
      when 'not_null' then format('count(*) filter (where %I is null)', v_rule->>'column')
      when 'min' then format('count(*) filter (where %I < ($1->%s->>''value'')::%s)', v_rule->>'column', v_i, v_type)
      when 'max' then format('count(*) filter (where %I > ($1->%s->>''value'')::%s)', v_rule->>'column', v_i, v_type)
      when 'accepted_values' then format(
        'count(*) filter (where not (%I = any (array(select v::%s from jsonb_array_elements_text($1->%s->''values'') v))))',
        v_rule->>'column', v_type, v_i)
      when 'regex' then format('count(*) filter (where %I::text !~ ($1->%s->>''pattern''))', v_rule->>'column', v_i)
      else '0' end;
    v_i := v_i + 1;
  end loop;
  execute format('select jsonb_build_array(count(*)%s) from %s',
                 (select coalesce(string_agg(', ' || e, ''), '') from unnest(v_exprs) e), p_batch)
    into v_counts using v_rules;
  v_rows := (v_counts->>0)::bigint;

  v_i := 0;
  for v_rule in select * from jsonb_array_elements(v_rules) loop
    v_failure := null;
    if v_rule->>'rule' = 'row_count_min' then
      if v_rows < (v_rule->>'value')::numeric then
        v_failure := jsonb_build_object('rule', 'row_count_min', 'column', null,
          'failing_rows', ceil((v_rule->>'value')::numeric - v_rows)::bigint,
          'expected', v_rule->'value', 'actual', v_rows);
      end if;
    elsif v_rule->>'rule' = 'unique' then
      v_columns := array(select c from jsonb_array_elements_text(
                     coalesce(v_rule->'columns', jsonb_build_array(v_rule->'column'))) c where c is not null);
      if coalesce(array_length(v_columns, 1), 0) = 0 then
        v_columns := v_fg.entity_keys || v_fg.event_time;
      end if;
      execute format('select coalesce(sum(n - 1), 0) from (select count(*) n from %s group by %s having count(*) > 1) d',
                     p_batch, (select string_agg(format('%I', c), ', ') from unnest(v_columns) c))
        into v_failing;
      if v_failing > 0 then
        v_failure := jsonb_build_object('rule', 'unique', 'column', array_to_string(v_columns, ', '),
                                        'failing_rows', v_failing);
      end if;
    else
      v_failing := (v_counts->>(v_i + 1))::bigint;
      if v_failing > 0 then
        v_failure := jsonb_build_object('rule', v_rule->>'rule', 'column', v_rule->>'column', 'failing_rows', v_failing)
          || (v_rule - 'rule' - 'column');
      end if;
    end if;
    if v_failure is not null then
      v_failures := v_failures || v_failure;
    end if;
    v_i := v_i + 1;
  end loop;

  if jsonb_array_length(v_failures) > 0 and v_policy = 'strict' then
    perform fstore.raise_validation_failure(v_fg, v_failures);
  end if;
  return jsonb_build_object('passed', jsonb_array_length(v_failures) = 0, 'policy', v_policy,
                            'rows', v_rows, 'rules', jsonb_array_length(v_rules), 'failures', v_failures);
end $$;
comment on function fstore.validate_batch(bigint,regclass,jsonb,text) is
  'Check a batch of rows against validation rules (not_null, unique, min, max, accepted_values, regex, row_count_min) with the caller''s rights; strict raises SQLSTATE 23514 naming every failing rule and column, warn returns the failures.';

-- Rules about the batch as a whole (row_count_min, unique) judge the staged rows, before
-- merge or incremental filtering: a re-run of the same data is judged as its first run
-- was (a re-run with nothing new does not fail row_count_min). Rules about single rows
-- (not_null, min, max, accepted_values, regex) judge the rows this commit writes (p_batch,
-- after filtering): rows already stored are not judged again, so a tightened rule
-- applies to new rows. Without filtering (p_batch = p_staging) it is one validate_batch
-- call. Returns {"passed", "policy", "rows" (rows written and checked by the row rules),
-- "staged_rows" (when filtered and batch rules exist), "rules", "failures"}; in strict
-- mode a failure raises SQLSTATE 23514 naming every failing rule and column.
create or replace function fstore.validate_commit(p_feature_group_id bigint, p_staging regclass, p_batch regclass)
returns jsonb language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_batch_rules constant text[] := '{row_count_min,unique}';
  v_fg fstore.feature_groups;
  v_rules jsonb;
  v_policy text;
  v_staged jsonb;
  v_written jsonb;
  v_failures jsonb;
begin
  select * into v_fg from fstore.feature_groups where id = p_feature_group_id;
  if not fstore.has_validation_rules(v_fg.options) then
    return '{}';
  end if;
  v_rules := v_fg.options->'validation';
  v_policy := coalesce(nullif(btrim(v_fg.options->>'validation_policy'), ''), 'strict');
  if p_batch = p_staging or jsonb_typeof(v_rules) <> 'array' then
    -- one relation (or rules validate_batch refuses with its own message)
    return fstore.validate_batch(p_feature_group_id, p_staging, v_rules, v_policy);
  end if;

  -- two parts judged with policy warn, then one verdict over both
  if exists (select 1 from jsonb_array_elements(v_rules) r where r->>'rule' = any(c_batch_rules)) then
    v_staged := fstore.validate_batch(p_feature_group_id, p_staging,
      (select jsonb_agg(r order by i) from jsonb_array_elements(v_rules) with ordinality e(r, i)
        where r->>'rule' = any(c_batch_rules)), 'warn');
  end if;
  v_written := fstore.validate_batch(p_feature_group_id, p_batch,
    coalesce((select jsonb_agg(r order by i) from jsonb_array_elements(v_rules) with ordinality e(r, i)
               where not coalesce(r->>'rule' = any(c_batch_rules), false)), '[]'), 'warn');
  v_failures := coalesce(v_staged->'failures', '[]') || (v_written->'failures');

  if jsonb_array_length(v_failures) > 0 and v_policy = 'strict' then
    perform fstore.raise_validation_failure(v_fg, v_failures);
  end if;
  return jsonb_build_object('passed', jsonb_array_length(v_failures) = 0, 'policy', v_policy,
                            'rows', v_written->'rows', 'rules', jsonb_array_length(v_rules), 'failures', v_failures)
         || case when v_staged is not null then jsonb_build_object('staged_rows', v_staged->'rows') else '{}' end;
end $$;
comment on function fstore.validate_commit(bigint,regclass,regclass) is
  'Validation of one commit against the feature group''s rules (options.validation) and policy (options.validation_policy, default strict), by fstore.validate_batch.';

create or replace function fstore.set_validation_rules(p_feature_group_id bigint, p_rules jsonb, p_policy text)
returns jsonb language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_rules jsonb := coalesce(p_rules, '[]');
  v_rule jsonb;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'change validation rules');
  if jsonb_typeof(v_rules) = 'array' then
    for v_rule in select * from jsonb_array_elements(v_rules) loop
      perform fstore.check_validation_rule(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass, v_rule);
    end loop;
  end if;
  return fstore.store_validation_rules(p_feature_group_id, v_rules, p_policy);
end $$;
comment on function fstore.set_validation_rules(bigint,jsonb,text) is
  'Change the validation rules and policy of an existing feature group version (a Data Owner''s decision; no schema change). SECURITY INVOKER: each rule is checked against the offline table with the caller''s own rights (a rule value is cast to the column''s type here, never in definer code); fstore.store_validation_rules records the plain values. Returns the new options.';

create or replace function fstore.store_validation_rules(p_feature_group_id bigint, p_rules jsonb, p_policy text)
returns jsonb language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_rules jsonb := coalesce(p_rules, '[]');
  v_policy text := coalesce(nullif(btrim(p_policy), ''), 'strict');
  v_rule jsonb;
  v_column text;
  v_options jsonb;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'change validation rules');
  perform fstore.check_validation_config(v_policy, v_rules);
  for v_rule in select * from jsonb_array_elements(v_rules) loop
    if jsonb_typeof(v_rule) is distinct from 'object'
       or coalesce(v_rule->>'rule', '') not in ('not_null', 'unique', 'min', 'max', 'accepted_values', 'regex', 'row_count_min') then
      raise exception 'invalid validation rule %', left(v_rule::text, 200) using errcode = '22023';
    end if;
    for v_column in select c from jsonb_array_elements_text(
                      case when jsonb_typeof(v_rule->'columns') = 'array' then v_rule->'columns'
                           when v_rule ? 'column' then jsonb_build_array(v_rule->'column') else '[]' end) c loop
      if not exists (select 1 from fstore.features f where f.feature_group_id = p_feature_group_id and f.name = v_column)
         and v_column is distinct from v_fg.event_time then
        raise exception 'validation rule % names column %, which is not in feature group %.%', v_rule->>'rule',
          quote_ident(v_column), v_fg.project, v_fg.name using errcode = '42703';
      end if;
    end loop;
    if exists (select 1 from jsonb_each(v_rule) e where e.key in ('value', 'pattern')
                  and jsonb_typeof(e.value) not in ('string', 'number', 'boolean'))
       or (v_rule ? 'values' and (jsonb_typeof(v_rule->'values') <> 'array'
           or exists (select 1 from jsonb_array_elements(v_rule->'values') x where jsonb_typeof(x) in ('object', 'array')))) then
      raise exception 'validation rule % on %: values must be plain JSON values', v_rule->>'rule', v_rule->>'column'
        using errcode = '22023';
    end if;
  end loop;
  update fstore.feature_groups
     set options = options || jsonb_build_object('validation', v_rules, 'validation_policy', v_policy)
   where id = p_feature_group_id
  returning options into v_options;
  perform fstore.audit(v_fg.project, 'set_validation_rules',
    jsonb_build_object('name', v_fg.name, 'version', v_fg.version, 'rules', v_rules, 'policy', v_policy));
  return v_options;
end $$;
comment on function fstore.store_validation_rules(bigint,jsonb,text) is
  'Record validation rules: checked here for their shape only (known rules, columns of the feature group, JSON values), without evaluating anything of the tenant''s.';

grant execute on function
  fstore.has_validation_rules(jsonb),
  fstore.raise_validation_failure(fstore.feature_groups,jsonb),
  fstore.batch_column_type(regclass,text),
  fstore.check_validation_rule(regclass,jsonb),
  fstore.check_validation_config(text,jsonb),
  fstore.validate_batch(bigint,regclass,jsonb,text),
  fstore.validate_commit(bigint,regclass,regclass),
  fstore.set_validation_rules(bigint,jsonb,text),
  fstore.store_validation_rules(bigint,jsonb,text)
  to public;
reset role;
