"""Sphinx directive ``.. matalign-cli::``: the CLI reference, generated from the commands.

For ``matalign`` and each of its subcommands (in the order the CLI registers them) it adds a
section with the command's own ``--help`` text, rendered by the CLI itself (Typer), so the
page always says what the installed commands say: usage, arguments, options, defaults and
examples. (Typer builds on its own copy of click, which sphinx-click does not accept.)
"""

from __future__ import annotations

import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _help(args: list[str]) -> str:
    from typer.testing import CliRunner

    from matalign.cli import app

    env = {"COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "TERM": "dumb",
           "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, [*args, "--help"], prog_name="matalign")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if result.exit_code != 0:
        raise RuntimeError(f"matalign {' '.join(args)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")


def command_names() -> list[str]:
    from matalign.cli import app

    names = []
    for cmd in app.registered_commands:
        if cmd.hidden:
            continue
        names.append(cmd.name or cmd.callback.__name__.replace("_", "-"))
    return names


class MatalignCli(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for name in [None, *command_names()]:
            title = "matalign" if name is None else f"matalign {name}"
            section = nodes.section(ids=[nodes.make_id("cli-" + (name or "matalign"))])
            section += nodes.title(text=title)
            text = _help([] if name is None else [name])
            section += nodes.literal_block(text, text, language="text")
            out.append(section)
        return out


def setup(app):
    app.add_directive("matalign-cli", MatalignCli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
