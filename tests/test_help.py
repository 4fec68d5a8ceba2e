"""Every command's --help: flags as flags, no Python type names, every default shown, one example.

The commands are read from the app when the test runs, so commands added later are held to the
same rules.
"""

from __future__ import annotations

import pytest
import typer
from typer.core import TyperArgument
from typer.testing import CliRunner

from demix.cli import app
from demix.cli.options import polish_help

runner = CliRunner()


def _commands() -> list[tuple[tuple[str, ...], object]]:
    root = typer.main.get_command(app)
    polish_help(root)
    found: list[tuple[tuple[str, ...], object]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(root, ())
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "demix" for p, _ in COMMANDS])
def test_help_has_no_type_names_and_an_example(path: tuple[str, ...], command: object) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    for leak in ("<bool>", "<str>", "list[", "{inputs}", "<list"):
        assert leak not in text, f"{' '.join(path)} --help shows {leak}"
    assert "Example: demix" in text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "demix" for p, _ in COMMANDS])
def test_every_option_says_its_default(path: tuple[str, ...], command: object) -> None:
    silent = []
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument) or param.required or getattr(param, "is_flag", False):
            continue
        shown = isinstance(param.show_default, str) or (param.default is not None and param.show_default)
        if not (shown or "default:" in (param.help or "")):
            silent.append(param.opts[-1])
    assert silent == [], f"{' '.join(path)}: options without a visible default: {silent}"


def test_defaults_written_in_help_texts_survive_rich_markup() -> None:
    """'[default: …]' inside a help text used to be eaten as a rich markup tag."""
    text = runner.invoke(app, ["mix", "--help"], env={"COLUMNS": "300"}).stdout
    assert "default: one per source" in text and "default: the shortest source" in text
    text = runner.invoke(app, ["ica", "--help"], env={"COLUMNS": "300"}).stdout
    assert "the input's channels" in text and "PCM_16|PCM_24|FLOAT" in text and "wav|" in text
