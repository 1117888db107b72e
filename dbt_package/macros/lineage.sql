{#-
  Upstream lineage from dbt's graph: the relations a model reads through ref() and
  source(), looking through ephemeral models to what they read. Each entry:
    {'relation': 'schema.table', 'kind': 'source'|'model'|'seed'|'snapshot',
     'dbt_node': unique_id, 'found_by': ['dbt']}
  fstore.dbt adds the tables found by parsing the compiled SQL (found_by 'sql').
-#}
{% macro dbt_upstream(node_ids) %}
  {%- set found = [] -%}
  {%- if not execute -%}{{ return(found) }}{%- endif -%}
  {%- for uid in node_ids -%}
    {%- if uid in graph.sources -%}
      {%- set source = graph.sources[uid] -%}
      {%- do found.append({'relation': source.schema ~ '.' ~ source.identifier, 'kind': 'source',
                           'dbt_node': uid, 'found_by': ['dbt']}) -%}
    {%- elif uid in graph.nodes -%}
      {%- set node = graph.nodes[uid] -%}
      {%- if node.config.materialized == 'ephemeral' -%}
        {%- do found.extend(fstore.dbt_upstream(node.depends_on.nodes)) -%}
      {%- else -%}
        {%- do found.append({'relation': node.schema ~ '.' ~ node.alias, 'kind': node.resource_type,
                             'dbt_node': uid, 'found_by': ['dbt']}) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set unique = [] -%}
  {%- set seen = [] -%}
  {%- for entry in found if entry['relation'] not in seen -%}
    {%- do seen.append(entry['relation']) -%}
    {%- do unique.append(entry) -%}
  {%- endfor -%}
  {{ return(unique) }}
{% endmacro %}
