"""How ``crust-clean fit`` gets one ``--flag`` per config field, and a ``--help`` in sections (as timm's train.py
groups its arguments): the config dataclasses (``config``) are the single source of names, defaults, help and
choices."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection

import click

from .config import RunConfig

_PYTHON_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}
#: ``fit --help`` sections, in order, as timm's train.py groups its arguments; config sections by name.
_SECTIONS = {"run": "Run", "data": "Data", "model": "Model", "crust": "CRUST", "train": "Training"}


class GroupedOption(click.Option):
    """An option that belongs to a section of its command's --help."""

    def __init__(self, *args, section: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


class GroupedCommand(click.Command):
    """A command whose --help lists its options section by section (``_SECTIONS``) instead of in one list."""

    def format_options(self, ctx, formatter):
        rows: dict[str, list] = {name: [] for name in _SECTIONS.values()}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                rows[getattr(param, "section", "Run")].append(record)
        for name, records in rows.items():
            if records:
                with formatter.section(f"{name} options"):
                    formatter.write_dl(records)


def run_option(*args, **kwargs):
    return click.option(*args, cls=GroupedOption, section="Run", **kwargs)


def config_options(command, only: Collection[str] | None = None):
    """Add one ``--flag`` per config field (help and choices from the field's metadata), in its section; with
    ``only``, for those fields alone."""
    defaults = RunConfig()
    for section in reversed(dataclasses.fields(defaults)):
        hints = typing.get_type_hints(type(getattr(defaults, section.name)))
        for f in reversed(dataclasses.fields(getattr(defaults, section.name))):
            if only is not None and f.name not in only:
                continue
            name = "model" if (section.name, f.name) == ("model", "name") else f.name
            flag = "--" + name.replace("_", "-")
            default = getattr(getattr(defaults, section.name), f.name)
            shown = [round(x, 3) for x in default] if isinstance(default, list) else default
            kwargs = dict(cls=GroupedOption, section=_SECTIONS[section.name],
                          help=f"{f.metadata['help']} [{section.name}.{f.name}; default: {shown}]")
            if isinstance(default, bool):
                option = click.option(f"{flag}/--no-{name.replace('_', '-')}", name, default=None, **kwargs)
            elif isinstance(default, list):
                kwargs["help"] += " (repeatable)"
                option = click.option(flag, name, type=click.FLOAT, multiple=True, **kwargs)
            elif f.metadata["choices"]:
                option = click.option(flag, name, type=click.Choice(f.metadata["choices"]), **kwargs)
            else:
                kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
                option = click.option(flag, name, type=_PYTHON_TYPES[kind], **kwargs)
            command = option(command)
    return command
