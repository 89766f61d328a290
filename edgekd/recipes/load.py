"""Read a recipe: YAML with the line of every key kept, validated into a `Recipe`, errors naming field and line.

YAML is composed into nodes first (`yaml.compose`), so each key path (`students.space`,
`targets.1`) keeps the line it starts on; pydantic's error location is then mapped to the longest
key path that exists in the file: a missing field is reported at its section's line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgekd.errors import UserError
from edgekd.recipes.schema import Recipe

Loc = tuple[str | int, ...]
#: a value set from the command line, by key path, with the option that set it
Overrides = dict[tuple[str, ...], tuple[Any, str]]


def node_lines(node: yaml.Node, path: Loc = (), lines: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """The 1-based line where each key path's entry starts, for a composed YAML node tree."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, str(key.value))
            lines[here] = key.start_mark.line + 1
            node_lines(value, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            node_lines(item, (*path, index), lines)
    return lines


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The recipe's mapping and its key lines; malformed YAML fails with its line."""
    if not path.is_file():
        raise UserError(f"recipe not found: {path}; check the path")
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark or err.context_mark, err.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        began = f" {err.context} begun on line {context.line + 1}" if err.context and context else ""
        raise UserError(f"recipe {path}{line}: malformed YAML ({err.problem}{began}); fix the syntax") from None
    if not isinstance(data, dict) or node is None:
        raise UserError(f"recipe {path} must hold a YAML mapping (teacher:, students:, targets:, ...)")
    return data, node_lines(node)


def _apply(data: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """A copy of `data` with the overridden key paths set (sections created as needed)."""
    out = dict(data)
    for keys, (value, _option) in overrides.items():
        section = out
        for key in keys[:-1]:
            inner = section.get(key)
            section[key] = dict(inner) if isinstance(inner, dict) else {}
            section = section[key]
        section[keys[-1]] = value
    return out


def where(path: Path, loc: Loc, lines: dict[Loc, int], overrides: Overrides) -> str:
    """'recipe PATH, line N' for an error at `loc`, or the option that set the value."""
    for keys, (_value, option) in overrides.items():
        if tuple(loc[: len(keys)]) == keys:
            return f"recipe {path}, {option}"
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return f"recipe {path}, line {lines[loc[:end]]}"
    return f"recipe {path}"


def _message(error: Any) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        msg = "unknown field; check its spelling and section (see README, One recipe)"
    elif error["type"] == "missing":
        msg = "required field missing; add it (see README, One recipe)"
    return " ".join(msg.split())


def load_recipe(path: Path, overrides: Overrides | None = None) -> Recipe:
    """The validated recipe at `path`, with `overrides` applied; one line naming field and line on error."""
    overrides = overrides or {}
    data, lines = read_yaml(path)
    try:
        return Recipe.model_validate(_apply(data, overrides))
    except ValidationError as err:
        errors = err.errors()
        first = errors[0]
        loc = tuple(p for p in first["loc"] if isinstance(p, int) or p in _keys(lines, overrides))
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{where(path, loc, lines, overrides)}: {field}: {_message(first)}{more}") from None


def _keys(lines: dict[Loc, int], overrides: Overrides) -> set[str | int]:
    """Every key name the recipe or the overrides hold, and every field name of the schema: pydantic
    adds union and validator tags (`float`, `function-after[...]`) to locations, which are dropped."""
    names: set[str | int] = {p for loc in lines for p in loc} | {p for keys in overrides for p in keys}
    return names | set(_field_names())


def _field_names() -> set[str]:
    from pydantic import BaseModel

    seen: set[str] = set()
    stack: list[type[BaseModel]] = [Recipe]
    while stack:
        model = stack.pop()
        for name, info in model.model_fields.items():
            seen.add(name)
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                stack.append(kind)
    return seen
