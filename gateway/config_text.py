"""pydantic's error records as sentences a site manager can act on.

pydantic says `String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'` or `Input should be 'u16', 'i16', ...`;
a person editing a YAML file wants what is wrong with the value they wrote and, for a near miss, the word they
probably meant (`'flaot32' is not a type; did you mean f32?`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.core.strict import NAME

_QUOTED = re.compile(r"'([^']*)'")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `word` (case-insensitive), or None when nothing is close."""
    options = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in options}
    hit = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hit[0]] if hit else None


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _one_of(value: Any, expected: list[str]) -> str:
    listing = ", ".join(expected)
    guess = did_you_mean(str(value), expected) if isinstance(value, str | int) else None
    hint = f"; did you mean {guess}?" if guess is not None and guess != str(value) else ""
    return f"{_show(value)} is not one of {listing}{hint}"


def human_message(err: Mapping[str, Any]) -> str:
    """One pydantic error record (`ValidationError.errors()` item) as one sentence, without the field path."""
    kind = str(err.get("type", ""))
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown key (typo?)"
    if kind == "missing":
        return "required, and missing"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME:
            return (f"{_show(value)} is not a valid name: letters, digits and _ . - only, starting with a letter or "
                    "a digit (no spaces)")
        return f"{_show(value)} does not have the expected form (pattern {ctx.get('pattern')})"
    if kind in ("enum", "literal_error"):
        expected = _QUOTED.findall(str(ctx.get("expected", ""))) or re.findall(r"\b\w+\b",
                                                                                str(ctx.get("expected", "")))
        return _one_of(value, expected)
    if kind == "union_tag_invalid":
        tags = _QUOTED.findall(str(ctx.get("expected_tags", "")))
        return f"{ctx.get('discriminator', 'type').strip(chr(39))}: {_one_of(ctx.get('tag'), tags)}"
    if kind == "union_tag_not_found":
        return f"needs {ctx.get('discriminator', 'type')!s}"
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {_show(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {_show(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {_show(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {_show(value)}"
    if kind == "string_type":
        return f"must be text, got {_show(value)}"
    if kind == "list_type":
        return "must be a list (lines starting with `- `)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping (`key: value` lines)"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    return msg
