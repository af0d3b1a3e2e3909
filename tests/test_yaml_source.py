from pathlib import Path

import pytest

from mha_cli.errors import ConfigError
from mha_cli.yaml_source import format_path, load_yaml_file, load_yaml_text, parse_path, parse_value


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
