"""Checking a model's tool arguments against the tool's JSON schema.

The subset of JSON Schema the tools declare: an object of named properties, each a
string (length, enum, pattern), integer (range), boolean or array of strings;
`required`, `default` and `additionalProperties: false`. Messages name the argument
and what it should be, so the model can correct its call and a person can read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class ArgumentError(ValueError):
    """The arguments do not fit the schema; the message says which and why."""


def _describe(schema: Mapping[str, Any]) -> str:
    description = schema.get("description")
    return f" ({description})" if isinstance(description, str) and description else ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_string(name: str, value: Any, schema: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"Argument '{name}' must be text; got {_shown(value)}.")
    value = value.strip()
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        raise ArgumentError(
            f"Argument '{name}' must be one of: {', '.join(map(str, enum))}; got {_shown(value)}."
        )
    minimum = schema.get("minLength")
    if minimum is not None and len(value) < minimum:
        if minimum == 1:
            raise ArgumentError(f"Argument '{name}' must not be empty{_describe(schema)}.")
        raise ArgumentError(f"Argument '{name}' must be at least {minimum} characters long.")
    maximum = schema.get("maxLength")
    if maximum is not None and len(value) > maximum:
        raise ArgumentError(
            f"Argument '{name}' is too long: at most {maximum:,} characters, got {len(value):,}."
        )
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        example = schema.get("examples")
        hint = f", for example {example[0]!r}" if isinstance(example, list) and example else ""
        raise ArgumentError(
            f"Argument '{name}' is not in the expected form{_describe(schema)}{hint}; "
            f"got {_shown(value)}."
        )
    return value


def _check_integer(name: str, value: Any, schema: Mapping[str, Any]) -> int:
    # Models sometimes write 10.0 for 10; a bool is never a number here.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"Argument '{name}' must be a whole number; got {_shown(value)}.")
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        raise ArgumentError(f"Argument '{name}' must be {bounds}; got {value}.")
    return value


def _check_array(name: str, value: Any, schema: Mapping[str, Any]) -> list[Any]:
    if not isinstance(value, list):
        raise ArgumentError(f"Argument '{name}' must be a list; got {_shown(value)}.")
    maximum = schema.get("maxItems")
    if maximum is not None and len(value) > maximum:
        raise ArgumentError(f"Argument '{name}' takes at most {maximum} items; got {len(value)}.")
    item_schema = schema.get("items") or {}
    return [_check_value(f"{name}[{index}]", item, item_schema) for index, item in enumerate(value)]


def _check_value(name: str, value: Any, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "string":
        return _check_string(name, value, schema)
    if kind == "integer":
        return _check_integer(name, value, schema)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ArgumentError(f"Argument '{name}' must be true or false; got {_shown(value)}.")
        return value
    if kind == "array":
        return _check_array(name, value, schema)
    raise TypeError(f"the schema of {name!r} uses an unsupported type {kind!r}")


def validate_arguments(schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """The arguments checked, trimmed and completed with defaults. Raises ArgumentError.

    A null optional argument counts as absent (models often send them)."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise ArgumentError("The arguments must be a JSON object of named values.")
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    if schema.get("additionalProperties") is False:
        unknown = sorted(str(key) for key in arguments if key not in properties)
        if unknown:
            accepted = ", ".join(properties) or "no arguments"
            raise ArgumentError(
                f"Unknown argument{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(key) for key in unknown)}; this tool takes: {accepted}."
            )
    result: dict[str, Any] = {}
    for name, property_schema in properties.items():
        value = arguments.get(name)
        if value is None:
            if name in required:
                raise ArgumentError(
                    f"Missing required argument '{name}'{_describe(property_schema)}."
                )
            if "default" in property_schema:
                result[name] = property_schema["default"]
            continue
        checked = _check_value(name, value, property_schema)
        if name in required and checked in ("", []):
            raise ArgumentError(f"Argument '{name}' must not be empty{_describe(property_schema)}.")
        result[name] = checked
    return result
