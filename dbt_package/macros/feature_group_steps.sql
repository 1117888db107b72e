{#- The steps of the feature_group materialization, in the order it runs them. -#}

{#-
  Run as the person behind the certificate (session_user), not as the owner role the
  profile sets: the person holds the Data Owner's rights to read sources (including
  shared projects), create temporary tables and write feature groups, and the commit
  is recorded under that identity. Only table creation is done as the owner role.
  SET LOCAL: dbt's transaction ends with the profile's role back in place.
-#}
{% macro act_as_session_user() %}
  {% call statement('fstore_session') -%}
    set local role none;
    set local time zone 'UTC';
    set local standard_conforming_strings = on
  {%- endcall %}
{% endmacro %}

{#- The model's rows, in a temporary table dropped after the commit (fstore.drop_staging; it
    outlives a transaction on a cluster, see fstore.commit_ddl_first; a failed run's
    transaction takes it along). -#}
{% macro stage_rows(staging, sql) %}
  {% call statement('fstore_stage') -%}
    drop table if exists pg_temp.{{ adapter.quote(staging.identifier) }};
    create temporary table {{ adapter.quote(staging.identifier) }} as (
      {{ sql }}
    )
  {%- endcall %}
{% endmacro %}

{% macro drop_staging(staging) %}
  {% call statement('fstore_unstage') -%}
    drop table pg_temp.{{ adapter.quote(staging.identifier) }}
  {%- endcall %}
{% endmacro %}

{#- True for a distributed group (on a Citus coordinator): the materialization then commits the
    steps before the rows' commit, which runs in a transaction of its own. -#}
{% macro commit_ddl_first(fg_id) %}
  {% set query -%}
    select to_jsonb(fstore.is_distributed(format('%I.%I', g.project, g.offline_table)::regclass))::text
      from fstore.feature_groups g where g.id = {{ fg_id | int }}
  {%- endset %}
  {{ return(fstore.query_json(query)) }}
{% endmacro %}

{#- True on a Citus coordinator with workers (fstore.cluster_has_workers). -#}
{% macro on_cluster() %}
  {{ return(fstore.query_json('select to_jsonb(fstore.cluster_has_workers())::text')) }}
{% endmacro %}

{#- Commit dbt's transaction and open the next one, acting as the person again. After
    adapter.commit() here no BEGIN reached the server (seen: SET LOCAL had no effect), so
    it is sent explicitly. -#}
{% macro commit_and_begin() %}
  {% do adapter.commit() %}
  {% call statement('fstore_begin', auto_begin=False) -%} begin {%- endcall %}
  {% do fstore.act_as_session_user() %}
{% endmacro %}

{#- One JSON value from a query that selects a single text column. -#}
{% macro query_json(query) %}
  {%- set result = run_query(query) -%}
  {%- if result.rows | length == 0 or result.rows[0][0] is none -%}
    {{ return(none) }}
  {%- endif -%}
  {{ return(fromjson(result.rows[0][0])) }}
{% endmacro %}

{#- [{'name', 'type'}] of the staged rows, in column order, types as PostgreSQL spells them. -#}
{% macro staged_columns(staging) %}
  {% set query -%}
    select coalesce(jsonb_agg(jsonb_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
                              order by a.attnum), '[]')::text
      from pg_attribute a
     where a.attrelid = {{ fstore.regclass(staging) }} and a.attnum > 0 and not a.attisdropped
  {%- endset %}
  {{ return(fstore.query_json(query)) }}
{% endmacro %}

{#-
  The catalog entry of this version, or none: fstore.feature_group_json (the catalog row
  and its features [{'name', 'data_type', 'pg_type', 'description', 'position', 'is_key'}]),
  plus 'config_ttl', the model's ttl as PostgreSQL spells an interval.
-#}
{% macro find_feature_group(spec) %}
  {% set query -%}
    select (fstore.feature_group_json(g.id) || jsonb_build_object('config_ttl', (p.s->>'ttl')::interval::text))::text
      from fstore.feature_groups g, (select {{ fstore.jsonb(spec) }} as s) p
     where g.project = p.s->>'project' and g.name = p.s->>'name' and g.version = (p.s->>'version')::int
  {%- endset %}
  {{ return(fstore.query_json(query)) }}
{% endmacro %}

{#-
  Act as the project's owner role (fstore.owner_role) for DDL, and back as the person.
  SET LOCAL: both end with dbt's transaction.
-#}
{% macro become_owner(spec) %}
  {% call statement('fstore_owner') -%}
    select set_config('role', fstore.owner_role(p.s->>'project'), true)
      from (select {{ fstore.jsonb({'project': spec['project']}) }} as s) p
  {%- endcall %}
{% endmacro %}

{% macro become_person() %}
  {% call statement('fstore_person') -%}
    set local role none
  {%- endcall %}
{% endmacro %}

{#- Check the staged columns against the config: keys and event_time present, event_time a timestamp. -#}
{% macro check_columns(spec, columns) %}
  {%- set types = {} -%}
  {%- for column in columns -%}{%- do types.update({column['name']: column['type']}) -%}{%- endfor -%}
  {%- for key in spec['keys'] + [spec['event_time']] -%}
    {%- if key not in types -%}
      {{ exceptions.raise_compiler_error(fstore.display_name(spec) ~ ': the model has no column ' ~ key ~ ' (named in `'
          ~ ('event_time' if key == spec['event_time'] else 'keys') ~ '`); its columns are '
          ~ (types.keys() | list | join(', '))) }}
    {%- endif -%}
  {%- endfor -%}
  {%- if types[spec['event_time']] not in ['timestamp with time zone', 'timestamp without time zone', 'date'] -%}
    {{ exceptions.raise_compiler_error(fstore.display_name(spec) ~ ': event_time column ' ~ spec['event_time'] ~ ' is '
        ~ types[spec['event_time']] ~ '; it must be a timestamptz (a timestamp or date is read as UTC)') }}
  {%- endif -%}
{% endmacro %}

{#- First run of a version: create its tables as the project owner and register it. Returns its id. -#}
{% macro create_feature_group(spec, columns) %}
  {% do fstore.check_columns(spec, columns) %}
  {%- set described = [] -%}
  {%- for column in columns -%}
    {%- do described.append({'name': column['name'], 'type': column['type'],
                             'description': spec['feature_descriptions'].get(column['name'], '')}) -%}
  {%- endfor -%}
  {%- set options = {'validation': spec['validation'], 'validation_policy': spec['validation_policy'],
                     'commit_mode': spec['commit_mode'], 'dbt_node': spec['dbt_node']} -%}
  {%- if spec['hnsw'] -%}{%- do options.update({'hnsw': spec['hnsw']}) -%}{%- endif -%}
  {%- set args = {'spec': spec, 'columns': described, 'options': options} -%}
  {% do fstore.become_owner(spec) %}
  {% set query -%}
    select fstore.create_feature_group(
             p.a->'spec'->>'project', p.a->'spec'->>'name', (p.a->'spec'->>'version')::integer,
             array(select jsonb_array_elements_text(p.a->'spec'->'keys')), p.a->'spec'->>'event_time',
             p.a->'columns', (p.a->'spec'->>'online')::boolean, (p.a->'spec'->>'ttl')::interval,
             p.a->'spec'->>'description', array(select jsonb_array_elements_text(p.a->'spec'->'tags')),
             (p.a->'spec'->>'statistics')::boolean, p.a->'options', p.a->'spec'->'upstream')::text
      from (select {{ fstore.jsonb(args) }} as a) p
  {%- endset %}
  {%- set fg_id = fstore.query_json(query) -%}
  {% do fstore.become_person() %}
  {{ log(fstore.display_name(spec) ~ ': created (feature group ' ~ fg_id ~ ')', info=True) }}
  {{ return(fg_id) }}
{% endmacro %}

{#-
  A later run of an existing version: refuse any change the tables cannot take
  (dropped or retyped column, other keys, event_time or online flag; an added column
  too with on_schema_change='fail', and none is stored with 'ignore'). Returns the
  columns to add as features [{'name', 'type', 'description'}] (append_new_columns).
-#}
{% macro check_schema(spec, existing, columns) %}
  {% do fstore.check_columns(spec, columns) %}
  {%- set changes = [] -%}
  {%- if existing['entity_keys'] != spec['keys'] -%}
    {%- do changes.append('keys changed from ' ~ (existing['entity_keys'] | join(', ')) ~ ' to ' ~ (spec['keys'] | join(', '))) -%}
  {%- endif -%}
  {%- if existing['event_time'] != spec['event_time'] -%}
    {%- do changes.append('event_time changed from ' ~ existing['event_time'] ~ ' to ' ~ spec['event_time']) -%}
  {%- endif -%}
  {%- if existing['online'] != spec['online'] -%}
    {%- do changes.append('online changed from ' ~ existing['online'] ~ ' to ' ~ spec['online']) -%}
  {%- endif -%}
  {%- set staged = {} -%}
  {%- for column in columns if column['name'] != spec['event_time'] -%}
    {%- do staged.update({column['name']: column['type']}) -%}
  {%- endfor -%}
  {%- set known = [] -%}
  {%- for feature in existing['features'] -%}
    {%- do known.append(feature['name']) -%}
    {%- if feature['name'] not in staged -%}
      {%- do changes.append('column ' ~ feature['name'] ~ ' (' ~ feature['pg_type'] ~ ') was dropped') -%}
    {%- elif staged[feature['name']] != feature['pg_type'] -%}
      {%- do changes.append('column ' ~ feature['name'] ~ ' changed type from ' ~ feature['pg_type'] ~ ' to '
                            ~ staged[feature['name']]) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set added = [] -%}
  {%- for name, type in staged.items() if name not in known -%}
    {%- if spec['on_schema_change'] == 'fail' -%}
      {%- do changes.append('column ' ~ name ~ ' (' ~ type ~ ') was added (on_schema_change is fail)') -%}
    {%- elif spec['on_schema_change'] == 'ignore' -%}
      {{ log(fstore.display_name(spec) ~ ': column ' ~ name ~ ' is not stored: on_schema_change is ignore (dbt\'s default);'
             ~ " set on_schema_change='append_new_columns' to add it as a feature", info=True) }}
    {%- else -%}
      {%- do added.append({'name': name, 'type': type,
                           'description': spec['feature_descriptions'].get(name, '')}) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if changes -%}
    {{ exceptions.raise_compiler_error(
         'feature group ' ~ fstore.display_name(spec) ~ ' cannot take this model\'s rows: ' ~ (changes | join('; '))
         ~ '. Its tables are never altered or rebuilt: bump `version` in the model\'s config (to version='
         ~ (spec['version'] + 1) ~ ') to create a new version with new tables; version ' ~ spec['version']
         ~ ' and its data stay readable.') }}
  {%- endif -%}
  {%- if existing['ttl'] != existing['config_ttl'] or existing['statistics_enabled'] != spec['statistics'] -%}
    {{ log(fstore.display_name(spec) ~ ': ttl and statistics are fixed when a version is created; '
           ~ 'the changed config applies to the next version', info=True) }}
  {%- endif -%}
  {{ return(added) }}
{% endmacro %}

{#- Columns new in the model become features of this version (fstore.add_features, as the owner role). -#}
{% macro add_features(fg_id, spec, added) %}
  {% do fstore.become_owner(spec) %}
  {% call statement('fstore_add_features') -%}
    select fstore.add_features({{ fg_id | int }}, {{ fstore.jsonb(added) }})
  {%- endcall %}
  {% do fstore.become_person() %}
  {{ log(fstore.display_name(spec) ~ ': features added: ' ~ (added | map(attribute='name') | join(', '))
         ~ ' (earlier rows read NULL for them)', info=True) }}
{% endmacro %}

{#- Refresh the description, tags, feature descriptions and dbt lineage of an existing version. -#}
{% macro describe_feature_group(fg_id, spec) %}
  {% call statement('fstore_describe') -%}
    select fstore.describe_feature_group({{ fg_id }}, p.s->>'description',
             array(select jsonb_array_elements_text(p.s->'tags')), p.s->'feature_descriptions', p.s->'upstream')
      from (select {{ fstore.jsonb(spec) }} as s) p
  {%- endcall %}
{% endmacro %}

{#-
  Validation rules and policy are the config's: when they differ from what the
  catalog holds for this version, record the new ones (fstore.set_validation_rules);
  fstore.commit_feature_rows then applies them.
-#}
{% macro sync_validation_rules(fg_id, spec, existing) %}
  {%- set options = existing['options'] -%}
  {%- if (options.get('validation') or []) != spec['validation']
         or (options.get('validation_policy') or 'strict') != spec['validation_policy'] -%}
    {% call statement('fstore_validation_rules') -%}
      select fstore.set_validation_rules({{ fg_id }}, p.s->'validation', p.s->>'validation_policy')
        from (select {{ fstore.jsonb(spec) }} as s) p
    {%- endcall %}
    {{ log(fstore.display_name(spec) ~ ': validation rules updated', info=True) }}
  {%- endif -%}
{% endmacro %}

{#- One log line per commit (rows offline and online), and one per validation warning. -#}
{% macro log_commit(spec, commit_id) %}
  {%- if commit_id is none -%}
    {{ log(fstore.display_name(spec) ~ ': nothing new to commit (no commit recorded)', info=True) }}
    {{ return(none) }}
  {%- endif -%}
  {% set query -%}
    select jsonb_build_object('rows', rows, 'online_rows', online_rows, 'validation', validation)::text
      from fstore.commits where id = {{ commit_id | int }}
  {%- endset %}
  {%- set commit = fstore.query_json(query) -%}
  {{ log(fstore.display_name(spec) ~ ': commit ' ~ commit_id ~ ', ' ~ commit['rows'] ~ ' rows offline, '
         ~ commit['online_rows'] ~ ' online', info=True) }}
  {%- for failure in (commit['validation'] or {}).get('failures') or [] -%}
    {{ log(fstore.display_name(spec) ~ ': validation warning: column ' ~ failure['column'] ~ ', rule ' ~ failure['rule']
           ~ ': ' ~ failure['failing_rows'] ~ ' failing rows (recorded with the commit)', info=True) }}
  {%- endfor -%}
{% endmacro %}

{#-
  Sensitive features from the columns' meta (see fstore.feature_group_spec): marked, or
  unmarked, for every version of the group, before the commit (fstore.set_sensitive, a Data
  Owner's call; the new version's tables already carry the marks the group had).
-#}
{% macro sync_sensitive_features(fg_id, spec) %}
  {%- for flag, features in [(true, spec['sensitive']['mark']), (false, spec['sensitive']['unmark'])] -%}
    {%- if features -%}
      {% call statement('fstore_sensitive', fetch_result=True) -%}
        select fstore.set_sensitive(p.s->>'name', array(select jsonb_array_elements_text(p.s->'features')),
                                    {{ 'true' if flag else 'false' }}, p.s->>'project')
          from (select {{ fstore.jsonb({'name': spec['name'], 'project': spec['project'], 'features': features}) }} as s) p
      {%- endcall %}
      {{ log(fstore.display_name(spec) ~ ': sensitive features: '
             ~ (load_result('fstore_sensitive').table.rows[0][0] | join(', ') or 'none'), info=True) }}
    {%- endif -%}
  {%- endfor -%}
{% endmacro %}
