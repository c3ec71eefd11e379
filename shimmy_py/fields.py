"""Option records described once, as llama-cpp-python's server/settings.py
describes its settings: each field of a frozen dataclass says its
command-line flags, its help and how a value (text from the command line, or
a typed value from a config file or a keyword) becomes the field's value.
From that one description the CLI's flags are made (`add_flags`) and read
back (`from_flags`), and the keys of `serve --config` are checked and read
(`from_mapping`). Shared by every layer (like errors.py): it imports nothing
of the package but the errors.

A field may carry shortcuts: other flags and keys that set it, such as
llama.cpp's `--cpu-moe` for the placement strategy; `fold` merges what they
say into the field's value (and refuses contradictions).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Mapping

from .errors import ShimmyError


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `lo`, refused with both numbers named."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


@dataclass(frozen=True)
class Shortcut:
    flag: str                     # "--cpu-moe"
    help: str
    metavar: str | None = None    # None: a switch (no value)


@dataclass(frozen=True)
class Opt:
    flags: tuple[str, ...] = ()              # "--kv-type", "-fa"; (): no command-line flag
    help: str = ""
    parse: Callable[[Any], Any] | None = None   # value or text -> the field's value; raises ShimmyError/ValueError
    metavar: str | None = None
    choices: tuple | None = None
    switch: bool = False                     # a flag without a value: sets True
    repeat: bool = False                     # repeatable; the values are collected in a tuple
    key: str | None = None                   # its --config key ("" : none); None: the field's name
    shortcuts: Mapping[str, Shortcut] = field(default_factory=dict)   # key -> its flag
    fold: Callable[[Any, dict], Any] | None = None   # (current value, {shortcut key: value}) -> new value
    nested: bool = False                     # the field is itself an options record


def opt(default: Any = MISSING, *, default_factory: Any = MISSING, **meta) -> Any:
    """A dataclass field described for the CLI and config files."""
    return field(default=default, default_factory=default_factory, metadata={"opt": Opt(**meta)})


def described(cls) -> list[tuple[dataclasses.Field, Opt]]:
    return [(f, f.metadata["opt"]) for f in dataclasses.fields(cls) if "opt" in f.metadata]


def _config_key(f: dataclasses.Field, o: Opt) -> str:
    return f.name if o.key is None else o.key


class _FlagError(argparse.ArgumentTypeError):
    pass


def _typed(o: Opt, name: str) -> Callable[[str], Any]:
    """argparse's type=: the field's parser, its errors as argparse's own."""
    def parse(text: str) -> Any:
        try:
            return o.parse(text) if o.parse else text
        except (ShimmyError, ValueError) as e:
            raise _FlagError(str(e)) from None
    parse.__name__ = name
    return parse


def _default_text(f: dataclasses.Field) -> str:
    value = f.default if f.default is not MISSING else None
    return "" if value in (None, (), False, "") else f" (default {value})"


def add_flags(parser, cls, only: set[str] | None = None, skip: set[str] = frozenset()) -> None:
    """The flags of `cls`'s fields (and of nested records) on `parser`; each
    flag's value lands in the namespace under the field's name, None when
    the flag was not given."""
    for f, o in described(cls):
        if o.nested:
            add_flags(parser, _record_type(f), only, skip)
            continue
        if not o.flags or (only is not None and f.name not in only) or f.name in skip:
            continue
        kwargs: dict = {"dest": f.name, "default": None, "help": o.help + _default_text(f)}
        if o.switch:
            kwargs.update(action="store_const", const=True)
        else:
            kwargs.update(type=_typed(o, o.metavar or f.name), metavar=o.metavar, choices=o.choices)
            if o.repeat:
                kwargs["action"] = "append"
        parser.add_argument(*o.flags, **kwargs)
        for key, s in o.shortcuts.items():   # contradictions are fold's to refuse, with one message
            if s.metavar is None:
                parser.add_argument(s.flag, dest=f"{f.name}.{key}", action="store_const", const=True, default=None,
                                    help=s.help)
            else:
                parser.add_argument(s.flag, dest=f"{f.name}.{key}", metavar=s.metavar, default=None, help=s.help)


def from_flags(cls, ns: argparse.Namespace, **fixed):
    """The record `cls` from the flags parsed into `ns`: given flags over the
    defaults; `fixed` values (not flags) over both."""
    values = {}
    for f, o in described(cls):
        if o.nested:
            values[f.name] = from_flags(_record_type(f), ns)
            continue
        given = getattr(ns, f.name, None)
        if given is not None:
            values[f.name] = tuple(given) if o.repeat else given
        short = {k: getattr(ns, f"{f.name}.{k}") for k in o.shortcuts if getattr(ns, f"{f.name}.{k}", None) is not None}
        if short:
            values[f.name] = o.fold(values.get(f.name, _default(f)), short)
    values.update(fixed)
    return cls(**values)


def _record_type(f: dataclasses.Field) -> type:
    """The options record class of a nested field (its default's class)."""
    return type(_default(f))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def config_keys(cls) -> dict[str, tuple[dataclasses.Field, Opt]]:
    """Every --config key of `cls` (nested records' too) and its field."""
    out = {}
    for f, o in described(cls):
        if o.nested:
            out.update(config_keys(_record_type(f)))
            continue
        if _config_key(f, o):
            out[_config_key(f, o)] = (f, o)
        for key in o.shortcuts:
            out[key] = (f, o)
    return out


def from_mapping(cls, mapping: Mapping[str, Any], where: str, base=None):
    """The record `cls` from a config table (TOML or JSON values), each value
    parsed as its flag's would be; over `base` (default: the record's defaults).
    An unknown key or a bad value is a ShimmyError naming `where` and the key."""
    known = config_keys(cls)
    unknown = sorted(k for k in mapping if k not in known)
    if unknown:
        raise ShimmyError(f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    record = base if base is not None else cls()
    return _apply(record, mapping, where)


def _apply(record, mapping: Mapping[str, Any], where: str):
    changes = {}
    for f, o in described(type(record)):
        if o.nested:
            changes[f.name] = _apply(getattr(record, f.name), mapping, where)
            continue
        key = _config_key(f, o)
        short = {k: mapping[k] for k in o.shortcuts if k in mapping}
        try:
            if key and key in mapping:
                value = mapping[key]
                if o.repeat and isinstance(value, (list, tuple)):
                    changes[f.name] = tuple(o.parse(v) if o.parse else v for v in value)
                else:
                    changes[f.name] = o.parse(value) if o.parse else value
            if short:      # the shortcuts replace the value, as the key would: folded over the default
                changes[f.name] = o.fold(changes.get(f.name, _default(f)), short)
        except (ShimmyError, ValueError, TypeError) as e:
            keys = [k for k in (key, *o.shortcuts) if k and k in mapping]
            given = ", ".join(f"{k} = {mapping[k]!r}" for k in keys)
            raise ShimmyError(f"{where}: {given}: {e}") from None
    try:
        return dataclasses.replace(record, **changes)
    except (ShimmyError, ValueError, TypeError) as e:
        raise ShimmyError(f"{where}: {e}") from None
