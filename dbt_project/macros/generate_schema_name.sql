{#- A model's custom schema is its whole schema name (no "<target schema>_" prefix), so DuckDB and
    PostgreSQL hold the same analytics / analytics_staging tables. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
