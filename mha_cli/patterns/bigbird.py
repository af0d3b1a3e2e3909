"""BigBird: blocks of `block` positions; a query block attends its sliding key blocks, the global
key blocks and random key blocks; global query blocks attend every key.

blocked runs it as a band (sliding blocks), one fixed set (global key blocks),
gathered blocks per query block (random) and dense rows (global query blocks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..arith import ceil_div
from ..config_fields import NonNegativeInt, PositiveInt, Section
from ..sizes import Sizes
from .base import Pattern

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan, PlanContext
    from .base import PatternRule


class BigBirdSettings(Section):
    pattern: Literal["bigbird"] = "bigbird"
    block: PositiveInt = 64  # block size
    window_blocks: PositiveInt = 3  # sliding blocks centred on the diagonal block (odd)
    global_blocks: NonNegativeInt = 1  # first and last blocks that see and are seen by all
    random_blocks: NonNegativeInt = 2  # random key blocks per query block, drawn from `seed`


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


def bigbird_rule(table: torch.Tensor, block: int) -> PatternRule:
    def rule(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return table[i // block, j // block]

    return rule


class BigBird(Pattern):  # its fields and frozen behaviour are Pattern's
    NAME = "bigbird"
    SECTION = "sparse"
    Settings = BigBirdSettings
    NOT_SHIFTABLE = "BigBird lays its blocks over the L queries, so queries placed after a cache fall outside them"

    def table(self) -> torch.Tensor:
        settings = self.settings
        return bigbird_block_table(
            ceil_div(self.sizes.seq_len, settings.block), ceil_div(self.sizes.source_len, settings.block),
            settings.window_blocks, settings.global_blocks, settings.random_blocks, self.seed,
        )

    def rule(self) -> PatternRule:
        return bigbird_rule(self.table(), self.settings.block)

    def words(self) -> str:
        sp = self.settings
        return (
            f"BigBird with blocks of {sp.block}: each query block attends the {sp.window_blocks} key blocks "
            f"centred on its diagonal block, the first and last {sp.global_blocks} key blocks, and "
            f"{sp.random_blocks} random key blocks (seed {self.seed}); the first and last "
            f"{sp.global_blocks} query blocks attend every key"
        )

    @classmethod
    def brief(cls, settings: BigBirdSettings) -> str:
        return (f"block {settings.block}, window_blocks {settings.window_blocks}, global_blocks {settings.global_blocks}, "
                f"random_blocks {settings.random_blocks}")

    @classmethod
    def problems(cls, settings: BigBirdSettings, sizes: Sizes) -> list[tuple[str, str]]:
        """Blocks that must fit the sequence: the block itself, an odd window, global and random blocks."""
        block, window = settings.block, settings.window_blocks
        global_blocks, random_blocks = settings.global_blocks, settings.random_blocks
        shortest = min(sizes.seq_len, sizes.source_len)
        if block > shortest:
            return [("sparse.block", f"block {block} is longer than the sequence ({shortest}); use a block of at most {shortest}")]
        found = []
        if window % 2 == 0:
            found.append(("sparse.window_blocks", f"{window} cannot be centred on the diagonal block; use an odd number such as {window + 1}"))
        query_blocks, key_blocks = ceil_div(sizes.seq_len, block), ceil_div(sizes.source_len, block)
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

    def plan(self, context: PlanContext) -> BlockPlan:
        import torch

        from ..pieces import Fixed, Gathered, Piece

        sparse = self.settings
        block, half = sparse.block, (sparse.window_blocks - 1) // 2
        global_blocks = sparse.global_blocks
        at = context.positions(block)
        table = self.table()

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

    def keys_per_query(self) -> int:
        sp = self.settings
        return sp.block * (sp.window_blocks + 2 * sp.global_blocks + sp.random_blocks)

    def extra_blocked_elements(self) -> int:
        """The random key and value blocks blocked gathers per query block, as elements."""
        sp, sizes = self.settings, self.sizes
        return 2 * sizes.batch_size * sizes.seq_len * sizes.embed_dim * sp.random_blocks * sp.block
