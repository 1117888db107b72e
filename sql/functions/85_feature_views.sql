-- Feature views: one definition of what a model consumes, used both to build its training
-- data and to serve its online vectors. A view names features (each pinned to its group's
-- version), a label, the serving keys, passed (request-time) features and model-dependent
-- transformations. Transformation parameters are fitted by fstore (fstore_builder) on a
-- training dataset's training split and stored with it; the same SQL expressions, built
-- here, transform the training rows and the served vectors: no skew by construction.
--
--   select fstore.create_feature_view('fraud_detection', array['activity:*', 'profile:age'],
--            p_label => array['is_fraud'], p_passed_features => '[{"name": "amount", "type": "double precision"}]',
--            p_transformations => '{"amount": {"fn": "log1p"}, "tx_count_7d": {"fn": "standard_scaler"}}');
--   select fstore.create_feature_view_training_table('fraud_detection', 'spine'::regclass, '{"train": 0.8, "test": 0.2}');
--   select fstore.feature_vector('fraud_detection', '{"account_id": 42}', '{"amount": 120.5}');

set role fstore_control;

create or replace function fstore.check_transformation(p_column text, p_spec jsonb, p_kind text) returns jsonb
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_numeric constant text[] := '{standard_scaler,min_max_scaler,robust_scaler,log1p,bucketize}';
  c_all constant text[] := '{standard_scaler,min_max_scaler,robust_scaler,log1p,bucketize,one_hot,label_encoder}';
  v_fn text := p_spec->>'fn';
  v_edges float8[];
begin
  if jsonb_typeof(p_spec) is distinct from 'object' or not coalesce(v_fn = any(c_all), false) then
    raise exception 'transformation of %: % is not one of %', p_column, coalesce(left(p_spec::text, 80), 'NULL'),
      array_to_string(c_all, ', ') using errcode = '22023';
  end if;
  if v_fn = any(c_numeric) and p_kind <> 'numeric' then
    raise exception 'transformation % of % needs a numeric column, and % is %', v_fn, p_column, p_column, p_kind
      using errcode = '22023', hint = 'encode it with one_hot or label_encoder';
  end if;
  if v_fn = 'bucketize' then
    begin
      v_edges := array(select e::float8 from jsonb_array_elements_text(p_spec->'edges') e);
    exception when others then
      v_edges := null;
    end;
    if v_edges is null or cardinality(v_edges) not between 1 and 100
       or exists (select 1 from generate_subscripts(v_edges, 1) i where i > 1 and v_edges[i] <= v_edges[i - 1]) then
      raise exception 'bucketize of % needs "edges": 1 to 100 numbers in increasing order', p_column using errcode = '22023';
    end if;
    return jsonb_build_object('fn', v_fn, 'edges', to_jsonb(v_edges));
  end if;
  if (select count(*) from jsonb_object_keys(p_spec)) > 1 then
    raise exception 'transformation % of % takes no options', v_fn, p_column using errcode = '22023';
  end if;
  return jsonb_build_object('fn', v_fn);
end $$;
comment on function fstore.check_transformation(text,jsonb,text) is
  'Check a model-dependent transformation of one column (standard_scaler, min_max_scaler, robust_scaler, log1p, bucketize with edges, one_hot, label_encoder) against its kind (numeric or not); returns it normalised.';

create or replace function fstore.transformed_names(p_column text, p_spec jsonb, p_params jsonb) returns text[]
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select case when p_spec->>'fn' = 'one_hot'
              then array(select p_column || '=' || v from jsonb_array_elements_text(p_params->'vocabulary') with ordinality x(v, i)
                          order by i)
              else array[p_column] end
$$;
comment on function fstore.transformed_names(text,jsonb,jsonb) is
  'The model-ready output columns of one view column: itself, or column=value for each value of a one_hot vocabulary.';

