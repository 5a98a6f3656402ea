{#- Where an incremental model resumes: the newest `held_column` (a recorded_at) it already holds,
    minus var late_arrival_lookback_hours, because a writer's transaction can commit after a row
    stamped later. Rows recorded since then are read again; unique keys make that idempotent.
    Only valid inside `{% if is_incremental() %}`. -#}
{% macro incremental_watermark(held_column='recorded_at') -%}
    (coalesce(
        (select max({{ held_column }}) from {{ this }}),
        cast('1970-01-01 00:00:00+00' as timestamp with time zone)
    ) - interval '{{ var("late_arrival_lookback_hours") | int }} hours')
{%- endmacro %}
