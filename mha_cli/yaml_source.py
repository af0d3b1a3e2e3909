"""Safe YAML reading that remembers where every value came from.

Only `yaml.SafeLoader` is used, so a `!!python/...` tag is an error and nothing
is executed. Duplicate keys are an error (PyYAML silently keeps the last one).
Each value's line is recorded under its path so that a validation problem can
point at the line that caused it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

PathKey = tuple[str | int, ...]


@dataclass
class YamlDocument:
    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], source: str) -> list[Problem]:
    """Record 1-based lines by path and report duplicate keys."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    Problem(
                        source,
                        format_path((*path, key)),
                        f"duplicate key '{key}' (first given at line {first_seen[key]}); give each key once",
                        line,
                    )
                )
                continue
            first_seen[key] = line
            lines[(*path, key)] = line
            problems += _walk(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            problems += _walk(item, (*path, index), lines, source)
    return problems


def _yaml_error_problem(error: yaml.YAMLError, source: str) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in str(error.problem):
        tag = str(error.problem).split("tag", 1)[1].strip(" '")
        message = (
            f"unsupported YAML tag {tag!r}: configs are plain YAML (mappings, lists, "
            "numbers, strings, booleans); tags are never executed"
        )
    else:
        message = f"not valid YAML: {getattr(error, 'problem', None) or error}"
    return Problem(source, "", message, line)


def load_yaml_text(text: str, source: str) -> YamlDocument:
    """Parse one YAML document. Raises ConfigError on any problem."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem(source, "", "the file is empty; expected a mapping such as `embed_dim: 64`")])
        lines: dict[PathKey, int] = {}
        problems = _walk(node, (), lines, source)
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_error_problem(error, source)]) from None
    finally:
        loader.dispose()
    return YamlDocument(data=data, source=source, lines=lines)


def load_yaml_file(path: Path) -> YamlDocument:
    source = str(path)
    if not path.exists():
        raise ConfigError([Problem(source, "", "no such file")])
    if path.is_dir():
        raise ConfigError([Problem(source, "", "is a folder, not a YAML file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(source, "", f"cannot be read: {error}")]) from None
    return load_yaml_text(text, source)


def parse_value(text: str, source: str) -> Any:
    """Read an override's value as YAML (`4` -> 4, `[a,b]` -> list, `true` -> True)."""
    if text.strip() == "":
        return ""
    return load_yaml_text(text, source).data


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(text: str) -> PathKey:
    """Inverse of format_path: "a.b[2]" -> ("a", "b", 2)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"\.|\[|\]\.?", text) if part != "")
