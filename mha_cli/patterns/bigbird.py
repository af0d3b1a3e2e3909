"""BigBird: blocks of `block` positions; a query block attends its sliding key blocks, the global
key blocks and random key blocks; global query blocks attend every key.

blocked runs it as a band (sliding blocks), one fixed set (global key blocks),
gathered blocks per query block (random) and dense rows (global query blocks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..arith import ceil_div
from ..config_fields import NonNegativeInt, PositiveInt, Section

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan
    from ..config import Config
    from .base import PatternRule

NAME = "bigbird"
RUNS_USER_CODE = False  # a built-in rule: `mha validate` may evaluate it
SECTION = "sparse"


class BigBirdConfig(Section):
    pattern: Literal["bigbird"] = "bigbird"
    block: PositiveInt = 64  # block size
    window_blocks: PositiveInt = 3  # sliding blocks centred on the diagonal block (odd)
    global_blocks: NonNegativeInt = 1  # first and last blocks that see and are seen by all
    random_blocks: NonNegativeInt = 2  # random key blocks per query block, drawn from `seed`


Settings = BigBirdConfig


def _settings(config: Config) -> BigBirdConfig:
    settings = config.sparse_settings
    assert isinstance(settings, BigBirdConfig)  # the registry only hands this module BigBird configs
    return settings


def bigbird_block_table(
    query_blocks: int, key_blocks: int, window_blocks: int, global_blocks: int, random_blocks: int, seed: int
) -> torch.Tensor:
    """(query_blocks, key_blocks) bool: which key blocks each query block attends (BigBird).

    Sliding: the window_blocks key blocks centred on the diagonal block.
    Global: the first and last global_blocks blocks attend to, and are attended by, everything.
    Random: random_blocks further key blocks per query block, drawn without
    replacement from the blocks neither sliding nor global, from `seed`.
    """
    import torch

    q = torch.arange(query_blocks)[:, None]
    k = torch.arange(key_blocks)[None, :]
    sliding = (q - k).abs() <= (window_blocks - 1) // 2
    global_keys = (k < global_blocks) | (k >= key_blocks - global_blocks)
    global_queries = (q < global_blocks) | (q >= query_blocks - global_blocks)
    table = sliding | global_keys | global_queries
    generator = torch.Generator().manual_seed(seed)
    for row in range(query_blocks):
        if global_queries[row, 0]:
            continue
        candidates = torch.nonzero(~(sliding[row] | global_keys[0])).flatten()
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:random_blocks]]
        table[row, chosen] = True
    return table


def bigbird_table_for(config: Config) -> torch.Tensor:
    settings = _settings(config)
    return bigbird_block_table(
        ceil_div(config.seq_len, settings.block),
        ceil_div(config.source_length, settings.block),
        settings.window_blocks,
        settings.global_blocks,
        settings.random_blocks,
        config.seed,
    )


def bigbird_rule(table: torch.Tensor, block: int) -> PatternRule:
    def rule(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return table[i // block, j // block]

    return rule


def rule(config: Config) -> PatternRule:
    return bigbird_rule(bigbird_table_for(config), _settings(config).block)


def words(config: Config) -> str:
    sp = _settings(config)
    return (
        f"BigBird with blocks of {sp.block}: each query block attends the {sp.window_blocks} key blocks "
        f"centred on its diagonal block, the first and last {sp.global_blocks} key blocks, and "
        f"{sp.random_blocks} random key blocks (seed {config.seed}); the first and last "
        f"{sp.global_blocks} query blocks attend every key"
    )


def brief(settings: BigBirdConfig) -> str:
    return (f"block {settings.block}, window_blocks {settings.window_blocks}, global_blocks {settings.global_blocks}, "
            f"random_blocks {settings.random_blocks}")


def varies(config: Config) -> tuple[bool, bool]:
    return False, False  # the same for every batch item and head


def problems(config: Config) -> list[tuple[str, str]]:
    """Blocks that must fit the sequence: the block itself, an odd window, global and random blocks."""
    sparse = _settings(config)
    block, window = sparse.block, sparse.window_blocks
    global_blocks, random_blocks = sparse.global_blocks, sparse.random_blocks
    shortest = min(config.seq_len, config.source_length)
    if block > shortest:
        return [("sparse.block", f"block {block} is longer than the sequence ({shortest}); use a block of at most {shortest}")]
    found = []
    if window % 2 == 0:
        found.append(("sparse.window_blocks", f"{window} cannot be centred on the diagonal block; use an odd number such as {window + 1}"))
    query_blocks, key_blocks = ceil_div(config.seq_len, block), ceil_div(config.source_length, block)
    if 2 * global_blocks > min(query_blocks, key_blocks):
        found.append(
            ("sparse.global_blocks", f"{global_blocks} first and {global_blocks} last blocks overlap: there are only "
             f"{min(query_blocks, key_blocks)} blocks of {block}; use at most {min(query_blocks, key_blocks) // 2}")
        )
    available = max(0, key_blocks - window - 2 * global_blocks)
    if random_blocks > available:
        found.append(
            ("sparse.random_blocks", f"{random_blocks} random blocks per query block, but only {available} key blocks are "
             f"neither sliding nor global ({key_blocks} blocks of {block}); use at most {available}")
        )
    return found


def plan(config: Config) -> BlockPlan:
    import torch

    from ..block_plan import Fixed, Gathered, Piece, Positions

    sparse = _settings(config)
    block, half = sparse.block, (sparse.window_blocks - 1) // 2
    global_blocks = sparse.global_blocks
    at = Positions(config, block)
    table = bigbird_table_for(config)

    def is_global_key(j: torch.Tensor) -> torch.Tensor:
        key_block = j // block
        return (key_block < global_blocks) | (key_block >= at.key_blocks - global_blocks)

    query_block = torch.arange(at.query_blocks)
    global_query = (query_block < global_blocks) | (query_block >= at.query_blocks - global_blocks)
    global_rows = global_query[None, :, None, None]
    pieces: list[Piece] = [
        at.band(-half * block, (2 * half + 1) * block, member=lambda i, j: ~is_global_key(j), exclude_rows=global_rows)
    ]
    key_block_ids = torch.arange(at.key_blocks)
    global_keys = torch.nonzero(is_global_key(key_block_ids * block)).flatten()
    if len(global_keys):
        keys = (global_keys[:, None] * block + torch.arange(block)[None, :]).flatten()
        keys = keys[keys < at.source]
        pieces.append(Fixed(keys, at.allowed(keys[None, None, None, :]) & ~global_rows))
    # Random blocks: what the table allows beyond the sliding and global blocks.
    sliding = (query_block[:, None] - key_block_ids[None, :]).abs() <= half
    extra = table & ~sliding & ~is_global_key(key_block_ids * block)[None, :] & ~global_query[:, None]
    count = int(extra.sum(dim=1).max()) if extra.numel() else 0
    if count:
        # Rows with fewer random blocks (none for global rows) repeat block 0, masked out.
        order = torch.argsort(extra.to(torch.int8), dim=1, descending=True, stable=True)[:, :count]
        real = torch.gather(extra, 1, order)
        key_blocks = torch.where(real, order, 0)
        keys = (key_blocks[:, :, None] * block + torch.arange(block)[None, None, :]).flatten(1)[None, :, None, :]
        member = real.repeat_interleave(block, dim=1)[None, :, None, :]
        pieces.append(Gathered(key_blocks, at.allowed(keys, member) & ~global_rows))
    rows = (torch.nonzero(global_query).flatten()[:, None] * block + torch.arange(block)[None, :]).flatten()
    rows = rows[rows < at.length]
    return at.plan(pieces, dense_rows=rows, dense_allowed=at.rows(rows))


def keys_per_query(config: Config) -> int:
    sp = _settings(config)
    return sp.block * (sp.window_blocks + 2 * sp.global_blocks + sp.random_blocks)


def extra_blocked_elements(config: Config) -> int:
    """The random key and value blocks blocked gathers per query block, as elements."""
    sp = _settings(config)
    return 2 * config.batch_size * config.seq_len * config.embed_dim * sp.random_blocks * sp.block
