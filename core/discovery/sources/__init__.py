"""The discovery sources. `all_sources` is the one list the assets, the CLI and the tests use."""

import importlib
from collections.abc import Mapping

from core.discovery.sources.base import FAMILIES, Source

# Fixed connectors, by module and class; the generic feed source adds one source per feed in YAML.
CONNECTORS = {
    "hackernews": "core.discovery.sources.hackernews:HackerNews",
    "github": "core.discovery.sources.github:GitHubSearch",
    "reddit": "core.discovery.sources.reddit:Reddit",
    "producthunt": "core.discovery.sources.producthunt:ProductHunt",
    "x": "core.discovery.sources.x:XRecentSearch",
    "freelancer": "core.discovery.sources.freelancer:Freelancer",
    "web_search": "core.discovery.sources.web_search:BraveWebSearch",
}


def _load(path: str) -> type[Source]:
    module, cls = path.split(":")
    return getattr(importlib.import_module(module), cls)


def all_sources(env: Mapping[str, str] | None = None) -> list[Source]:
    from core.discovery.sources.feeds import feed_sources

    sources = [_load(path)(env) for path in CONNECTORS.values()]
    sources += feed_sources(env)
    return sources


__all__ = ["FAMILIES", "Source", "all_sources"]
