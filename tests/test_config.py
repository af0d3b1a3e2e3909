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
    packaged = (REPO / "mha_cli" / "examples" / "quickstart.yaml").read_text()
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


def test_the_default_pads_keys_as_fractions_giving_the_classic_lengths() -> None:
    config = load_config(None)
    assert config.mask.key_padding is not None and config.mask.key_padding.fractions is not None
    assert config.key_lengths == [10, 8, 6, 10, 3]


@pytest.mark.parametrize(
    ("override", "lengths"),
    [
        ("batch_size=2", [10, 8]),
        ("batch_size=7", [10, 8, 6, 10, 3, 10, 8]),
        ("batch_size=64", None),
        ("seq_len=512", [512, 410, 307, 512, 154]),
        ("seq_len=1", [1, 1, 1, 1, 1]),
        ("source_len=20", [20, 16, 12, 20, 6]),
        ("num_heads=8", [10, 8, 6, 10, 3]),
    ],
)
def test_every_single_field_override_of_the_default_is_valid(override: str, lengths: list[int] | None) -> None:
    config = load_config(None, [override])
    assert config.key_lengths is not None and len(config.key_lengths) == config.batch_size
    if lengths is not None:
        assert config.key_lengths == lengths


def test_source_len_alone_makes_the_attention_cross() -> None:
    assert load_config(None, ["source_len=20"]).attention == "cross"
    assert load_config(None, ["kdim=32"]).attention == "cross"
    assert load_config(None).attention == "self"


def test_an_override_of_lengths_replaces_the_default_fractions() -> None:
    config = load_config(None, ["batch_size=2", "mask.key_padding.lengths=[4,2]"])
    assert config.key_lengths == [4, 2] and config.mask.key_padding.fractions is None


def test_key_padding_needs_exactly_one_form(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "mask:\n  key_padding:\n    lengths: [1, 2, 3, 4, 5]\n    fractions: [0.5]\n"))
    assert problem.field == "mask.key_padding" and "not both" in problem.message
    (problem,) = problems_of(write(tmp_path, "mask:\n  key_padding:\n    fractions: [0.5, 0]\n"))
    assert problem.field == "mask.key_padding.fractions[1]"


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("num_heads=true", "num_heads", "valid integer"),
        ("batch_size=2.0", "batch_size", "valid integer"),
        ("seed=18446744073709551616", "seed", "less than or equal to 9223372036854775807"),
        ("seed=-1", "seed", "greater than or equal to 0"),
        ("timing.min_run_time=.inf", "timing.min_run_time", "finite"),
        ("timing.min_run_time=.nan", "timing.min_run_time", "finite"),
        ("timing.min_run_time=7200", "timing.min_run_time", "less than or equal to 3600"),
        ("timing.threads=100000", "timing.threads", "less than or equal to 4096"),
        ("seq_len=1e400", "seq_len", "valid integer"),
    ],
)
def test_numbers_are_finite_bounded_and_booleans_are_not_integers(override: str, field: str, words: str) -> None:
    (problem,) = problems_of(None, [override])
    assert problem.field == field and words in problem.message


def test_an_override_without_equals_is_explained() -> None:
    (problem,) = problems_of(None, ["num_heads=4", "causal"])
    assert "no `=`" in problem.message


def test_a_sweep_point_problem_does_not_claim_the_field_was_unset() -> None:
    from mha_cli.sweep.grid import build_grid

    grid = build_grid(load_config(None, ["mask.key_padding.lengths=[10,8,6,10,3]"]), {"batch": "1"}, None)
    (point,) = grid.points()
    assert point.config is None and "one length per batch item" in point.problem
    assert "not set" not in point.problem


def test_a_config_is_valid_whenever_it_exists() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not divisible by num_heads 3"):
        Config(embed_dim=64, num_heads=3)
    config = load_config(None)
    with pytest.raises(ConfigError, match="one length per batch item") as caught:  # every problem, located, as load_config
        config.model_copy(update={"batch_size": 2, "mask": {"key_padding": {"lengths": [1, 2, 3]}}})
    assert isinstance(caught.value, ValueError)  # as pydantic's ValidationError is, for code that catches that
    assert config.model_copy(update={"num_heads": 4}).head_dim == 16


