"""Commands whose success needs a live service, run for real up to where they need it: each says
what is missing and exits non-zero (import-stripe) or skips what it cannot do (discovery record)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_", "STRIPE_", "X_"))
    }
    return {**env, "VENTURELOOP_HOME": str(tmp_path / "home")}


def test_import_stripe_without_a_key_says_which_variable_to_set(tmp_path):
    done = subprocess.run(
        [str(BIN / "ventureloop"), "ledger", "import-stripe"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "no Stripe API key: set STRIPE_API_KEY" in done.stderr


def test_discovery_record_skips_a_source_without_its_credentials(tmp_path):
    done = subprocess.run(
        [str(BIN / "ventureloop"), "discovery", "record", "--source", "x"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "x: skipped, set X_BEARER_TOKEN"
