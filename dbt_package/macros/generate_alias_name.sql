{#-
  A feature_group model's relation is its offline table, <name>__v<version>, so that
  ref('account_activity') in another model reads the version the config names. Other
  models keep dbt's default alias. dbt calls this for your models through the dispatch
  config (macro_namespace dbt, search order [your project, 'fstore', 'dbt']).
-#}
{% macro postgres__generate_alias_name(custom_alias_name=none, node=none) -%}
  {%- if node is not none and node.config.get('materialized') == 'feature_group' -%}
    {{ return(fstore.feature_group_table((custom_alias_name | trim) if custom_alias_name else node.name,
                                         node.config.get('version') or 1)) }}
  {%- else -%}
    {{ return(dbt.default__generate_alias_name(custom_alias_name, node)) }}
  {%- endif -%}
{%- endmacro %}
