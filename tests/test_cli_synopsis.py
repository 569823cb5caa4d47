"""The README's command lines agree with the parsers (issue 14, build item 8).

* the synopsis block of "## Command line": every flag it names exists in that command's parser, every required
  flag is shown, and the value lists it spells out (``--method a|b|c``) are the ones the command accepts;
* every other ``liftinv <command> ...`` in the README (inline code, code blocks, ``-m liftinv``): its command
  exists and every flag it names exists in that command's parser.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from liftinv.cli import COMMANDS, build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _synopsis_block() -> str:
    section = README.split("\n## Command line\n", 1)[1]
    return re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)


def _synopses() -> dict[str, list[str]]:
    """Command (``""``: the top level) -> its synopses in the README (one per form of the command, e.g.
    ``reconstruct`` from a simulation and from files), continuation lines joined."""
    found: dict[str, list[str]] = {}
    command = None
    for line in _synopsis_block().splitlines():
        if line.startswith("liftinv "):
            words = line.split()
            command = words[1] if words[1] in COMMANDS else ""
            found.setdefault(command, []).append(line[len("liftinv ") :].strip())
        elif line.strip():
            assert command is not None and line.startswith(" "), f"a line without a command: {line!r}"
            found[command][-1] += " " + line.strip()
    # a value list broken after '|' continues on the next line
    return {c: [re.sub(r"\|\s+", "|", text) for text in texts] for c, texts in found.items()}


SYNOPSES = _synopses()


def _parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command] if command else [])
    if not command:
        return parser
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices[command]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _mentions() -> list[tuple[str, str]]:
    """``(command, text)`` of every ``liftinv <command> ...`` outside the synopsis block: inline code spans and
    the lines of code blocks (up to the end of the span or line; a trailing ``\\`` joins the next line)."""
    text = README.replace(_synopsis_block(), "")
    pieces = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    lines = [line for block in pieces for line in re.sub(r"\\\n", " ", block).splitlines()]
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))  # may wrap a line
    found = []
    for piece in lines + spans:
        for match in re.finditer(r"\bliftinv ([a-z][a-z-]*)\b", piece):
            rest = piece[match.end() :]
            found.append((match.group(1), rest.split("liftinv ", 1)[0]))
    return found


def test_the_readme_has_a_synopsis_of_every_command():
    assert set(SYNOPSES) == {"", *COMMANDS}


@pytest.mark.parametrize("command", sorted(SYNOPSES), ids=lambda c: c or "liftinv")
def test_every_flag_of_a_synopsis_exists_and_every_required_flag_is_shown(command):
    parser = _parser(command)
    required = {a.option_strings[0] for a in parser._actions if a.required and a.option_strings}
    for synopsis in SYNOPSES[command]:
        named = set(FLAG.findall(synopsis))
        assert named - _flags(parser) == set(), f"liftinv {command}: the README names flags it does not have"
        assert required - named == set(), (
            f"liftinv {command}: required flags missing from the README synopsis"
        )


def _accepted_values() -> dict[tuple[str, str], list[str]]:
    """(command, flag) -> the values the command accepts, for the flags whose synopsis lists them."""
    from liftinv.commands import demo, invert, reconstruct, train
    from liftinv.training.registry import methods_for

    values = {
        ("train", "--task"): list(train.TASK_NAMES),
        ("train", "--arch"): list(train.HELP_ARCH_NAMES),
        ("train", "--method"): train.method_names(),
        ("train-classifier", "--method"): methods_for("classifier"),
        ("reconstruct", "--operator"): list(reconstruct.OPERATOR_NAMES),
        ("reconstruct", "--method"): list(reconstruct.METHOD_NAMES),
        ("simulate", "--operator"): list(reconstruct.OPERATOR_NAMES),
        ("demo", "--task"): list(demo.DEMO_TASKS),
        ("invert", "--method"): ["lifted", "gradient"],
        ("invert", "--model"): list(invert.MODELS),
    }
    assert callable(invert.run)  # the invert values are checked by the command itself (test_cli_invert)
    return values


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_value_lists_of_a_synopsis_are_the_accepted_values(command):
    accepted = _accepted_values()
    lists = re.findall(r"(--[a-z-]+) ([^\s\[\]]*\|[^\s\[\]]*)", " ".join(SYNOPSES[command]))
    for flag, listed in lists:
        values = [v for v in listed.split("|") if v and v != "..." and not v.isupper()]
        if (command, flag) not in accepted:
            continue
        assert "..." not in listed, f"liftinv {command} {flag}: spell the whole list"
        assert sorted(values) == sorted(accepted[(command, flag)]), f"liftinv {command} {flag}"
    shown = {flag for flag, _ in lists}
    assert {flag for c, flag in accepted if c == command} <= shown, (
        f"liftinv {command}: a value list is missing"
    )


def test_every_command_line_of_the_readme_names_existing_flags():
    mentions = _mentions()
    assert len(mentions) >= 6  # inline commands, the torchrun examples, ...
    for command, text in mentions:
        assert command in COMMANDS, f"the README runs an unknown command: liftinv {command}{text}"
        unknown = set(FLAG.findall(text)) - _flags(_parser(command))
        assert not unknown, f"liftinv {command}{text}: no such flags {sorted(unknown)}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_states_each_default_once(command):
    """``liftinv <command> --help`` never says an option's default twice (the help's own words and argparse's
    ``(default: ...)``), and never prints ``(default: None)``."""
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        text = formatter._expand_help(action)
        appended = formatter._get_help_string(action) != action.help
        flag = action.option_strings[0]
        assert not (appended and "default" in action.help.lower()), f"{command} {flag}: {text!r}"
        assert "(default: None)" not in text, f"{command} {flag}: {text!r}"
