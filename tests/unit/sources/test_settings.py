"""The discovery resource forwards exactly the variables the connectors read."""

import re
from pathlib import Path

from core.discovery.sources.settings import SOURCE_SECRETS, SOURCE_SETTINGS

SOURCES = Path(__file__).resolve().parents[3] / "core" / "discovery" / "sources"
READ = re.compile(r"""env\b[^\n]*?["']([A-Z][A-Z0-9_]{2,})["']""")


def test_the_forwarded_variables_are_the_ones_the_connectors_read():
    read = {
        name
        for path in SOURCES.glob("*.py")
        if path.name != "settings.py"
        for name in READ.findall(path.read_text(encoding="utf-8"))
    }
    # DISCOVERY_MODE is the resource's own `mode`, always forwarded.
    assert read - {"DISCOVERY_MODE"} == set(SOURCE_SECRETS) | set(SOURCE_SETTINGS)
    assert not set(SOURCE_SECRETS) & set(SOURCE_SETTINGS)
