{#- Calendar arithmetic happens on UTC wall-clock timestamps, whatever the session time zone:
    `timestamptz AT TIME ZONE 'UTC'` gives the UTC wall clock and `timestamp AT TIME ZONE 'UTC'`
    turns it back into an instant, on PostgreSQL and DuckDB alike. (Adding '1 month' to a
    timestamptz would count in the session zone and shift by an hour across DST.) -#}
{% macro utc_wall(column) -%}
    ({{ column }} at time zone 'UTC')
{%- endmacro %}

{% macro utc_instant(wall_clock) -%}
    (({{ wall_clock }}) at time zone 'UTC')
{%- endmacro %}

{% macro utc_date(column) -%}
    cast({{ utc_wall(column) }} as date)
{%- endmacro %}

{#- The budget window (`period` is a SQL expression: hour, day, month or total) containing the
    instant `column`: start and end as instants, both null for total (no window). Each unit is a
    constant so that neither adapter ever sees date_trunc('total', ...). -#}
{% macro utc_window_start(period, column) -%}
    case {{ period }}
        when 'hour' then {{ utc_instant("date_trunc('hour', " ~ utc_wall(column) ~ ")") }}
        when 'day' then {{ utc_instant("date_trunc('day', " ~ utc_wall(column) ~ ")") }}
        when 'month' then {{ utc_instant("date_trunc('month', " ~ utc_wall(column) ~ ")") }}
    end
{%- endmacro %}

{% macro utc_window_end(period, column) -%}
    case {{ period }}
        when 'hour' then {{ utc_instant("date_trunc('hour', " ~ utc_wall(column) ~ ") + interval '1 hour'") }}
        when 'day' then {{ utc_instant("date_trunc('day', " ~ utc_wall(column) ~ ") + interval '1 day'") }}
        when 'month' then {{ utc_instant("date_trunc('month', " ~ utc_wall(column) ~ ") + interval '1 month'") }}
    end
{%- endmacro %}

{#- The instant budget_utilization reports on: var budget_as_of (ISO 8601) or the run's time. -#}
{% macro budget_as_of() -%}
    {%- set as_of = var("budget_as_of") -%}
    {%- if as_of -%}
        cast('{{ as_of | replace("'", "") }}' as timestamp with time zone)
    {%- else -%}
        cast(current_timestamp as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}
