"""One test per class of bad input: each must give a located, helpful problem."""

from pathlib import Path

import pytest

from mha_cli.config import Config, load_config
from mha_cli.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path | None, overrides: list[str] | None = None) -> list:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides or [])
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.problems


def test_builtin_default_is_the_shipped_quickstart() -> None:
    shipped = (REPO / "configs" / "quickstart.yaml").read_text()
    packaged = (REPO / "mha_cli" / "defaults" / "quickstart.yaml").read_text()
    assert shipped == packaged
    assert load_config(None) == load_config(REPO / "configs" / "quickstart.yaml")


def test_quickstart_is_the_classic_tutorial_example() -> None:
    config = load_config(None)
    assert (config.embed_dim, config.num_heads, config.seq_len, config.batch_size, config.attention) == (64, 2, 10, 5, "self")


def test_misspelled_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "embed_dim: 64\nnum_head: 2\n"))
    assert problem.field == "num_head" and problem.line == 2
    assert "did you mean 'num_heads'" in problem.message


def test_misspelled_nested_key(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "mask:\n  causl: true\n"))
    assert problem.field == "mask.causl" and problem.line == 2 and "'causal'" in problem.message


def test_wrong_choice_lists_what_is_allowed(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "dtype: float8\n"))
    assert "float32" in problem.message and "bfloat16" in problem.message


def test_heads_must_divide_embed_dim(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "embed_dim: 64\nnum_heads: 3\n"))
    assert problem.field == "num_heads" and problem.line == 2 and "divisible" in problem.message


@pytest.mark.parametrize("field", ["embed_dim", "num_heads", "batch_size", "seq_len"])
@pytest.mark.parametrize("value", [0, -4])
def test_sizes_must_be_positive(tmp_path: Path, field: str, value: int) -> None:
    problems = problems_of(write(tmp_path, f"{field}: {value}\n"))
    assert [p.field for p in problems] == [field]
    assert "greater than 0" in problems[0].message


def test_key_padding_lengths_are_range_checked_and_counted(tmp_path: Path) -> None:
    text = "batch_size: 3\nseq_len: 8\nmask:\n  key_padding:\n    lengths: [8, 9]\n"
    problems = problems_of(write(tmp_path, text))
    messages = {p.field: p.message for p in problems}
    assert "one length per batch item" in messages["mask.key_padding.lengths"]
    assert "1..8" in messages["mask.key_padding.lengths[1]"]


def test_key_padding_length_zero(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "batch_size: 2\nmask:\n  key_padding:\n    lengths: [3, 0]\n"))
    assert problem.field == "mask.key_padding.lengths[1]" and problem.line == 4


def test_cross_attention_fields_need_cross_attention(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "attention: self\nkdim: 12\nsource_len: 7\n"))
    assert sorted(p.field for p in problems) == ["kdim", "source_len"]
    assert all("attention: cross" in p.message for p in problems)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "num_head: 2\nembed_dim: 64\nnum_heads: 3\ndtype: float8\nimpls: [torch, sdp]\n"
    problems = problems_of(write(tmp_path, text))
    assert {p.field for p in problems} == {"num_head", "num_heads", "dtype", "impls[1]"}
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_top_level_list_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "- embed_dim: 64\n"))
    assert "mapping" in problem.message and "list" in problem.message


def test_overrides_apply_dotted_and_as_yaml() -> None:
    config = load_config(None, ["num_heads=4", "mask.causal=true", "impls=[sdpa,manual]", "timing.min_run_time=0.5"])
    assert config.num_heads == 4 and config.mask.causal and config.impls == ["sdpa", "manual"]
    assert config.timing.min_run_time == 0.5


def test_override_problems_name_the_override() -> None:
    problems = problems_of(None, ["num_heads=abc", "mask.causal", "nmu_heads=2"])
    sources = [p.source for p in problems]
    assert "override `num_heads=abc`" in sources and "override `mask.causal`" in sources
    unknown = next(p for p in problems if p.field == "nmu_heads")
    assert unknown.source == "override `nmu_heads=2`" and "num_heads" in unknown.message


def test_override_into_a_non_section() -> None:
    (problem,) = problems_of(None, ["embed_dim.size=3"])
    assert "not a section" in problem.message


def test_duplicate_impls(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "impls: [sdpa, sdpa]\n"))
    assert "more than once" in problem.message


def test_empty_impls(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "impls: []\n"))
    assert problem.field == "impls"


def test_name_must_be_folder_safe(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "name: ../../etc\n"))
    assert problem.field == "name"


def test_derived_sizes() -> None:
    config = Config(attention="cross", embed_dim=64, num_heads=4, seq_len=3, source_len=7, kdim=5)
    assert (config.source_length, config.key_dim, config.value_dim, config.head_dim) == (7, 5, 64, 16)
