"""Every command README.md and docs/ show is real and is run by a test.

A command in a ```bash block of those files is checked here: a `make` target exists, a
`ventureloop` command and every option shown with it exist (its --help, in-process), and an
end-to-end test runs that command (tests/e2e/, found by its words in an argument list); a
`dagster` command is run by an end-to-end test word for word."""

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BUILTINS = ("source", "export", "cd")
# `ventureloop dbt ARGS` hands ARGS to dbt: only its first word is ours, its options are dbt's.
RUN_BY_TESTS = ("make", "ventureloop", "dagster", "dagster-dbt")
VENV_BIN = re.compile(r"^(\.\./)?\.venv/bin/")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*\s+")


def documented() -> list[tuple[str, str]]:
    """(file name, command) for each command line of a code block, without its comment and the
    variable assignments before it. Blocks marked bash hold only commands; in unmarked ones (also
    used for diagrams and output) a line is a command if it starts with one of RUN_BY_TESTS."""
    found = []
    for doc in DOCS:
        for language, block in re.findall(r"```(\w*)\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            for line in block.splitlines():
                command = line.split("  #", 1)[0].strip()
                while ASSIGNMENT.match(command):
                    command = ASSIGNMENT.sub("", command, count=1)
                command = VENV_BIN.sub("", command)
                if not command or command.startswith(("#", *SHELL_BUILTINS)):
                    continue
                if language == "bash" or (not language and command.split()[0] in RUN_BY_TESTS):
                    found.append((doc.name, command))
    return found


def e2e_argument_lists() -> list[list[str]]:
    """The string words of every list literal in the end-to-end tests: the commands they run."""
    lists = []
    for path in (ROOT / "tests" / "e2e").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.List):
                words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                lists.append(words)
    return lists


def words_of(command: str) -> list[str]:
    """The command's path: its words up to the first option, [optional] part or placeholder (FILE)."""
    words = []
    for word in command.split()[1:]:
        if word.startswith(("-", "[")) or re.fullmatch(r"[A-Z_.]+", word) or words[:1] == ["dbt"]:
            break
        words.append(word)
    return words


COMMANDS = documented()


def test_the_docs_show_only_commands_a_test_runs():
    assert {command.split()[0] for _, command in COMMANDS} == set(RUN_BY_TESTS), [
        f"{doc}: {command}" for doc, command in COMMANDS if command.split()[0] not in RUN_BY_TESTS
    ]


@pytest.mark.parametrize(("doc", "command"), [c for c in COMMANDS if c[1].startswith("make ")])
def test_make_targets_exist(doc, command):
    target = command.split()[1]
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), f"{doc}: {command}"


@pytest.mark.parametrize(("doc", "command"), [c for c in COMMANDS if c[1].startswith("ventureloop")])
def test_ventureloop_commands_and_their_options_exist_and_are_run(doc, command):
    words = words_of(command)
    result = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"{doc}: `{command}`: {result.output}"
    for option in re.findall(r"--[a-z][a-z-]*", command) if words[:1] != ["dbt"] else []:
        assert option in result.output, f"{doc}: `{command}` shows {option}, which the command does not take"
    if words:
        assert any(lst[: len(words)] == words or lst[1 : 1 + len(words)] == words for lst in e2e_argument_lists()), (
            f"{doc}: no end-to-end test runs `ventureloop {' '.join(words)}`"
        )


@pytest.mark.parametrize(("doc", "command"), [c for c in COMMANDS if c[1].startswith("dagster-dbt ")])
def test_dagster_dbt_commands_are_what_make_env_runs(doc, command):
    # `make test` depends on `make env`, which prepares the manifest with this command.
    makefile = (ROOT / "Makefile").read_text()
    assert f"DBT_PREPARE := $(BIN)/{command}\n" in makefile, f"{doc}: `{command}` is not what `make env` runs"
    assert "\n\t@$(DBT_PREPARE) ||" in makefile and "\nenv: $(DBT_MANIFEST)\n" in makefile


@pytest.mark.parametrize(("doc", "command"), [c for c in COMMANDS if c[1].startswith("dagster ")])
def test_dagster_commands_are_run_word_for_word(doc, command):
    words = [w.strip("'") for w in command.split()[1:]]
    assert any(lst[1 : 1 + len(words)] == words or lst == words for lst in e2e_argument_lists()), (
        f"{doc}: no end-to-end test runs `{command}`"
    )