-- One float8 literal, exactly (PostgreSQL prints float8 shortest-exact).
create or replace function fstore.float8_sql(p_value jsonb) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select quote_literal((p_value #>> '{}')::float8::text) || '::float8'
$$;
comment on function fstore.float8_sql(jsonb) is 'A JSON number as an exact float8 literal.';

create or replace function fstore.transformed_sql(p_value text, p_kind text, p_spec jsonb, p_params jsonb) returns text[]
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_x text := case when p_kind = 'boolean' then format('((%s)::int)::float8', p_value)
                   when p_kind = 'numeric' then format('(%s)::float8', p_value)
                   else format('(%s)::text', p_value) end;
  v_fn text := p_spec->>'fn';
  v_vocabulary text;
begin
  case coalesce(v_fn, '')
  when '' then
    return array[v_x];
  when 'standard_scaler' then
    return array[format('((%s - %s) / %s)', v_x, fstore.float8_sql(p_params->'mean'), fstore.float8_sql(p_params->'std'))];
  when 'min_max_scaler' then
    return array[format('((%s - %s) / %s)', v_x, fstore.float8_sql(p_params->'min'), fstore.float8_sql(p_params->'range'))];
  when 'robust_scaler' then
    return array[format('((%s - %s) / %s)', v_x, fstore.float8_sql(p_params->'median'), fstore.float8_sql(p_params->'iqr'))];
  when 'log1p' then
    return array[format('(case when %1$s > -1 then ln(1 + %1$s) end)', v_x)];
  when 'bucketize' then
    return array[format('(width_bucket(%s, array[%s]::float8[]))::float8', v_x,
                        (select string_agg(fstore.float8_sql(e), ', ' order by i)
                           from jsonb_array_elements(p_spec->'edges') with ordinality x(e, i)))];
  when 'label_encoder' then
    v_vocabulary := quote_literal(array(select jsonb_array_elements_text(p_params->'vocabulary'))::text);
    return array[format('(case when %1$s is null then null else coalesce(array_position(%2$s::text[], %1$s) - 1, -1) end)::float8',
                        v_x, v_vocabulary)];
  when 'one_hot' then
    return array(select format('(case when %s = %L then 1 else 0 end)::float8', v_x, v)
                   from jsonb_array_elements_text(p_params->'vocabulary') with ordinality x(v, i) order by i);
  end case;
end $$;
comment on function fstore.transformed_sql(text,text,jsonb,jsonb) is
  'The SQL expressions of one column''s model-ready values (float8), given its kind, its transformation and the fitted parameters: the one definition both training data and served vectors use.';

create or replace function fstore.view_column_kind(p_type text) returns text
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select case when to_regtype(p_type) = 'boolean'::regtype then 'boolean'
              else fstore.statistics_kind(to_regtype(p_type)) end
$$;
comment on function fstore.view_column_kind(text) is 'numeric, boolean, temporal, vector or categorical: what a view may do with a column of this type.';

-- Create a feature view (any member of the project: Data Scientists too) over the
-- caller's project's groups and shared ones; every reference is pinned to its group's
-- version, so a new version of a group changes nothing until the view is bumped.
create or replace function fstore.create_feature_view(
  p_name text, p_features text[], p_label text[] default '{}', p_serving_keys text[] default null,
  p_passed_features jsonb default '[]', p_transformations jsonb default '{}', p_description text default '',
  p_tags text[] default '{}', p_options jsonb default '{}', p_version integer default null
) returns fstore.feature_views
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  c_passed_types constant text[] := '{smallint,integer,bigint,real,double precision,numeric,boolean,text}';
  v_project text := fstore.require_session_project();
  v_plan jsonb;
  v_group jsonb;
  v_feature jsonb;
  v_pinned text[] := '{}';
  v_keys text[] := '{}';
  v_key text;
  v_outputs jsonb := '[]';
  v_names text[] := '{}';
  v_passed jsonb;
  v_passed_features jsonb := '[]';
  v_type text;
  v_kind text;
  v_spec jsonb;
  v_transformations jsonb := '{}';
  v_column text;
  v_version integer;
  v_record fstore.feature_views;
begin
  perform fstore.check_feature_group_name(p_name);
  if length(p_name) > 38 then
    raise exception 'feature view name % is too long: at most 38 characters', p_name using errcode = '22023';
  end if;
  v_plan := fstore.resolve_features(p_features, false);
  for v_group in select g from jsonb_array_elements(v_plan) g loop
    foreach v_key in array array(select jsonb_array_elements_text(v_group->'keys')) loop
      if not v_key = any(v_keys) then
        v_keys := v_keys || v_key;
      end if;
    end loop;
    for v_feature in select f from jsonb_array_elements(v_group->'features') f loop
      if not pg_catalog.has_column_privilege(session_user, format('%I.%I', v_group->>'project', v_group->>'table')::regclass,
                                             v_feature->>'name', 'SELECT') then
        raise exception 'permission denied: % may not read %.% (feature %)', session_user, v_group->>'project',
          v_group->>'name', v_feature->>'name' using errcode = '42501';
      end if;
      v_pinned := v_pinned || format('%s%s@%s:%s', case when v_group->>'project' <> v_project then (v_group->>'project') || '.' end,
                                     v_group->>'name', v_group->>'version', v_feature->>'name');
      select f.data_type into v_type from fstore.features f
       where f.feature_group_id = (v_group->>'id')::bigint and f.name = v_feature->>'name';
      v_outputs := v_outputs || jsonb_build_object('name', v_feature->>'output', 'source', 'feature',
                                                   'group', v_group->>'id', 'type', v_type);
      v_names := v_names || (v_feature->>'output');
    end loop;
  end loop;
  if p_serving_keys is not null then
    if exists (select 1 from unnest(v_keys) k where not k = any(p_serving_keys)) then
      raise exception 'serving keys % do not cover the keys % of the view''s feature groups', p_serving_keys, v_keys
        using errcode = '22023';
    end if;
    v_keys := p_serving_keys;
  end if;
  foreach v_key in array v_keys loop
    perform fstore.check_column_name(v_key);
  end loop;
  -- passed (request-time) features: a new column, or one that overrides a stored feature
  if jsonb_typeof(coalesce(p_passed_features, '[]')) <> 'array' then
    raise exception 'passed features must be a list of {"name": ..., "type": ...}' using errcode = '22023';
  end if;
  for v_passed in select p from jsonb_array_elements(coalesce(p_passed_features, '[]')) p loop
    perform fstore.check_column_name(v_passed->>'name');
    v_type := lower(btrim(coalesce(v_passed->>'type', '')));
    if v_type = 'float8' then v_type := 'double precision'; end if;
    if v_type = 'int8' then v_type := 'bigint'; end if;
    if v_type = 'int' or v_type = 'int4' then v_type := 'integer'; end if;
    if not v_type = any(c_passed_types) then
      raise exception 'passed feature % has type %: use one of %', v_passed->>'name', coalesce(quote_literal(v_passed->>'type'), 'NULL'),
        array_to_string(c_passed_types, ', ') using errcode = '22023';
    end if;
    v_passed_features := v_passed_features || jsonb_build_object('name', v_passed->>'name', 'type', v_type);
    if v_passed->>'name' = any(v_keys) or v_passed->>'name' = any(coalesce(p_label, '{}')) then
      raise exception 'passed feature % is a serving key or a label', v_passed->>'name' using errcode = '22023';
    end if;
    if v_passed->>'name' = any(v_names) then
      -- overrides the stored feature when the request gives it
      select jsonb_agg(case when o->>'name' = v_passed->>'name' then o || jsonb_build_object('passed', true) else o end)
        into v_outputs from jsonb_array_elements(v_outputs) o;
    else
      v_outputs := v_outputs || jsonb_build_object('name', v_passed->>'name', 'source', 'passed', 'type', v_type);
      v_names := v_names || (v_passed->>'name');
    end if;
  end loop;
  foreach v_column in array coalesce(p_label, '{}') loop
    perform fstore.check_column_name(v_column);
    if v_column = any(v_names) or v_column = any(v_keys) then
      raise exception 'label % is also a feature or key of the view', v_column using errcode = '22023';
    end if;
  end loop;
  -- transformations, checked against each column's kind; a column without one must be numeric
  if jsonb_typeof(coalesce(p_transformations, '{}')) <> 'object' then
    raise exception 'transformations must map columns to {"fn": ...}' using errcode = '22023';
  end if;
  for v_column in select jsonb_object_keys(coalesce(p_transformations, '{}')) loop
    if not v_column = any(v_names) then
      raise exception 'transformation of %: the view has no feature %', v_column, v_column using errcode = '42703';
    end if;
  end loop;
  select jsonb_agg(o || jsonb_build_object('kind', fstore.view_column_kind(o->>'type'),
                                          'transform', coalesce(p_transformations->(o->>'name'), 'null'::jsonb))
                   order by i)
    into v_outputs from jsonb_array_elements(v_outputs) with ordinality x(o, i);
  for v_feature in select o from jsonb_array_elements(v_outputs) o loop
    v_kind := v_feature->>'kind';
    v_spec := nullif(v_feature->'transform', 'null'::jsonb);
    if v_spec is not null then
      v_transformations := v_transformations || jsonb_build_object(v_feature->>'name',
        fstore.check_transformation(v_feature->>'name', v_spec, v_kind));
    elsif v_kind not in ('numeric', 'boolean') then
      raise exception 'feature % is % (%): a model-ready vector is numeric; give it one_hot or label_encoder',
        v_feature->>'name', v_kind, v_feature->>'type' using errcode = '22023';
    end if;
  end loop;
  select jsonb_agg(o - 'transform' || jsonb_build_object('transform', coalesce(v_transformations->(o->>'name'), 'null'::jsonb))
                   order by i)
    into v_outputs from jsonb_array_elements(v_outputs) with ordinality x(o, i);
  if p_options is not null and (jsonb_typeof(p_options) <> 'object'
     or exists (select 1 from jsonb_object_keys(p_options) k where k <> 'log_rate')
     or coalesce((p_options->>'log_rate')::float8, 0) not between 0 and 1) then
    raise exception 'feature view options: only {"log_rate": a number in [0, 1]}' using errcode = '22023';
  end if;

  perform fstore.lock_project(v_project);
  select coalesce(max(version), 0) + 1 into v_version from fstore.feature_views where project = v_project and name = p_name;
  if p_version is not null then
    if exists (select 1 from fstore.feature_views where project = v_project and name = p_name and version = p_version) then
      raise exception 'feature view % version % exists already', p_name, p_version using errcode = '42710',
        hint = format('the next free version is %s', v_version);
    end if;
    v_version := p_version;
  end if;
  insert into fstore.feature_views (project, name, version, features, plan, label, serving_keys, passed_features,
    transformations, outputs, description, tags, options, client_serial, app_id)
  values (v_project, p_name, v_version, v_pinned, v_plan, coalesce(p_label, '{}'), v_keys,
    v_passed_features, v_transformations, v_outputs, coalesce(p_description, ''), coalesce(p_tags, '{}'),
    coalesce(p_options, '{}'), fstore.session_serial(), fstore.session_app_id())
  returning * into v_record;
  perform fstore.audit(v_project, 'create_feature_view', jsonb_build_object('name', p_name, 'version', v_version,
    'features', to_jsonb(v_pinned)));
  return v_record;
end $$;
comment on function fstore.create_feature_view(text,text[],text[],text[],jsonb,jsonb,text,text[],jsonb,integer) is
  'Create a feature view (any member of the project): feature references (pinned to their groups'' versions), a label, serving keys (default: the groups'' keys), passed request-time features [{name, type}] (one with a feature''s name overrides it when given), transformations {column: {"fn": standard_scaler|min_max_scaler|robust_scaler|log1p|one_hot|label_encoder|bucketize, "edges": [...]}}, description, tags, options {"log_rate": 0.01}. Returns the catalog record; the next version unless p_version.';

-- A feature view the caller can see (latest version by default). One over a project no
-- longer shared with the caller's is refused by name.
create or replace function fstore.find_feature_view(p_name text, p_version integer default null, p_project text default null)
returns fstore.feature_views language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := coalesce(p_project, fstore.require_session_project());
  v_view fstore.feature_views;
  v_source text;
begin
  select * into v_view from fstore.feature_views
   where project = v_project and name = p_name and (p_version is null or version = p_version)
   order by version desc limit 1;
  if not found then
    raise exception 'feature view % does not exist or is not visible to %',
      v_project || '.' || p_name || coalesce(' version ' || p_version, ''), session_user using errcode = 'P0002';
  end if;
  select g->>'project' into v_source from jsonb_array_elements(v_view.plan) g
   where not fstore.session_sees_project(g->>'project') limit 1;
  if v_source is not null then
    raise exception 'permission denied: feature view %.% uses feature groups of project %, which is not shared with %',
      v_project, p_name, v_source, session_user using errcode = '42501';
  end if;
  return v_view;
end $$;
comment on function fstore.find_feature_view(text,integer,text) is
  'A feature view the caller can see (latest version by default); refused with the project''s name when it uses groups of a project no longer shared with the caller.';

-- The training dataset of a feature view: named <view>_v<version>.
create or replace function fstore.feature_view_dataset_name(p_view fstore.feature_views) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select p_view.name || '_v' || p_view.version
$$;
comment on function fstore.feature_view_dataset_name(fstore.feature_views) is
  'The name of a feature view''s training datasets: <view>_v<version> (their versions are the view''s training-dataset versions).';

reset role;

-- Fit a view's transformations on one of its training datasets: fstore computes the
-- parameters itself (means, deviations, min/max, quantiles, vocabularies) from the
-- dataset's training split only (all of it when it has no split), and stores them with
-- that training-dataset version. SECURITY DEFINER as fstore_builder (it reads the stored
-- rows the caller may read): nobody records parameters fstore did not compute.
create or replace function fstore.fit_feature_view(p_view_id bigint, p_training_dataset_id bigint)
returns fstore.feature_view_fits
language plpgsql volatile security definer
set search_path = pg_catalog, fstore, pg_temp set row_security = on
as $$
declare
  c_max_vocabulary constant integer := 1000;
  v_view fstore.feature_views;
  v_td fstore.training_datasets;
  v_fit fstore.feature_view_fits;
  v_table text;
  v_where text := '';
  v_output jsonb;
  v_fn text;
  v_col text;
  v_params jsonb := '{}';
  v_values jsonb;
  v_rows bigint;
begin
  select * into v_view from fstore.feature_views where id = p_view_id;
  if not found or not fstore.session_sees_project(v_view.project) then
    raise exception 'feature view % does not exist or is not visible to %', p_view_id, session_user using errcode = 'P0002';
  end if;
  v_view := fstore.find_feature_view(v_view.name, v_view.version, v_view.project);
  select * into v_fit from fstore.feature_view_fits where feature_view_id = p_view_id and training_dataset_id = p_training_dataset_id;
  if found then
    return v_fit;  -- fitted once: parameters never change
  end if;
  select * into v_td from fstore.training_datasets where id = p_training_dataset_id;
  if not found or v_td.project <> v_view.project or not fstore.session_sees_project(v_td.project) then
    raise exception 'training dataset % does not exist or is not visible to %', p_training_dataset_id, session_user
      using errcode = 'P0002';
  end if;
  if v_td.features is distinct from v_view.features or v_td.label is distinct from v_view.label
     or v_td.name <> fstore.feature_view_dataset_name(v_view) then
    raise exception 'training dataset %.% version % was not built from feature view % version %', v_td.project, v_td.name,
      v_td.version, v_view.name, v_view.version using errcode = '22023';
  end if;
  if exists (select 1 from jsonb_array_elements(v_view.outputs) o
              where o->>'source' = 'passed' and not (o->>'name' = any(v_td.spine_columns))) then
    raise exception 'training dataset %.% has no column for a passed feature of view %: the spine must carry them',
      v_td.project, v_td.name, v_view.name using errcode = '42703';
  end if;
  v_table := format('%I.%I', v_td.project, v_td.table_name);
  if v_td.split is not null then
    if not v_td.split ? 'train' then
      raise exception 'training dataset %.% has no train split to fit on (its splits: %)', v_td.project, v_td.name,
        (select string_agg(k, ', ') from jsonb_object_keys(v_td.split) k) using errcode = '22023';
    end if;
    v_where := ' where split = ''train''';
  end if;
  -- parameters show a column's values: only of columns the caller may read (not a sensitive one)
  perform fstore.check_readable_columns(v_table::regclass, array(select o->>'name' from jsonb_array_elements(v_view.outputs) o));
  execute format('select count(*) from %s%s', v_table, v_where) into v_rows;
  for v_output in select o from jsonb_array_elements(v_view.outputs) o where o->'transform' <> 'null'::jsonb loop
    v_fn := v_output->'transform'->>'fn';
    v_col := v_output->>'name';
    if v_fn = 'standard_scaler' then
      execute format('select jsonb_build_object(''mean'', avg(%1$I::float8), ''std'', coalesce(nullif(stddev_pop(%1$I::float8), 0), 1)) from %2$s%3$s',
                     v_col, v_table, v_where) into v_values;
    elsif v_fn = 'min_max_scaler' then
      execute format('select jsonb_build_object(''min'', min(%1$I::float8), ''range'', coalesce(nullif(max(%1$I::float8) - min(%1$I::float8), 0), 1)) from %2$s%3$s',
                     v_col, v_table, v_where) into v_values;
    elsif v_fn = 'robust_scaler' then
      execute format('select jsonb_build_object(''median'', percentile_cont(0.5) within group (order by %1$I::float8), ''iqr'','
                     ' coalesce(nullif(percentile_cont(0.75) within group (order by %1$I::float8)'
                     ' - percentile_cont(0.25) within group (order by %1$I::float8), 0), 1)) from %2$s%3$s',
                     v_col, v_table, v_where) into v_values;
    elsif v_fn in ('one_hot', 'label_encoder') then
      execute format('select jsonb_build_object(''vocabulary'', coalesce(jsonb_agg(v order by v), ''[]'')) '
                     'from (select distinct %1$I::text as v from %2$s%3$s) d where v is not null',
                     v_col, v_table, v_where) into v_values;
      if jsonb_array_length(v_values->'vocabulary') > c_max_vocabulary then
        raise exception '% of % would have % values (more than %): bucketize it or choose another encoding', v_fn, v_col,
          jsonb_array_length(v_values->'vocabulary'), c_max_vocabulary using errcode = '22023';
      end if;
    else
      continue;  -- log1p, bucketize: nothing to fit
    end if;
    if v_values->'mean' = 'null'::jsonb or v_values->'min' = 'null'::jsonb or v_values->'median' = 'null'::jsonb then
      raise exception 'cannot fit % of %: the training split has no values of it', v_fn, v_col using errcode = '22023';
    end if;
    v_params := v_params || jsonb_build_object(v_col, v_values);
  end loop;
  insert into fstore.feature_view_fits (feature_view_id, training_dataset_id, params, fitted_on, fitted_rows)
  values (p_view_id, p_training_dataset_id, v_params, case when v_td.split is not null then 'train' end, v_rows)
  returning * into v_fit;
  perform fstore.audit(v_view.project, 'fit_feature_view', jsonb_build_object('name', v_view.name, 'version', v_view.version,
    'training_dataset', v_td.name, 'training_dataset_version', v_td.version, 'rows', v_rows));
  return v_fit;
end $$;
comment on function fstore.fit_feature_view(bigint,bigint) is
  'Fit a feature view''s transformations on one of its training datasets, on the training split only (the whole dataset when it has no split), and store the parameters with that training-dataset version. Computed by fstore (SECURITY DEFINER, fstore_builder) from the rows the caller may read; fitted once.';
alter function fstore.fit_feature_view(bigint, bigint) owner to fstore_builder;

set role fstore_control;

-- The fitted parameters a view serves with: those of training-dataset version p_version
-- (the latest fitted one by default).
-- Fitted parameters describe the rows they were fitted on (a vocabulary lists their values,
-- min and max are two of them): a reader bound by a row policy of the training dataset
-- sees only fits they made themselves (over the rows they may read), as with statistics.
create or replace function fstore.fit_visible(p_training_dataset_id bigint, p_fitted_by text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select p_fitted_by = session_user::text
      or coalesce((select not fstore.session_bound_by_policies(t.project, c.oid)
                     from fstore.training_datasets t
                     join pg_catalog.pg_namespace n on n.nspname = t.project
                     join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = t.table_name
                    where t.id = p_training_dataset_id), false)
$$;
comment on function fstore.fit_visible(bigint,text) is
  'Whether the session may see a fit: one it made, or one over a training dataset no row policy binds it on (fitted parameters show what the rows hold).';

create or replace function fstore.feature_view_fit(p_view fstore.feature_views, p_version integer default null)
returns fstore.feature_view_fits language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fit fstore.feature_view_fits;
begin
  perform fstore.check_feature_view_readable(p_view);  -- a sensitive feature of the view: refused by name
  select f.* into v_fit from fstore.feature_view_fits f join fstore.training_datasets t on t.id = f.training_dataset_id
   where f.feature_view_id = p_view.id and (p_version is null or t.version = p_version)
   order by t.version desc limit 1;
  if not found then
    raise exception 'feature view % version % has no fitted training dataset%: build one (fv.create_training_dataset, or fstore.create_feature_view_training_table)',
      p_view.name, p_view.version, coalesce(' version ' || p_version, '') using errcode = 'P0002',
      hint = 'fits over rows a row policy hides from you are not shown to you; yours are';
  end if;
  return v_fit;
end $$;
comment on function fstore.feature_view_fit(fstore.feature_views,integer) is
  'The fitted transformation parameters of a view for one of its training-dataset versions (the latest by default), or an error saying how to make one.';

-- The view's model-ready columns, in its order, with the fitted parameters.
create or replace function fstore.feature_view_columns(p_view fstore.feature_views, p_params jsonb) returns text[]
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce(array_agg(n order by i, j), '{}')
    from jsonb_array_elements(p_view.outputs) with ordinality o(out, i),
         unnest(fstore.transformed_names(out->>'name', nullif(out->'transform', 'null'::jsonb), p_params->(out->>'name')))
           with ordinality t(n, j)
$$;
comment on function fstore.feature_view_columns(fstore.feature_views,jsonb) is
  'The names of a view''s model-ready columns, in the view''s fixed order (one_hot columns expand to column=value).';

-- The expressions of the view's model-ready columns, each over p_alias(column).
create or replace function fstore.feature_view_expressions(p_view fstore.feature_views, p_params jsonb, p_source jsonb)
returns text[] language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce(array_agg(e order by i, j), '{}')
    from jsonb_array_elements(p_view.outputs) with ordinality o(out, i),
         unnest(fstore.transformed_sql(p_source->>(out->>'name'), out->>'kind', nullif(out->'transform', 'null'::jsonb),
                                       p_params->(out->>'name'))) with ordinality t(e, j)
$$;
comment on function fstore.feature_view_expressions(fstore.feature_views,jsonb,jsonb) is
  'The SQL of a view''s model-ready columns, in order, each over the expression p_source gives for its column.';

-- The training data of a view: its model-ready columns (in order), label and split, from
-- one of its stored training datasets, in spine order.
create or replace function fstore.feature_view_training_sql(p_name text, p_version integer default null,
  p_training_dataset_version integer default null, p_with_keys boolean default false)
returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_view fstore.feature_views := fstore.find_feature_view(p_name, p_version);
  v_fit fstore.feature_view_fits := fstore.feature_view_fit(v_view, p_training_dataset_version);
  v_td fstore.training_datasets;
  v_source jsonb;
  v_select text[];
begin
  select * into v_td from fstore.training_datasets where id = v_fit.training_dataset_id;
  select jsonb_object_agg(o->>'name', format('t.%I', o->>'name')) into v_source from jsonb_array_elements(v_view.outputs) o;
  select array_agg(format('%s as %I', e, n) order by i) into v_select
    from unnest(fstore.feature_view_expressions(v_view, v_fit.params, v_source),
                fstore.feature_view_columns(v_view, v_fit.params)) with ordinality x(e, n, i);
  if p_with_keys then
    v_select := array(select format('t.%I', k) from unnest(v_view.serving_keys) k)
             || format('t.%I', v_td.event_time_column) || v_select;
  end if;
  v_select := v_select || array(select format('t.%I', l) from unnest(v_view.label) l);
  if v_td.split is not null then
    v_select := v_select || 't.split'::text;
  end if;
  return format('select %s from %I.%I t order by t._row', array_to_string(v_select, ', '), v_td.project, v_td.table_name);
end $$;
comment on function fstore.feature_view_training_sql(text,integer,integer,boolean) is
  'The query of a view''s training data: its model-ready columns in order (transformed with the parameters fitted on the training split), then label and split, from one of its training datasets (the latest fitted by default), in spine order.';

-- The query that serves a view's vectors, with the parameters of one fitted training
-- dataset: scalar parameters $1.. (serving keys, then passed features, as text) for one
-- entity, or (p_batch) $1 a JSON array of {key..., passed...} objects for many, in order.
-- Returns vector float8[] (the model-ready columns in order), found (every group had
-- the entity, within its TTL) and, for a batch, _i (the position in the request).
create or replace function fstore.request_values(p_request jsonb, p_key text) returns text[]
language plpgsql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
begin
  return array(select e->>p_key from jsonb_array_elements(p_request) e);
end $$;
comment on function fstore.request_values(jsonb,text) is
  'The values of p_key in a JSON array of request objects, as text (cast to the key type by the caller). Immutable and not inlined, so on a Citus coordinator a batch lookup''s key list is folded into a constant and prunes the distributed online tables to the shards holding the keys.';

create or replace function fstore.feature_vector_sql(p_view fstore.feature_views, p_params jsonb, p_batch boolean)
returns text language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_inputs text[] := '{}';
  v_types text[] := '{}';
  v_i integer := 0;
  v_from text;
  v_joins text := '';
  v_found text[] := '{}';
  v_source jsonb := '{}';
  v_group jsonb;
  v_alias text;
  v_output jsonb;
  v_name text;
  v_key text;
  v_conds text[];
  v_key_type text;
begin
  -- the request: serving keys (typed as in the first group that has them), then passed features
  foreach v_key in array p_view.serving_keys loop
    select format_type(a.atttypid, a.atttypmod) into v_key_type
      from jsonb_array_elements(p_view.plan) g
      join pg_catalog.pg_attribute a on a.attrelid = format('%I.%I', g->>'project', g->>'table')::regclass and a.attname = v_key
     limit 1;
    v_inputs := v_inputs || v_key;
    v_types := v_types || coalesce(v_key_type, 'text');
  end loop;
  for v_output in select o from jsonb_array_elements(p_view.passed_features) o loop
    v_inputs := v_inputs || (v_output->>'name');
    v_types := v_types || (select lower(btrim(v_output->>'type')));
  end loop;
  if p_batch then
    v_from := format('rows from (jsonb_to_recordset($1::jsonb) as (%s)) with ordinality as r(%s, _i)',
      (select string_agg(format('%I %s', n, t), ', ' order by i) from unnest(v_inputs, v_types) with ordinality x(n, t, i)),
      (select string_agg(format('%I', n), ', ' order by i) from unnest(v_inputs) with ordinality x(n, i)));
  else
    v_from := format('(select %s) r', (select string_agg(format('$%s::%s as %I', i, t, n), ', ' order by i)
                                          from unnest(v_inputs, v_types) with ordinality x(n, t, i)));
  end if;
  -- each group's online table, by its keys, within its TTL
  for v_group in select g from jsonb_array_elements(p_view.plan) g loop
    v_i := v_i + 1;
    v_alias := 'g' || v_i;
    if v_group->>'online_table' is null then
      raise exception 'feature view % serves from online tables, and feature group %.%@% has none', p_view.name,
        v_group->>'project', v_group->>'name', v_group->>'version' using errcode = '22023';
    end if;
    select array_agg(format('%I.%I = r.%I', v_alias, k, k)) into v_conds from jsonb_array_elements_text(v_group->'keys') k;
    if p_batch and fstore.is_distributed(format('%I.%I', v_group->>'project', v_group->>'online_table')::regclass) then
      -- Citus pulls a distributed table joined to a function scan whole to the coordinator
      -- (every shard's seq scan per batch); the request's keys as a constant list prune it
      -- to their shards and index probes
      select v_conds || array_agg(format('%I.%I = any(fstore.request_values($1::jsonb, %L)::%s[])', v_alias, k, k,
                                         format_type(a.atttypid, a.atttypmod)))
        into v_conds
        from jsonb_array_elements_text(v_group->'keys') k
        join pg_catalog.pg_attribute a
          on a.attrelid = format('%I.%I', v_group->>'project', v_group->>'online_table')::regclass and a.attname = k;
    end if;
    if v_group->>'ttl' is not null then
      v_conds := v_conds || format('%I.%I >= now() - %L::interval', v_alias, v_group->>'event_time', v_group->>'ttl');
    end if;
    v_joins := v_joins || format(' left join %I.%I %I on %s', v_group->>'project', v_group->>'online_table', v_alias,
                                 array_to_string(v_conds, ' and '));
    v_found := v_found || format('(%I.%I is not null)', v_alias, (v_group->'keys')->>0);
    for v_output in select f from jsonb_array_elements(v_group->'features') f loop
      v_source := v_source || jsonb_build_object(v_output->>'output', format('%I.%I', v_alias, v_output->>'name'));
    end loop;
  end loop;
  -- passed features: their own column, or the request's value over the stored one
  for v_output in select o from jsonb_array_elements(p_view.outputs) o loop
    v_name := v_output->>'name';
    if v_output->>'source' = 'passed' then
      v_source := v_source || jsonb_build_object(v_name, format('r.%I', v_name));
    elsif coalesce((v_output->>'passed')::boolean, false) then
      v_source := v_source || jsonb_build_object(v_name, format('coalesce(r.%I, %s)', v_name, v_source->>v_name));
    end if;
  end loop;
  return format('select %sarray[%s]::float8[] as vector, %s as found from %s%s%s',
                case when p_batch then 'r._i, ' else '' end,
                array_to_string(fstore.feature_view_expressions(p_view, p_params, v_source), ', '),
                array_to_string(v_found, ' and '), v_from, v_joins,
                case when p_batch then ' order by r._i' else '' end);
end $$;
comment on function fstore.feature_vector_sql(fstore.feature_views,jsonb,boolean) is
  'The query that serves a view''s model-ready vectors from its groups'' online tables with fitted parameters: scalar parameters (serving keys, then passed features, as text) for one entity, or one JSON array of objects for a batch (rows in request order). Returns vector float8[] and found.';

-- A view's model-ready vector for one entity, from SQL (any language): the same columns,
-- order and transformations as its training data. NULLs where the entity is missing (or
-- an error with p_strict). Sampled into fstore.served_vectors when the view logs.
create or replace function fstore.feature_vector(
  p_view text, p_keys jsonb, p_passed jsonb default '{}', p_version integer default null,
  p_training_dataset_version integer default null, p_strict boolean default false
) returns float8[] language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_view fstore.feature_views := fstore.find_feature_view(p_view, p_version);
  v_fit fstore.feature_view_fits := fstore.feature_view_fit(v_view, p_training_dataset_version);
  v_vector float8[];
  v_found boolean;
  v_key text;
begin
  if jsonb_typeof(p_keys) is distinct from 'object' then
    raise exception 'keys must be an object {"key": value}' using errcode = '22023';
  end if;
  foreach v_key in array v_view.serving_keys loop
    if not p_keys ? v_key then
      raise exception 'feature view % needs the serving key % (keys: %)', v_view.name, v_key, array_to_string(v_view.serving_keys, ', ')
        using errcode = '22023';
    end if;
  end loop;
  execute format('select q.vector, q.found from (%s) q', fstore.feature_vector_sql(v_view, v_fit.params, true))
    into v_vector, v_found
    using jsonb_build_array(coalesce(p_passed, '{}') || p_keys);
  if p_strict and not v_found then
    raise exception 'feature view %: no online row for % in every group (or older than its TTL)', v_view.name, p_keys
      using errcode = 'P0002';
  end if;
  if coalesce((v_view.options->>'log_rate')::float8, 0) > random() then
    perform fstore.log_served_vectors(v_view.id, v_fit.training_dataset_id,
      jsonb_build_array(jsonb_build_object('keys', p_keys, 'passed', coalesce(p_passed, '{}'), 'vector', to_jsonb(v_vector),
                                           'found', v_found)));
  end if;
  return v_vector;
end $$;
comment on function fstore.feature_vector(text,jsonb,jsonb,integer,integer,boolean) is
  'A feature view''s model-ready vector for one entity, from SQL: select fstore.feature_vector(''fraud_detection'', ''{"account_id": 42}'', ''{"amount": 120.5}''). The same columns, order and transformations as its training data (fitted parameters of its latest, or the given, training-dataset version); NULLs where the entity is missing, or an error when p_strict.';

-- Log served vectors of a view: [{keys, passed, vector, found}], with who served them.
create or replace function fstore.log_served_vectors(p_view_id bigint, p_training_dataset_id bigint, p_served jsonb)
returns integer language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_view fstore.feature_views;
  v_count integer;
begin
  select * into v_view from fstore.feature_views where id = p_view_id;
  if not found or not fstore.session_sees_project(v_view.project) then
    raise exception 'feature view % does not exist or is not visible to %', p_view_id, session_user using errcode = 'P0002';
  end if;
  if v_view.project is distinct from fstore.session_project() then
    raise exception 'permission denied: only members of project % log the vectors its views serve', v_view.project
      using errcode = '42501';
  end if;
  insert into fstore.served_vectors (feature_view_id, training_dataset_id, keys, passed, vector, found, client_serial, app_id)
  select p_view_id, p_training_dataset_id, s->'keys', coalesce(s->'passed', '{}'),
         array(select jsonb_array_elements_text(s->'vector'))::float8[], coalesce((s->>'found')::boolean, false),
         fstore.session_serial(), fstore.session_app_id()
    from jsonb_array_elements(p_served) s;
  get diagnostics v_count = row_count;
  return v_count;
end $$;
comment on function fstore.log_served_vectors(bigint,bigint,jsonb) is
  'Record served vectors of a feature view ([{keys, passed, vector, found}]) with the session''s identity and application: the served-vector log (opt-in per view, sampled by its log_rate).';

-- Build a view's training dataset (<view>_v<version>, the builder's point-in-time join of
-- the spine with the view's pinned features and label) and fit its transformations on the
-- training split. Returns the training dataset's catalog record.
create or replace function fstore.create_feature_view_training_table(
  p_view text, p_spine regclass, p_split jsonb default null, p_seed bigint default 0, p_version integer default null,
  p_event_time_column text default 'event_time', p_description text default ''
) returns fstore.training_datasets language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_view fstore.feature_views := fstore.find_feature_view(p_view, p_version);
  v_td fstore.training_datasets;
  v_keys jsonb;
begin
  -- the spine carries the passed features (their values at training time); an error names a missing one
  perform fstore.spine_column_type(p_spine, o->>'name', 'a passed feature of the view')
     from jsonb_array_elements(v_view.outputs) o where o->>'source' = 'passed';
  v_td := fstore.create_training_table(fstore.feature_view_dataset_name(v_view), p_spine, v_view.features,
    p_event_time_column, null, false, null, v_view.label, p_split, p_seed,
    coalesce(nullif(p_description, ''), format('training data of feature view %s version %s', v_view.name, v_view.version)),
    p_new_version => true);  -- each build of a view is the next version of its dataset
  perform fstore.fit_feature_view(v_view.id, v_td.id);
  return v_td;
end $$;
comment on function fstore.create_feature_view_training_table(text,regclass,jsonb,bigint,integer,text,text) is
  'Build a feature view''s training dataset (<view>_v<version>: the point-in-time join of the spine with the view''s features and label, stored by fstore''s builder; the spine carries the passed features) and fit its transformations on the training split. Returns the training dataset''s record.';

-- How widely a project's features are used: per feature, the views and training datasets
-- that use it, the projects using it through shares (their dataset names only) and when
-- a view over it last served. SECURITY DEFINER: it reads other projects' catalog rows
-- about this project's groups, names only.
create or replace function fstore.feature_usage(p_group text default null)
returns table (feature_group text, version integer, feature text, views text[], training_datasets text[],
               partner_projects text[], partner_training_datasets text[], last_served timestamptz)
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  with me as (select fstore.require_session_project() as project),
  features as (
    select g.id, g.name, g.version, f.name as feature
      from fstore.feature_groups g join fstore.features f on f.feature_group_id = g.id and not f.is_key, me
     where g.project = me.project and (p_group is null or g.name = p_group)
  ),
  view_uses as (
    select (p->>'id')::bigint as group_id, pf->>'name' as feature, v.project, v.name || '@' || v.version as view, v.id as view_id
      from fstore.feature_views v, jsonb_array_elements(v.plan) p, jsonb_array_elements(p->'features') pf
  ),
  dataset_uses as (
    select (g->>'id')::bigint as group_id, gf->>'name' as feature, t.project, t.name || '@' || t.version as dataset
      from fstore.training_datasets t, jsonb_array_elements(t.feature_groups) g,
           jsonb_array_elements(coalesce(g->'features', '[]')) gf
  )
  select f.name, f.version, f.feature,
         coalesce(array(select distinct u.view from view_uses u, me where u.group_id = f.id and u.feature = f.feature
                          and u.project = me.project order by 1), '{}'),
         coalesce(array(select distinct d.dataset from dataset_uses d, me where d.group_id = f.id and d.feature = f.feature
                          and d.project = me.project order by 1), '{}'),
         coalesce(array(select distinct x.project from (select project from view_uses where group_id = f.id and feature = f.feature
                                                        union select project from dataset_uses where group_id = f.id and feature = f.feature) x, me
                         where x.project <> me.project order by 1), '{}'),
         coalesce(array(select distinct d.project || '.' || d.dataset from dataset_uses d, me
                         where d.group_id = f.id and d.feature = f.feature and d.project <> me.project order by 1), '{}'),
         (select max(s.served_at) from fstore.served_vectors s join view_uses u on u.view_id = s.feature_view_id
           where u.group_id = f.id and u.feature = f.feature)
    from features f
   order by f.name, f.version, f.feature
$$;
comment on function fstore.feature_usage(text) is
  'Per feature of the caller''s project (one group, or all): the feature views and training datasets of the project that use it, the projects using it through shares with their training datasets'' names (no data), and when a view over it last served.';

-- Training/serving skew: per model-ready column of a view, the distribution of its
-- training split (transformed with the fitted parameters) against the vectors the view
-- served (fstore.served_vectors, from p_from to p_to). Readable by those who read the log
-- (the view's project's Data Owners).
create or replace function fstore.feature_view_drift(
  p_view text, p_version integer default null, p_training_dataset_version integer default null,
  p_from timestamptz default null, p_to timestamptz default null, p_bins integer default 10,
  p_threshold float8 default 0.2
) returns table (
  "column" text, baseline_rows bigint, current_rows bigint, baseline_null_rate float8, current_null_rate float8,
  baseline_mean float8, current_mean float8, psi float8, js_distance float8, ks float8, drifted boolean
) language plpgsql stable set search_path = pg_catalog, fstore, pg_temp set work_mem = '256MB' set jit = off as $$
declare
  v_view fstore.feature_views := fstore.find_feature_view(p_view, p_version);
  v_fit fstore.feature_view_fits := fstore.feature_view_fit(v_view, p_training_dataset_version);
  v_td fstore.training_datasets;
  v_training text;
  v_columns text[];
  v_fractions float8[];
  v_windows text;
  v_i integer;
begin
  if p_bins is null or p_bins < 2 or p_bins > 1000 then
    raise exception 'bins must be between 2 and 1000, not %', coalesce(p_bins::text, 'NULL') using errcode = '22023';
  end if;
  select * into v_td from fstore.training_datasets t where t.id = v_fit.training_dataset_id;
  select array_agg(i::float8 / p_bins order by i) into v_fractions from generate_series(1, p_bins - 1) i;
  v_training := fstore.feature_view_training_sql(v_view.name, v_view.version, v_td.version);
  v_columns := fstore.feature_view_columns(v_view, v_fit.params);
  for v_i in 1 .. cardinality(v_columns) loop
    "column" := v_columns[v_i];
    v_windows := format(
      'base as (select t.%1$I as v from (%2$s) t%3$s),
       cur as (select s.vector[%4$s] as v from fstore.served_vectors s
                where s.feature_view_id = %5$s and s.training_dataset_id = %6$s
                  and ($3::timestamptz is null or s.served_at >= $3) and ($4::timestamptz is null or s.served_at < $4))',
      v_columns[v_i], v_training, case when v_td.split is not null then ' where t.split = ''train''' else '' end,
      v_i, v_view.id, v_td.id);
    execute 'with ' || v_windows || ' select (select count(*) from base), (select count(*) from cur) where $1 is not null and $2 is not null'
      into baseline_rows, current_rows using v_fractions, 0.0001::float8, p_from, p_to;
    if current_rows = 0 then
      raise exception 'feature view % has served no logged vectors with training dataset version % in that window%',
        v_view.name, v_td.version,
        case when coalesce((v_view.options->>'log_rate')::float8, 0) = 0
             then ' (it does not log: give it options {"log_rate": ...})' else '' end using errcode = '22023';
    end if;
    execute 'with ' || v_windows || ',' || fstore.numeric_drift_sql(1, 2)
      into baseline_null_rate, current_null_rate, baseline_mean, current_mean, psi, js_distance, ks
      using v_fractions, 0.0001::float8, p_from, p_to;
    drifted := psi >= p_threshold;
    return next;
  end loop;
end $$;
comment on function fstore.feature_view_drift(text,integer,integer,timestamp with time zone,timestamp with time zone,integer,double precision) is
  'Training/serving skew of a feature view: per model-ready column, its training split (transformed with the fitted parameters) against the vectors the view served and logged (from p_from to p_to): rows, null rates, means, PSI, Jensen-Shannon distance and KS, the same measures as fstore.feature_drift; drifted when psi >= p_threshold. The view''s project''s Data Owners read the log.';

grant execute on function
  fstore.feature_view_drift(text,integer,integer,timestamp with time zone,timestamp with time zone,integer,double precision),
  fstore.check_transformation(text,jsonb,text), fstore.transformed_names(text,jsonb,jsonb), fstore.float8_sql(jsonb),
  fstore.transformed_sql(text,text,jsonb,jsonb), fstore.view_column_kind(text),
  fstore.create_feature_view(text,text[],text[],text[],jsonb,jsonb,text,text[],jsonb,integer),
  fstore.find_feature_view(text,integer,text), fstore.feature_view_dataset_name(fstore.feature_views),
  fstore.fit_visible(bigint,text),
  fstore.feature_view_fit(fstore.feature_views,integer), fstore.feature_view_columns(fstore.feature_views,jsonb),
  fstore.feature_view_expressions(fstore.feature_views,jsonb,jsonb),
  fstore.feature_view_training_sql(text,integer,integer,boolean),
  fstore.request_values(jsonb,text),
  fstore.feature_vector_sql(fstore.feature_views,jsonb,boolean),
  fstore.feature_vector(text,jsonb,jsonb,integer,integer,boolean),
  fstore.log_served_vectors(bigint,bigint,jsonb),
  fstore.create_feature_view_training_table(text,regclass,jsonb,bigint,integer,text,text),
  fstore.feature_usage(text)
  to public;

reset role;

grant execute on function fstore.fit_feature_view(bigint, bigint) to public;
-- the builder records what it fitted, and audits it
grant execute on function fstore.audit(text, text, jsonb) to fstore_builder;
