"""Settings declared once: a dataclass whose fields are the settings of one part of a task (e.g. the detector). Its
fields give the command-line flags (`--field-name`), their parsers (from the type hints), defaults and help, and
`from_args` turns the parsed options back into the dataclass, so a setting is named, typed, defaulted and explained
in one place; presets, config.yaml and `--resume` work on the flags as for every other option.

    @dataclass(frozen=True)
    class Detector:
        fpn_channels: int = setting(256, "FPN width")
        min_size: list[int] = setting([800], "short side; several values = multi-scale training")
        detector: Literal["maskrcnn", "fasterrcnn"] = setting("maskrcnn", "torchvision detector")

    add_settings(parser.add_argument_group("model"), Detector)     # --fpn-channels, --min-size, --detector
    detector = from_args(Detector, args)

A field's `flag` names another flag (kept for compatibility, e.g. `--backbone-arg` for `backbone_overrides`); a
`dict` field is read from a repeatable `KEY=VALUE` flag (`parse_key_values`). `add_settings(..., unset=True)` leaves
the flags unset (None) so that presets or the task's sizing decide them; `from_args` then takes the field's default
for what nothing set.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

from .cli import KeyValues, bool_arg, parse_key_values

__all__ = ["add_settings", "from_args", "setting"]


def setting(default: Any, help: str, flag: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field with its help (and optionally another flag name); mutable defaults are copied per
    instance."""
    metadata = {"help": help, "flag": flag, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def add_settings(group: Any, cls: type, unset: bool = False) -> None:
    """One flag per field of the dataclass `cls`, added to `group` (an argparse parser or argument group); with
    `unset` the flags default to None (decided by a preset, the task's sizing or else the field's default)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag, dest = _flag(f)
        kind, nullable = _unwrap(hints[f.name])
        kwargs: dict[str, Any] = dict(dest=dest, default=None if unset else _default(f),
                                      help=f.metadata.get("help", "") + (f" (else {_default(f)})" if unset else ""))
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        origin = typing.get_origin(kind)
        if origin is Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        elif kind is bool:
            kwargs["type"] = bool_arg
        elif origin in (list, tuple):
            kwargs.update(type=typing.get_args(kind)[0], nargs="+")
        elif origin is dict or kind is dict:
            kwargs.update(action=KeyValues, default={})
        elif kind in (int, float, str, Path):
            kwargs["type"] = kind
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for the type {kind!r}")
        group.add_argument(flag, **kwargs)


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass `cls` from parsed options (the flags `add_settings` added); an option nothing set (None) takes
    the field's default."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        flag, dest = _flag(f)
        value = getattr(args, dest)
        if value is None:
            value = _default(f)
        kind, _ = _unwrap(hints[f.name])
        if typing.get_origin(kind) is dict or kind is dict:
            value = parse_key_values(value, flag)
        elif typing.get_origin(kind) in (list, tuple) and value is not None:
            value = list(value)
        elif kind is Path and value is not None:
            value = Path(value)
        values[f.name] = value
    return cls(**values)


def _flag(f: dataclasses.Field) -> tuple[str, str]:
    flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    return flag, flag.lstrip("-").replace("-", "_")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _unwrap(kind: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (kind, False)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False
