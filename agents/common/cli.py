"""Dataclass-of-arguments command lines (CleanRL style, without extra dependencies).

Each command declares one dataclass whose fields carry a docstring (a string literal
right below the field); :func:`parse_args` turns it into an argparse parser — the field
docstrings become the ``--help`` text, ``env_id`` becomes ``--env-id`` — and returns a
filled instance.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import os
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Set to "0" to leave the C allocator's settings alone in agents' commands.
RETAIN_MEMORY_ENV = "AEGYM_RETAIN_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Called by agents' command-line entry points (and sweep workers), which are
    long batched runs: keep freed memory in the process
    (:func:`aegym.memory.retain_freed_memory`), so env steps reuse their buffers'
    pages instead of faulting fresh ones in every step; aegym itself never changes the
    allocator. ``AEGYM_RETAIN_FREED_MEMORY=0`` opts out. Returns whether it is on.
    """
    if os.environ.get(RETAIN_MEMORY_ENV, "1") == "0":
        return False
    from aegym.memory import retain_freed_memory

    return retain_freed_memory()


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (the string literal after each field).

    :param cls: a dataclass.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser(cls: type, prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of the dataclass ``cls``.

    Types: ``int``, ``float``, ``str``, ``bool`` (``--flag/--no-flag``), ``X | None``,
    ``list[X]`` (several values) and ``dict[str, Any]`` (a JSON object). A field with
    ``metadata={"positional": True}`` becomes an optional positional argument.

    :param cls: a dataclass whose fields all have defaults.
    :param prog: program name shown in usage.
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(inspect.getdoc(cls) or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        default = (
            f.default_factory()  # type: ignore[misc]
            if f.default is dataclasses.MISSING
            else f.default
        )
        if f.metadata.get("positional"):
            # An optional positional (``nargs="?"``): ``python -m agents evaluate RUN_DIR``.
            parser.add_argument(
                f.name,
                nargs="?",
                default=default,
                type=tp,
                metavar=f.name.upper(),
                help=docs.get(f.name, ""),
            )
            continue
        flags = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name and tp is not bool:
            flags.append(f"--{f.name}")
        kw: dict[str, Any] = {"default": default, "help": docs.get(f.name, ""), "dest": f.name}
        origin = typing.get_origin(tp)
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin in (list, tuple, Sequence):
            (elem,) = typing.get_args(tp)[:1]
            kw.update(nargs="+", type=elem)
        elif origin is dict or tp is dict:
            kw["type"] = _json_object
        else:
            kw["type"] = tp
        parser.add_argument(*flags, **kw)
    return parser


def parse_args(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls``.

    :param cls: the arguments dataclass.
    :param argv: command-line words (None: ``sys.argv[1:]``).
    :param prog: program name shown in usage.
    """
    parser = build_parser(cls, prog)
    ns = parser.parse_args(argv)
    return cls(**vars(ns))
