from pathlib import Path

import pytest

from mha_cli.errors import ConfigError
from mha_cli.yaml_source import (
    format_path,
    load_yaml_file,
    load_yaml_text,
    parse_path,
    parse_value,
)


def test_lines_are_recorded_by_path() -> None:
    document = load_yaml_text("a: 1\nmask:\n  causal: true\nlist:\n  - 3\n  - 4\n", "f.yaml")
    assert document.lines[("a",)] == 1
    assert document.lines[("mask", "causal")] == 3
    assert document.lines[("list", 1)] == 6


def test_duplicate_keys_are_an_error_naming_both_lines() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text("embed_dim: 64\nnum_heads: 2\nembed_dim: 32\n", "f.yaml")
    (problem,) = caught.value.problems
    assert problem.line == 3 and "first given at line 1" in problem.message


def test_python_tags_are_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(text, "f.yaml")
    assert "tag" in caught.value.problems[0].message
    assert not marker.exists()


def test_empty_document_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_yaml_text("# only a comment\n", "f.yaml")


def test_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text("a: 1\nb: [1, 2\n", "f.yaml")
    assert caught.value.problems[0].line is not None


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="folder"):
        load_yaml_file(tmp_path)


def test_override_values_are_read_as_yaml() -> None:
    assert parse_value("4", "o") == 4
    assert parse_value("true", "o") is True
    assert parse_value("[sdpa, manual]", "o") == ["sdpa", "manual"]
    assert parse_value("null", "o") is None


def test_paths_round_trip() -> None:
    for path in [("a",), ("mask", "key_padding", "lengths", 2), ("impls", 0)]:
        assert parse_path(format_path(path)) == path


BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(9)]
)


def test_an_alias_bomb_is_refused_fast() -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_yaml_text(BOMB, "bomb.yaml")
    assert time.perf_counter() - start < 5  # unguarded, these 400 bytes take 26 s and 3.7 GB


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: &a [*a]\n", "nested more than"),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nested far more than"),
        ("x: " + "[" * 40 + "]" * 40 + "\n", "nested more than"),
        ("name: a\x00b\n", "control character"),
        ("name: ok\nseed: 1\x1b[31m\n", "control character"),
    ],
)
def test_hostile_yaml_is_a_config_error(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        load_yaml_text(text, "hostile.yaml")
    if "control" in words:
        assert caught.value.problems[0].line == text[: text.index(next(c for c in text if ord(c) < 32 and c != "\n"))].count("\n") + 1


def test_files_over_the_size_cap_are_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="at most 1,048,576 bytes"):
        load_yaml_file(big)


def test_non_utf8_files_are_named_as_such(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml_file(binary)


def test_override_values_get_the_same_limits() -> None:
    with pytest.raises(ConfigError, match="nested more than"):
        parse_value("&a [*a]", "override `x=...`")
