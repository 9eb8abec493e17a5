"""Presets: YAML files of option values, one per kind of data (`tasks/<task>/presets/<name>.yaml`).

A preset maps options (`batch_size: 64`, spelled as in `--batch-size` or with underscores) to the values a run on
that data starts from; anything on the command line, in `--config` or in a resumed run's config.yaml wins over it.
A key `option=value` holds values that apply only when that option has that value (read as YAML: `features=stft`,
`variant=null`, `spatial_dims=2`) as given on the command line, in `--config`, the resumed run's config.yaml or
else by its default, never by the preset itself; such sections may nest and win over the file's plain values:

    n_fft: 512
    features=stft: {n_fft: 256}             # --features stft: n_fft 256
    variant=null:                           # no --variant ...
      model=hornet: {embed_dim: 24}         # ... and --model hornet: embed_dim 24
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .cli import TaskError


@dataclass(frozen=True)
class Presets:
    """The presets of one task: `{name: mapping}` read from `<folder>/*.yaml`."""

    folder: Path
    values: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, folder: Path) -> Presets:
        folder = Path(folder)
        values = {}
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.safe_load(path.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError(f"preset {path} must hold a mapping of option: value")
            values[path.stem] = data
        if not values:
            raise ValueError(f"no presets (*.yaml) in {folder}")
        return cls(folder, values)

    @classmethod
    def none(cls) -> Presets:
        """No presets: for a command whose options have their defaults only (a verb applying a trained run)."""
        return cls(Path("."), {})

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def check(self, known: Iterable[str]) -> None:
        """Every option and condition in every preset must be one of `known` (option dests)."""
        known = set(known)
        for name, values in self.values.items():
            unknown = sorted(set(_options(values)) - known)
            if unknown:
                raise ValueError(f"preset {self.folder / name}.yaml sets unknown option(s): {', '.join(unknown)}")

    def resolve(self, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Option values of preset `name` for a run whose options are `given` (sections applied)."""
        if name not in self.values:
            raise TaskError(f"--preset: unknown preset {name!r}; choose from {', '.join(self.names)}")
        return _apply(self.values[name], given)

    def describe(self, dest: str) -> str:
        """How the presets set `dest`, for --help: 'digits: 10; imagenet: 300', conditional values in brackets
        ('synthetic: 512 (--features stft: 256)'); '' if no preset sets it."""
        parts = []
        for name, values in self.values.items():
            found = _assignments(values, dest)
            plain = [_show(v) for conditions, v in found if not conditions]
            conditional = [f"{', '.join(conditions)}: {_show(v)}" for conditions, v in found if conditions]
            if found:
                parts.append(f"{name}: " + " ".join(plain + ([f"({'; '.join(conditional)})"] if conditional else [])))
        return "; ".join(parts)


def _split(key: str) -> tuple[str, Any] | None:
    """`'features=stft'` -> ('features', 'stft'); None for a plain option key."""
    if "=" not in key:
        return None
    option, _, value = key.partition("=")
    return option.strip().replace("-", "_"), yaml.safe_load(value)


def _apply(values: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    plain = {k.replace("-", "_"): v for k, v in values.items() if _split(k) is None}
    for key, section in values.items():
        condition = _split(key)
        if condition is not None and given.get(condition[0]) == condition[1]:
            plain.update(_apply(section, given))
    return plain


def _options(values: Mapping[str, Any]) -> list[str]:
    """Every option a preset mentions (set or tested)."""
    out = []
    for key, value in values.items():
        condition = _split(key)
        out += [key.replace("-", "_")] if condition is None else [condition[0], *_options(value)]
    return out


def _assignments(values: Mapping[str, Any], dest: str, conditions: tuple[str, ...] = ()
                 ) -> list[tuple[tuple[str, ...], Any]]:
    """(conditions, value) for each place `values` sets `dest`, the plain value first."""
    found = [(conditions, v) for k, v in values.items() if _split(k) is None and k.replace("-", "_") == dest]
    for key, section in values.items():
        condition = _split(key)
        if condition is not None:
            option, value = condition
            found += _assignments(section, dest, (*conditions, f"--{option.replace('_', '-')} {_show(value)}"))
    return found


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)
