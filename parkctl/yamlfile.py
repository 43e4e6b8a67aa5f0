"""Load a YAML file into a pydantic model, with one-line errors that name the field and the reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from parkctl.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: object, env: Mapping[str, str], source: str, where: str = "") -> object:
    """Replace ``${NAME}`` in every string of parsed YAML, so secrets stay out of the file.

    Done after parsing (not on the text), so a value with quotes or colons cannot change the YAML's
    structure. An unset variable is a :class:`ConfigError` naming the field and the variable.
    """
    if isinstance(data, str):

        def value(m: re.Match[str]) -> str:
            if m[1] not in env:
                raise ConfigError(f"{source}: field '{where or '(top level)'}': environment variable {m[1]} is not set")
            return env[m[1]]

        return _ENV_REF.sub(value, data)
    if isinstance(data, dict):
        return {k: expand_env(v, env, source, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env, source, f"{where}.{i}" if where else str(i)) for i, v in enumerate(data)]
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """The first wrong field and why, plus how many more there are."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field '{where}': {first['msg']}{more}"


def parse_yaml_model(text: str, model: type[M], source: str, env: Mapping[str, str] | None = None) -> M:
    """Validate YAML ``text`` as ``model``; ``source`` names the file in error messages.

    With ``env``, ``${NAME}`` in any string is first replaced from it (see :func:`expand_env`).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    if env is not None:
        data = expand_env(data, env, source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
