{#-
  Views that the database accepts. fstore's DDL guard refuses, in a project schema, a
  view that is not security_invoker (such a view reads its tables with its owner's
  rights, past the readers' row policies) and any materialized view. dbt-postgres 1.11
  creates a `view` model as `create view <model>__dbt_tmp as (...)`, renames the old
  view to <model>__dbt_backup and the new one to <model>, then drops the backup; a
  rename keeps the view's options, so the model's view stays security_invoker (the guard
  checks again at every CREATE and ALTER VIEW). These two macros are dbt's
  (default__create_view_as, postgres__get_replace_view_sql) with the option added;
  dbt calls them for your models through the dispatch config.
-#}
{% macro postgres__create_view_as(relation, sql) -%}
  {%- set sql_header = config.get('sql_header', none) -%}

  {{ sql_header if sql_header is not none }}
  create view {{ relation.render() }}
    {% set contract_config = config.get('contract') %}
    {% if contract_config.enforced %}
      {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
  with (security_invoker = true)
  as (
    {{ sql }}
  );
{%- endmacro %}

{% macro postgres__get_replace_view_sql(relation, sql) -%}
  {%- set sql_header = config.get('sql_header', none) -%}

  {{ sql_header if sql_header is not none }}
  create or replace view {{ relation }}
    {% set contract_config = config.get('contract') %}
    {% if contract_config.enforced %}
      {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
  with (security_invoker = true)
  as (
    {{ sql }}
  );
{%- endmacro %}
