{#- Rows whose column is null, zero or negative; the test passes when there are none. -#}
{% test positive(model, column_name) %}
select * from {{ model }} where not coalesce({{ column_name }} > 0, false)
{% endtest %}