def test_sparse_sections_are_one_model_per_pattern() -> None:
    from mha_cli.patterns.bigbird import BigBirdSettings
    from mha_cli.patterns.strided import StridedSettings

    assert load_config(None, ["variant=sparse", "seq_len=512"]).sparse_settings == BigBirdSettings()
    assert isinstance(load_config(None, ["variant=sparse", "seq_len=512", "sparse={}"]).sparse, BigBirdSettings)
    strided = load_config(None, ["variant=sparse", "sparse.pattern=strided", "sparse.stride=8"]).sparse
    assert isinstance(strided, StridedSettings) and strided.stride == 8
    (problem,) = problems_of(None, ["variant=sparse", "sparse.pattern=strided", "sparse.window_blocks=3"])
    assert problem.field == "sparse.window_blocks" and "belongs to pattern: bigbird" in problem.message
    (problem,) = problems_of(None, ["variant=sparse", "sparse.pattern=dense"])
    assert problem.field == "sparse" and "bigbird, strided" in problem.message


@pytest.mark.parametrize(("override", "words"), [("local.dilation=0", "greater than 0"), ("local.sinks=-1", "greater than or equal to 0"),
                                                 ("local.dilation=true", "valid integer")])
def test_dilation_and_sinks_are_checked(override: str, words: str) -> None:
    (problem,) = problems_of(None, ["variant=local", override])
    assert problem.field == override.split("=")[0] and words in problem.message


def test_a_prefix_needs_causal_and_fits_the_keys() -> None:
    (problem,) = problems_of(None, ["mask.prefix=4"])
    assert problem.field == "mask.prefix" and "mask.causal: true" in problem.message
    (problem,) = problems_of(None, ["mask.causal=true", "mask.prefix=11"])
    assert "longer than the key length S=10" in problem.message
    assert load_config(None, ["mask.causal=true", "mask.prefix=4"]).mask.prefix == 4



def test_documents_tile_the_sequence() -> None:
    assert load_config(None, ["mask.documents.fractions=[0.5,0.5]"]).document_lengths == [5, 5]
    assert load_config(None, ["seq_len=8192", "mask.documents.fractions=[0.125,0.125,0.125,0.125,0.125,0.125,0.125,0.125]"]
                       ).document_lengths == [1024] * 8
    (problem,) = problems_of(None, ["mask.documents.lengths=[3,3]"])
    assert problem.field == "mask.documents.lengths" and "seq_len is 10" in problem.message
    (problem,) = problems_of(None, ["mask.documents.fractions=[0.5,0.2]"])
    assert "sum to 1" in problem.message
    (problem,) = problems_of(None, ["source_len=12", "mask.key_padding=null", "mask.documents.lengths=[10]"])
    assert "self attention" in problem.message


@pytest.mark.parametrize("value", ["1", "0", "'true'", "1.0"])
@pytest.mark.parametrize("field", ["mask.causal", "batch_first", "bias", "need_weights", "average_attn_weights"])
def test_booleans_are_as_strict_as_integers(field: str, value: str) -> None:
    (problem,) = problems_of(None, [f"{field}={value}"])
    assert problem.field == field and problem.message.startswith("must be true or false")
    assert problem.source == f"override `{field}={value}`"


def test_a_tab_indented_file_gets_the_hint_that_yaml_indents_with_spaces(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "embed_dim: 64\nmask:\n\tcausal: true\n"))
    assert problem.line == 3 and "indented with a tab" in problem.message and "spaces" in problem.message


def test_every_message_starts_in_lower_case(tmp_path: Path) -> None:
    from mha_cli.errors import UsageError
    from mha_cli.sweep.grid import Axis, check_axes

    with pytest.raises(UsageError) as caught:
        check_axes([Axis("num_heads", [0])])
    assert "num_heads = 0: input should be greater than 0" in caught.value.message
    for problem in problems_of(None, ["num_heads=0", "seq_len=-1", "timing.min_run_time=0", "dtype=float7"]):
        assert not problem.message[:1].isupper(), problem


def test_a_missing_field_blames_the_override_that_made_it_needed() -> None:
    (problem,) = problems_of(None, ["variant=sparse", "sparse.pattern=custom"])
    assert problem.field == "sparse.mask_mod" and problem.source == "override `sparse.pattern=custom`"


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n"])
def test_yaml_1_1_booleans_are_not_booleans(tmp_path: Path, word: str) -> None:
    (problem,) = problems_of(write(tmp_path, f"embed_dim: 64\nbias: {word}\n"))
    assert problem.field == "bias" and problem.line == 2 and problem.message == f"must be true or false (got {word!r})"
    assert load_config(write(tmp_path, f"name: {word}\nbias: TRUE\n")).name == word  # a word stays a word
