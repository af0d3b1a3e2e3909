import pytest

from mha_cli.config import load_config
from mha_cli.errors import UsageError
from mha_cli.sweep.grid import Shard, build_grid, parse_list

from ..helpers import flags


def test_comma_lists() -> None:
    assert parse_list("heads", "1,2, 4", int) == [1, 2, 4]
    assert parse_list("variant", "full,local", str) == ["full", "local"]


@pytest.mark.parametrize(("text", "message"), [("1,,2", "empty item"), ("1,x", "'x' is not an integer"), ("2,2", "listed twice")])
def test_comma_list_errors_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_list("seq_len", text, int)
    assert "--seq-len" in caught.value.message and message in caught.value.message


def test_grid_is_the_cartesian_product_with_the_last_axis_fastest() -> None:
    grid = build_grid(load_config(None), flags(heads="1,2", seq_len="10,20,30"), None)
    points = grid.points()
    assert grid.size() == 6 and [p.params for p in points[:3]] == [
        {"num_heads": 1, "seq_len": 10}, {"num_heads": 1, "seq_len": 20}, {"num_heads": 1, "seq_len": 30}]
    assert all(p.config is not None and p.config.num_heads == p.params["num_heads"] for p in points)


def test_invalid_combinations_are_skipped_with_the_reason() -> None:
    config = load_config(None, ["mask.key_padding=null"])
    grid = build_grid(config, flags(heads="2,3", variant="full,local", window="4"), None)
    reasons = {(p.params["num_heads"], p.params["variant"]): p.problem for p in grid.points()}
    assert "not divisible" in reasons[(3, "full")]
    assert "only applies to `variant: local`" in reasons[(2, "full")]
    assert reasons[(2, "local")] == ""


def test_a_value_wrong_on_its_own_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        build_grid(load_config(None), flags(heads="1,0", variant="full,dense"), None)
    assert "num_heads = 0" in caught.value.message and "variant = 'dense'" in caught.value.message


def test_sweep_section_in_the_config_and_flags_together() -> None:
    config = load_config(None, ["sweep={local.window: [2, 4]}", "variant=local", "mask.key_padding=null"])
    grid = build_grid(config, flags(heads="1,2"), "sdpa,blocked")
    assert [a.path for a in grid.axes] == ["local.window", "num_heads"]
    assert grid.base["impls"] == ["sdpa", "blocked"] and grid.base["sweep"] is None


def test_unknown_sweep_field_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match="did you mean 'local.window'"):
        build_grid(load_config(None, ["sweep={local.windw: [2]}"]), flags(), None)


def test_nothing_to_sweep() -> None:
    with pytest.raises(UsageError, match="nothing to sweep"):
        build_grid(load_config(None), flags(), None)


def test_shards_are_disjoint_and_cover_the_grid() -> None:
    shards = [Shard(i, 3) for i in (1, 2, 3)]
    owners = [[s for s in shards if s.owns(index)] for index in range(10)]
    assert all(len(o) == 1 for o in owners)
    assert Shard.parse("2/3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"
    for bad in ("0/3", "4/3", "two/3", "3"):
        with pytest.raises(UsageError):
            Shard.parse(bad)
