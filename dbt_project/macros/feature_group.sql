{#-
  The `feature_group` materialization: each `dbt run` of a model is one commit of
  a feature group version, in dbt's single transaction.

    {{ config(materialized='feature_group', keys=['account_id'], event_time='event_time',
              version=1, online=true, commit_mode='merge') }}

  Steps (each a macro in feature_group_*.sql, or a SQL function in sql/):
    1. read and check the model's config                         fstore_feature_group_spec
    2. act as the person (the certificate's role), times in UTC  fstore_act_as_session_user
    3. stage the model's rows in a temporary table               fstore_stage_rows
    4. first run of this version: create its tables as the
       project owner and register it (fstore.create_feature_group);
       later runs: refuse a breaking schema change, add new
       columns as features, refresh the description, tags,
       lineage and validation rules                               fstore_create / fstore_check_schema
    5. commit: validation (fstore.validate_batch: strict aborts
       the run), offline append, online newer-only upsert, commit
       record and statistics (fstore.commit_feature_rows)        statement 'main'
  The tables are never dropped or recreated (row-level security and policies live
  on them); a breaking change needs a new `version`, which gets new tables.
-#}
{% materialization feature_group, adapter='postgres' %}

  {%- set spec = fstore_feature_group_spec(model) -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set staging = make_temp_relation(target_relation, '__fstore_stage') -%}

  {%- if should_full_refresh() -%}
    {{ log(fstore_name(spec) ~ ': --full-refresh is ignored; feature group tables are never rebuilt '
           ~ '(bump `version` to start a new version)', info=True) }}
  {%- endif -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% do fstore_act_as_session_user() %}
  {% do fstore_stage_rows(staging, sql) %}
  {%- set columns = fstore_staged_columns(staging) -%}
  {%- set existing = fstore_find_feature_group(spec) -%}

  {% if existing is none %}
    {%- set fg_id = fstore_create_feature_group(spec, columns) -%}
  {% else %}
    {%- set added = fstore_check_schema(spec, existing, columns) -%}
    {%- set fg_id = existing['id'] -%}
    {% if added %}{% do fstore_add_features(fg_id, spec, added) %}{% endif %}
    {% do fstore_describe_feature_group(fg_id, spec) %}
    {% do fstore_sync_validation_rules(fg_id, spec, existing) %}
  {% endif %}

  {% call statement('main', fetch_result=True) -%}
    select fstore.commit_feature_rows({{ fg_id }}, {{ fstore_regclass(staging) }}, p.s->>'mode', 'dbt') as commit_id
      from (select {{ fstore_jsonb({'mode': spec['commit_mode']}) }} as s) p
  {%- endcall %}
  {% do fstore_log_commit(spec, load_result('main').table.rows[0][0]) %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  -- `COMMIT` happens here: data, online rows, commit record and statistics together
  {% do adapter.commit() %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}
