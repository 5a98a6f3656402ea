"""`ventureloop discovery record` keeps no scratch copy of what the live APIs returned."""

import tempfile

from typer.testing import CliRunner

from orchestration.cli import app


def test_discovery_record_leaves_no_temporary_files(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)  # no ./.env applied
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["discovery", "record", "--source", "x"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "x: skipped, set X_BEARER_TOKEN"
    assert list(scratch.iterdir()) == []
