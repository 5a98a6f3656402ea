import os
from pathlib import Path

import pytest

from core.platform.dbt_env import dbt_env_for, dbt_target_for
from core.platform.warehouse import WarehouseError


def test_duckdb_url_gives_the_duckdb_target_and_an_absolute_file():
    assert dbt_env_for("duckdb:////data/w.duckdb") == {
        "DBT_TARGET": "duckdb",
        "VENTURELOOP_WAREHOUSE_PATH": "/data/w.duckdb",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    # dbt runs inside dbt_project/: a relative path is resolved where the caller stands.
    assert dbt_env_for("duckdb:///rel/w.duckdb")["VENTURELOOP_WAREHOUSE_PATH"] == str(Path("rel/w.duckdb").resolve())


def test_postgres_url_gives_the_pg_variables_decoded_and_defaulted():
    assert dbt_env_for("postgresql+psycopg://ann:p%40ss@db.internal:6543/ledger") == {
        "DBT_TARGET": "postgres",
        "PGHOST": "db.internal",
        "PGPORT": "6543",
        "PGUSER": "ann",
        "PGPASSWORD": "p@ss",
        "PGDATABASE": "ledger",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    assert dbt_env_for("postgresql://localhost/vl") == {
        "DBT_TARGET": "postgres",
        "PGHOST": "localhost",
        "PGPORT": "5432",
        "PGUSER": "postgres",
        "PGPASSWORD": "",
        "PGDATABASE": "vl",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def test_urls_dbt_cannot_use_are_clear_errors():
    with pytest.raises(WarehouseError, match="in-memory DuckDB"):
        dbt_env_for("duckdb:///:memory:")
    with pytest.raises(WarehouseError, match="use duckdb:///path or postgresql"):
        dbt_env_for("mysql://h/db")


def test_a_dbt_target_set_by_hand_must_agree_with_the_warehouse():
    assert dbt_target_for("duckdb:////data/w.duckdb") == "duckdb"
    assert dbt_target_for("postgresql://ann:secret@db/vl", "postgres") == "postgres"
    assert dbt_target_for("duckdb:////data/w.duckdb", "") == "duckdb"
    with pytest.raises(
        WarehouseError,
        match=r"DBT_TARGET=duckdb but the warehouse is postgresql://ann:\*\*\*@db/vl "
        r"\(dbt target postgres\): unset DBT_TARGET or make it agree",
    ):
        dbt_target_for("postgresql://ann:secret@db/vl", "duckdb")


def test_the_dbt_currency_seed_is_core_money_exponents():
    # dbt converts with the seed, the ledger validates with core.money: a code in one and not the
    # other would be booked and then fail (or silently skew) every reporting-currency mart.
    import csv

    from core.ledger.money import CURRENCY_EXPONENTS

    seed = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "currencies.csv"
    with seed.open() as rows:
        assert {row["code"]: int(row["exponent"]) for row in csv.DictReader(rows)} == CURRENCY_EXPONENTS


def test_dbt_anonymous_usage_stats_are_off_in_the_project_and_every_dbt_environment(monkeypatch):
    from dbt.config.project import read_project_flags

    from core.platform.dbt_env import DBT_PROJECT_DIR, dbt_environment

    # dbt's own reader of dbt_project.yml's flags, as every dbt command runs it at start-up.
    assert read_project_flags(str(DBT_PROJECT_DIR), str(DBT_PROJECT_DIR)).send_anonymous_usage_stats is False
    # An inherited opt-in would override the project's flag: the environment dbt is started with wins.
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "true")
    for url in ("duckdb:///tmp/w.duckdb", "postgresql://localhost/vl"):
        with dbt_environment(url):
            assert os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"
    assert os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "true"  # restored afterwards
