"""Safe YAML reading that remembers where every value came from.

Only `yaml.SafeLoader` (with YAML 1.2's booleans: true and false) is used, so a
`!!python/...` tag is an error and nothing is executed. Duplicate keys are an error (PyYAML silently keeps the last one).
Each value's line is recorded under its path so that a validation problem can
point at the line that caused it.

Hostile input is refused before it costs anything: files over MAX_FILE_BYTES,
control characters, nesting deeper than MAX_DEPTH (a recursive alias is
infinitely deep), and documents whose aliases expand to more than
MAX_EXPANDED_NODES nodes (a "billion laughs" bomb is a few hundred bytes).
The expansion is counted on the composed node graph, where an alias is a
shared reference, so counting stops at the limit without building anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EXPANDED_NODES = 100_000
# C0 controls other than tab, newline and carriage return; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _TooLarge(Exception):
    """The document expands past a limit; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


@dataclass
class YamlDocument:
    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], source: str, budget: list[int]) -> list[Problem]:
    """Record 1-based lines by path and report duplicate keys; raise _TooLarge past the limits.

    budget: one mutable count of the nodes still allowed, shared by the whole walk.
    """
    budget[0] -= 1
    line = node.start_mark.line + 1
    if budget[0] < 0:
        raise _TooLarge(Problem(source, format_path(path[:1]), f"the document expands to more than {MAX_EXPANDED_NODES:,} "
                                "values (aliases repeated inside aliases?); configs are small, write the values out", line))
    if len(path) > MAX_DEPTH:
        raise _TooLarge(Problem(source, format_path(path[:1]), f"nested more than {MAX_DEPTH} levels deep "
                                "(a recursive alias?); configs are at most a few levels deep", line))
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
            problems += _walk(value_node, (*path, key), lines, source, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            problems += _walk(item, (*path, index), lines, source, budget)
    return problems


def _tab_indented_line(text: str) -> int | None:
    """The first line (1-based) whose indentation holds a tab, or None."""
    for number, line in enumerate(text.splitlines(), start=1):
        indentation = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indentation and line.strip():
            return number
    return None


def _yaml_error_problem(error: yaml.YAMLError, source: str, text: str) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    tabbed = _tab_indented_line(text)
    if tabbed is not None:  # the parser's own words ("found character '\t' ...") do not say what to do
        return Problem(source, "", "not valid YAML: this line is indented with a tab; "
                       "YAML indents with spaces only (replace the tabs with spaces)", tabbed)
    if "'\\t'" in str(getattr(error, "problem", "")):
        return Problem(source, "", "not valid YAML: a tab where YAML allows only spaces (replace it with spaces)", line)
    if isinstance(error, yaml.constructor.ConstructorError) and "tag" in str(error.problem):
        tag = str(error.problem).split("tag", 1)[1].strip(" '")
        message = (
            f"unsupported YAML tag {tag!r}: configs are plain YAML (mappings, lists, "
            "numbers, strings, booleans); tags are never executed"
        )
    else:
        message = f"not valid YAML: {getattr(error, 'problem', None) or error}"
    return Problem(source, "", message, line)


def _check_text(text: str, source: str) -> None:
    """Size and control characters, before the parser sees the text."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_FILE_BYTES:
        raise ConfigError([Problem(source, "", f"is {size:,} bytes; a config may be at most {MAX_FILE_BYTES:,} bytes")])
    bad = _CONTROL.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError([Problem(source, "", f"contains the control character {bad.group()!r}; configs are plain text "
                                   "(was a binary file given?)", line)])


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans: true and false only (in any of True, TRUE). YAML 1.1's yes, no,
    on, off and y are strings here, so `bias: yes` is refused as not a boolean instead of read as true:
    booleans are as strict as integers."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml_text(text: str, source: str) -> YamlDocument:
    """Parse one YAML document. Raises ConfigError on any problem, hostile input included."""
    _check_text(text, source)
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem(source, "", "the file is empty; expected a mapping such as `embed_dim: 64`")])
        lines: dict[PathKey, int] = {}
        problems = _walk(node, (), lines, source, [MAX_EXPANDED_NODES])
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_error_problem(error, source, text)]) from None
    except _TooLarge as error:
        raise ConfigError([error.problem]) from None
    except RecursionError:  # brackets nested thousands deep overflow the parser itself
        raise ConfigError([Problem(source, "", f"nested far more than {MAX_DEPTH} levels deep; configs are at most a few levels deep")]) from None
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
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:  # refused before reading a byte: it may be /dev/zero's cousin
            raise ConfigError([Problem(source, "", f"is {size:,} bytes; a config may be at most {MAX_FILE_BYTES:,} bytes")])
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_FILE_BYTES + 1)
    except UnicodeDecodeError as error:
        raise ConfigError([Problem(source, "", f"is not UTF-8 text (byte {error.start}: {error.reason}); configs are plain text")]) from None
    except OSError as error:
        raise ConfigError([Problem(source, "", f"cannot be read: {error.strerror or error}")]) from None
    return load_yaml_text(text, source)


def parse_value(text: str, source: str) -> Any:
    """Read an override's value as YAML (`4` -> 4, `[a,b]` -> list, `true` -> True)."""
    if text.strip() == "":
        return ""
    return load_yaml_text(text, source).data


def value_text(value: Any) -> str:
    """A value as an override writes it: `null`, `true`, `[1, 2]`, `{kind: softcap, cap: 5.0}`; a swept value in
    labels, tables and pictures (never Python's repr)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return str(value)


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
