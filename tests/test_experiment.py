"""The config resolved once: the same masks, plans and pair counts as before the resolution existed, and
as the rules' own definitions say, for every pattern x causal x prefix x documents x padding x sinks."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from mha_cli.block_plan import BlockPlan
from mha_cli.config import Config
from mha_cli.experiment import resolve
from mha_cli.patterns.bigbird import bigbird_block_table

from .helpers import configs, prepared
from .mask_mods import HERE as MASK_MODS

# Masks, plans and pair counts of 240 configs, written by the code before the config was resolved once
# (commit ff43488, tests/data/masks_plans_before.json): each a digest of the tensor's bytes and its shape.
BEFORE = json.loads((Path(__file__).parent / "data" / "masks_plans_before.json").read_text())


def digest(tensor: torch.Tensor) -> str:
    tensor = tensor.contiguous()
    raw = tensor.to(torch.uint8 if tensor.dtype == torch.bool else tensor.dtype).numpy().tobytes()
    return hashlib.sha256(raw).hexdigest()[:20] + str(list(tensor.shape))


def plan_summary(plan: BlockPlan) -> dict:
    pieces = []
    for piece in plan.pieces:
        numbers = {k: v for k, v in vars(piece).items() if isinstance(v, int)}
        tensors = {k: digest(v) for k, v in vars(piece).items() if isinstance(v, torch.Tensor)}
        pieces.append({"kind": type(piece).__name__, **numbers, **tensors})
    return {"block": plan.block, "query_blocks": plan.query_blocks, "key_blocks": plan.key_blocks, "pieces": pieces,
            "dense_rows": None if plan.dense_rows is None else digest(plan.dense_rows),
            "dense_allowed": None if plan.dense_allowed is None else digest(plan.dense_allowed),
            "groups": [plan.mask_batch, plan.mask_heads]}


@pytest.mark.parametrize("before", BEFORE, ids=[entry["config"]["name"] for entry in BEFORE])
def test_masks_plans_and_pair_counts_are_what_they_were(before: dict) -> None:
    fields = json.loads(json.dumps(before["config"]).replace("MASK_MODS", str(MASK_MODS)))
    ready = prepared(Config.model_validate(fields))
    assert digest(ready.dense_allowed()) == before["mask"]
    assert list(ready.groups) == before["groups"]
    assert ready.allowed_pairs == before["pairs"]
    assert (plan_summary(ready.plan) if ready.experiment.needs_plan else None) == before["plan"]


def oracle(config: Config) -> torch.Tensor:
    """(N, H, L, S) bool, pair by pair, from the config's fields as docs/variants.md defines each rule."""
    n_, h_, length, source = config.batch_size, config.num_heads, config.seq_len, config.source_length
    table = rule = None
    if config.variant == "sparse" and config.sparse_settings.pattern == "bigbird":
        sp = config.sparse_settings
        table = bigbird_block_table(-(-length // sp.block), -(-source // sp.block), sp.window_blocks, sp.global_blocks,
                                    sp.random_blocks, config.seed)
    if config.variant == "sparse" and config.sparse_settings.pattern == "custom":
        module = sys.modules.get("tests.mask_mods") or __import__("tests.mask_mods", fromlist=["x"])
        target = getattr(module, config.sparse_settings.mask_mod.rpartition(":")[2])
        rule = target(**config.sparse_settings.mask_mod_args) if config.sparse_settings.mask_mod_args else target
    documents = config.document_lengths
    document_of = [d for d, size in enumerate(documents or []) for _ in range(size)]
    allowed = torch.zeros(n_, h_, length, source, dtype=torch.bool)
    for n in range(n_):
        for h in range(h_):
            for i in range(length):
                for j in range(source):
                    ok = True
                    if config.variant == "local":
                        s = config.local_settings
                        ok = (abs(i - j) <= s.window and abs(i - j) % s.dilation == 0) or j < s.sinks
                    elif table is not None:
                        ok = bool(table[i // config.sparse_settings.block, j // config.sparse_settings.block])
                    elif rule is not None:
                        ok = bool(rule(torch.tensor(n), torch.tensor(h), torch.tensor(i), torch.tensor(j)))
                    elif config.variant == "sparse":
                        stride = config.sparse_settings.stride
                        ok = abs(i - j) < stride or (i - j) % stride == 0
                    if config.mask.causal:
                        ok = ok and (j <= i or j < (config.mask.prefix or 0))
                    if documents is not None:
                        ok = ok and document_of[i] == document_of[j]
                    if config.key_lengths is not None:
                        ok = ok and j < config.key_lengths[n]
                    allowed[n, h, i, j] = ok
    return allowed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs())
def test_the_resolved_experiment_allows_what_each_rule_defines(config: Config) -> None:
    ready = prepared(config)
    expected = oracle(config)
    assert torch.equal(ready.dense_allowed().expand_as(expected), expected)
    assert ready.allowed_pairs == int(expected.sum())
    if ready.experiment.needs_plan:
        assert ready.plan.allowed_pairs() == int(expected.sum())


@settings(max_examples=40, deadline=None)
@given(config=configs())
def test_resolving_needs_no_torch_and_keeps_every_size(config: Config) -> None:
    experiment = resolve(config)
    sizes = experiment.sizes
    assert (sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.source_len, sizes.embed_dim, sizes.head_dim) == (
        config.batch_size, config.num_heads, config.seq_len, config.source_length, config.embed_dim, config.head_dim)
    assert (sizes.kdim, sizes.vdim) == (config.key_dim, config.value_dim)
    assert experiment.mask.key_lengths == (tuple(config.key_lengths) if config.key_lengths else None)
    assert experiment.impls == tuple(config.impls) and experiment.config == config.to_dict()
    assert (experiment.pattern is None) == (config.variant == "full")


def test_resolving_imports_no_torch() -> None:
    import subprocess

    code = ("import sys; from mha_cli.config import load_config; from mha_cli.experiment import resolve; "
            "from mha_cli.memory import check_fits; e = resolve(load_config('configs/sparse_bigbird.yaml')); "
            "check_fits(e, 2**40, 'test'); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == "False", done.stderr
