{#-
  The `feature_group` materialization: each `dbt run` of a model is one commit of
  a feature group version, in dbt's single transaction.

    {{ config(materialized='feature_group', keys=['account_id'], event_time='event_time',
              version=1, online=true, commit_mode='merge') }}

  Steps (each a macro of this package, called as fstore.<name>, or a SQL function in sql/):
    1. read and check the model's config                         fstore.feature_group_spec
    2. act as the person (the certificate's role), times in UTC  fstore.act_as_session_user
    3. stage the model's rows in a temporary table               fstore.stage_rows
    4. first run of this version: create its tables as the
       project owner and register it (fstore.create_feature_group);
       later runs: refuse a breaking schema change, add new
       columns as features, refresh the description, tags,
       lineage and validation rules                               fstore.create_feature_group /
                                                                  fstore.check_schema
       sensitive features from the columns' meta                  fstore.sync_sensitive_features
    5. commit: validation (strict aborts the run), offline append,
       online newer-only upsert, commit record and statistics
       (fstore.commit_feature_rows); a run that adds no row
       records no commit                                          statement 'main'
  On a Citus coordinator with workers the steps take three transactions: 1-3 (the staged
  rows are kept), 4, then 5 (for a group kept on the coordinator, 4 and 5 are one). Citus
  refuses DDL on shards that a transaction has read over several connections (a model
  reading a distributed group, then a new group co-located with it: `cannot perform DDL
  on placement ..., which has been read over multiple connections`), and lets no other
  role's connection (the commit's writer, fstore_writer) reach shards that another role
  created or altered in the same transaction (`cannot perform query on placements that
  were modified in this transaction by a different user`). A failing step 5 then leaves
  the new version (or its new columns) in place, without the run's rows. On a single node
  all of it is one transaction.
  The tables are never dropped or recreated (row-level security and policies live
  on them, and history is append-only): a breaking change needs a new `version`, which
  gets new tables. `--full-refresh` recomputes the model from scratch (fstore.watermark()
  is '-infinity') and commits with `merge`: every row the model now computes whose
  keys and event time are not stored yet is added; stored rows keep their values (the
  commit's source is 'dbt --full-refresh').
-#}
{% materialization feature_group, adapter='postgres' %}

  {%- set spec = fstore.feature_group_spec(model) -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set staging = make_temp_relation(target_relation, '__fstore_stage') -%}
  {%- set commit = {'mode': spec['commit_mode'], 'source': 'dbt'} -%}

  {%- if should_full_refresh() -%}
    {%- do commit.update({'mode': 'merge', 'source': 'dbt --full-refresh'}) -%}
    {{ log(fstore.display_name(spec) ~ ': --full-refresh: the model is recomputed from scratch and committed with '
           ~ "commit_mode 'merge' (rows not stored yet are added; stored rows keep their values: history is "
           ~ 'append-only, its tables are never rebuilt). Bump `version` to start again with new tables.',
           info=True) }}
  {%- endif -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  -- `BEGIN` happens here:
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% do fstore.act_as_session_user() %}
  {% do fstore.stage_rows(staging, sql) %}
  {%- set on_cluster = fstore.on_cluster() -%}
  {% if on_cluster %}{% do fstore.commit_and_begin() %}{% endif %}
  {%- set columns = fstore.staged_columns(staging) -%}
  {%- set existing = fstore.find_feature_group(spec) -%}

  {% if existing is none %}
    {%- set fg_id = fstore.create_feature_group(spec, columns) -%}
  {% else %}
    {%- set added = fstore.check_schema(spec, existing, columns) -%}
    {%- set fg_id = existing['id'] -%}
    {% if added %}{% do fstore.add_features(fg_id, spec, added) %}{% endif %}
    {% do fstore.describe_feature_group(fg_id, spec) %}
    {% do fstore.sync_validation_rules(fg_id, spec, existing) %}
  {% endif %}
  {% do fstore.sync_sensitive_features(fg_id, spec) %}
  {% if on_cluster and fstore.commit_ddl_first(fg_id) %}{% do fstore.commit_and_begin() %}{% endif %}

  {% call statement('main', fetch_result=True) -%}
    select fstore.commit_feature_rows({{ fg_id | int }}, {{ fstore.regclass(staging) }}, p.s->>'mode', p.s->>'source',
                                      p_record_empty => false) as commit_id
      from (select {{ fstore.jsonb(commit) }} as s) p
  {%- endcall %}
  {% do fstore.log_commit(spec, load_result('main').table.rows[0][0]) %}
  {% do fstore.drop_staging(staging) %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  -- `COMMIT` happens here: data, online rows, commit record and statistics together
  {% do adapter.commit() %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}
