{#- Money is integer minor units; conversions are integer arithmetic so that both adapters (and
    core/ledger/fx.py, which does the same in Decimal) get the same minor unit. Products of an amount and
    a scaled rate exceed BIGINT, hence a 128-bit integer on DuckDB and NUMERIC on PostgreSQL. -#}
{% macro wide_integer() -%}
    {{ return(adapter.dispatch('wide_integer')()) }}
{%- endmacro %}

{% macro default__wide_integer() -%}
    numeric(38, 0)
{%- endmacro %}

{% macro duckdb__wide_integer() -%}
    hugeint
{%- endmacro %}

{#- numerator / denominator (wide integers, denominator > 0) rounded to the nearest integer, ties
    to even (2.5 -> 2, 3.5 -> 4, -2.5 -> -2): core/ledger/fx.py's ROUND_HALF_EVEN. Pass column names,
    not expressions: each operand appears several times. -#}
{% macro div_round_half_even(numerator, denominator) -%}
    {{ round_half_even(numerator, denominator,
                       integer_div('abs(' ~ numerator ~ ')', denominator),
                       integer_mod('abs(' ~ numerator ~ ')', denominator)) }}
{%- endmacro %}

{#- The same, from the truncated quotient and the remainder of abs(numerator) / denominator,
    computed once beforehand (in a CTE: a 128-bit division per row is what costs). -#}
{% macro round_half_even(numerator, denominator, quotient, remainder) -%}
    (sign({{ numerator }}) * ({{ quotient }} + case
        when 2 * {{ remainder }} > {{ denominator }} then 1
        when 2 * {{ remainder }} = {{ denominator }} and {{ integer_mod(quotient, 2) }} = 1 then 1
        else 0
    end))
{%- endmacro %}

{#- Truncating division and remainder of non-negative wide integers. DuckDB's `//` truncates for
    integer types (for DECIMAL it is true division, hence HUGEINT there). -#}
{% macro integer_div(numerator, denominator) -%}
    {{ return(adapter.dispatch('integer_div')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__integer_div(numerator, denominator) -%}
    div({{ numerator }}, {{ denominator }})
{%- endmacro %}

{% macro duckdb__integer_div(numerator, denominator) -%}
    ({{ numerator }} // {{ denominator }})
{%- endmacro %}

{% macro integer_mod(numerator, denominator) -%}
    mod({{ numerator }}, {{ denominator }})
{%- endmacro %}

{#- 10^exponent as an exact integer (ISO 4217 exponents are 0..4). -#}
{% macro minor_per_major(exponent) -%}
    cast(power(10, {{ exponent }}) as bigint)
{%- endmacro %}

{#- The reporting currency as a SQL literal; validated because it is pasted into SQL. -#}
{% macro reporting_currency() -%}
    {%- set code = var("reporting_currency") | string | upper -%}
    {%- if not modules.re.match("^[A-Z]{3}$", code) -%}
        {{ exceptions.raise_compiler_error("var reporting_currency=" ~ code ~ " is not an ISO 4217 code such as USD: pass --vars '{reporting_currency: EUR}'") }}
    {%- endif -%}
    '{{ code }}'
{%- endmacro %}

{#- The account class from the root of a colon account id (assets:cash:stripe:usd -> asset), as
    core/ledger/validation.py's account_type. Unknown roots pass through so that accepted_values names them. -#}
{% macro account_type(account_id) -%}
    case split_part({{ account_id }}, ':', 1)
        when 'assets' then 'asset'
        when 'liabilities' then 'liability'
        when 'equity' then 'equity'
        when 'revenue' then 'revenue'
        when 'expenses' then 'expense'
        else split_part({{ account_id }}, ':', 1)
    end
{%- endmacro %}
