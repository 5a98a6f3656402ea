"""The layout's rules (README, "Layout"), checked on the source so that a regression fails here:
dependencies point one way (orchestration -> assets -> core, ml), core/ and ml/ know nothing of
Dagster or dbt, and no module reaches into another package for a name starting with `_`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ("orchestration", "assets", "core", "ml")
# What each top-level folder may import from the others.
ALLOWED = {
    "orchestration": {"orchestration", "assets", "core", "ml"},
    "assets": {"assets", "core", "ml"},
    "core": {"core"},
    "ml": {"ml", "core"},
}
FRAMEWORKS = ("dagster", "dagster_dbt", "dagster_postgres", "dbt")


def modules() -> list[Path]:
    return sorted(path for folder in CODE for path in (ROOT / folder).rglob("*.py"))


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_point_one_way(path: Path):
    top = path.relative_to(ROOT).parts[0]
    for module, _ in imports(path):
        first = module.split(".")[0]
        if first in CODE:
            assert first in ALLOWED[top], f"{path.relative_to(ROOT)} imports {module}: {top}/ may not import {first}/"
        if top in ("core", "ml"):
            assert first not in FRAMEWORKS, f"{path.relative_to(ROOT)} imports {module}: {top}/ is framework-free"


# Tests may reach into the package they test (a fast path against its general twin); product code
# and benchmarks may not.
@pytest.mark.parametrize(
    "path", [*modules(), *sorted((ROOT / "benchmarks").rglob("*.py"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_private_names_across_packages(path: Path):
    here = package_of(path)
    for module, names in imports(path):
        if module.split(".")[0] not in CODE:
            continue
        source_package = module if (ROOT / module.replace(".", "/")).is_dir() else module.rsplit(".", 1)[0]
        private = [n for n in names if n.startswith("_")] + [p for p in module.split(".") if p.startswith("_")]
        if private and not here.startswith(source_package):
            pytest.fail(
                f"{path.relative_to(ROOT)} imports {', '.join(private)} from {module}: "
                f"a private name of another package; make it public there or keep it inside"
            )


@pytest.mark.parametrize("path", sorted((ROOT / "core" / "platform").rglob("*.py")), ids=lambda p: p.name)
def test_platform_is_the_bottom_of_core(path: Path):
    for module, _ in imports(path):
        if module.startswith("core."):
            assert module.startswith("core.platform"), (
                f"{path.relative_to(ROOT)} imports {module}: platform is "
                "the bottom of core (everything may use it; it uses nothing above it)"
            )
