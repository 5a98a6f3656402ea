{#- Rows whose column is not exactly zero; the test passes when there are none. -#}
{% test equals_zero(model, column_name) %}
select * from {{ model }} where {{ column_name }} <> 0
{% endtest %}
