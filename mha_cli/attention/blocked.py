"""`blocked`: local and sparse attention block by block, never an L x S tensor.

The block plan (block_plan.py) splits the pattern into disjoint pieces
(pieces.py). Each piece is one call of a fused attention kernel on views of K
and V that copy little or nothing, laid out by the piece itself.
Pieces are merged exactly with their log-sum-exp (the way FlashAttention
merges key splits): out = sum_p exp(lse_p - lse) * out_p, lse = logsumexp_p lse_p.
Memory is O(L * keys-per-query * H * N) for the masks and O(L * d * H * N) for
the rest. Full attention has no pattern to exploit: it defers to SDPA.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..block_plan import BlockPlan
from ..errors import Unsupported
from ..experiment import Experiment
from ..pieces import Piece
from ..score_mods.applied import AppliedMod
from ..sizes import Sizes
from ..workload import Workload
from . import Forward
from .layer import Core, additive_mask, layer_around, mod_not_a_bias


def unsupported(experiment: Experiment) -> str | None:
    # Every pattern has a plan, full attention defers to SDPA, other devices take the autograd path; a score
    # mod reaches the fused kernels only as an additive bias.
    return mod_not_a_bias(experiment, "blocked (fused kernels with an additive mask)")


def _attend_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, no_key: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of (G, X, Lq, d) on (G, X, Lk, d) with an additive mask; also log-sum-exp (G, X, Lq).

    On the CPU, PyTorch's fused flash kernel returns the log-sum-exp too; elsewhere the math is spelt out.
    Rows without an allowed key get lse = -inf so that they weigh nothing in the merge.
    """
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias, scale=scale)
    else:
        scores = (q @ k.transpose(-2, -1)) * scale + bias
        lse = torch.logsumexp(scores, dim=-1)
        out = torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v
    return out, lse.masked_fill(no_key, float("-inf"))


def _fold(x: torch.Tensor, group: int) -> torch.Tensor:
    """(K*G, X, R, ...) per query head -> (K, X, G*R, ...): the rows of a group's G query heads stacked, to be
    attended against their one key/value head in one call (grouped-query attention reads K and V once per group)."""
    heads, blocks, rows, *rest = x.shape
    return x.view(heads // group, group, blocks, rows, *rest).transpose(1, 2).reshape(heads // group, blocks, group * rows, *rest)


def _fold_mask(x: torch.Tensor, group: int) -> torch.Tensor:
    """_fold for a mask whose first dimension may be 1 (one mask for every head of the chunk)."""
    if group == 1:
        return x
    return _fold(x.expand(group, *x.shape[1:]) if x.shape[0] == 1 else x, group)


def _unfold(x: torch.Tensor, group: int) -> torch.Tensor:
    """The inverse of _fold: (K, X, G*R, ...) -> (K*G, X, R, ...)."""
    kv_heads, blocks, rows, *rest = x.shape
    return x.view(kv_heads, blocks, group, rows // group, *rest).transpose(1, 2).reshape(kv_heads * group, blocks, rows // group, *rest)


@dataclass(frozen=True)
class _Groups:
    """The mask groups blocked works with: the plan's (where the mask differs by item or head), split further
    where a score mod's bias differs (ALiBi: per head). For each: its batch item, head and plan group."""

    batch: int  # N where the mask or the bias differs per batch item, else 1
    heads: int  # H where either differs per head, else 1
    item: torch.Tensor  # (G, 1, 1, 1) the batch item of each group (0 where it does not matter)
    head: torch.Tensor  # (G, 1, 1, 1) its head
    plan_group: torch.Tensor  # (G,) the plan's mask group it reads

    @classmethod
    def of(cls, plan: BlockPlan, sizes: Sizes, mod: AppliedMod | None, device: torch.device) -> _Groups:
        by_batch, by_head = mod.varies() if mod is not None else (False, False)
        batch = sizes.batch_size if plan.mask_batch > 1 or by_batch else 1
        heads = sizes.num_heads if plan.mask_heads > 1 or by_head else 1
        pairs = [(item, head) for item in range(batch) for head in range(heads)]
        item = torch.tensor([p[0] for p in pairs], device=device)[:, None, None, None]
        head = torch.tensor([p[1] for p in pairs], device=device)[:, None, None, None]
        plan_group = torch.tensor([plan.group(i, h) for i, h in pairs], device=device)
        return cls(batch, heads, item, head, plan_group)

    def index(self, item: int, head: int) -> int:
        return (item if self.batch > 1 else 0) * self.heads + (head if self.heads > 1 else 0)


# Problems whose masks are alike share one mask when there are at least this many in a row (fewer: each its own,
# and one kernel call less).
REPEATED_RUN = 8
# A score mod's biases are made once for every piece while they take at most this many bytes together; beyond,
# each chunk of heads makes its own on every call (slower, but no L x keys-per-query x H tensor is kept).
MOD_BIAS_BYTES = 256 * 2**20


def _shared_distance(query_at: torch.Tensor, key_at: torch.Tensor, allowed: torch.Tensor,
                     rows: int = 256) -> torch.Tensor | None:
    """j - i of one problem (1, 1, rows, keys) when every problem's allowed pairs have the same (a band's
    windows slide with their query block), else None. The middle problem is the one read: the first and last
    hold padding (position 0) where others hold keys. Compared a few problems at a time."""
    middle = query_at.shape[1] // 2
    first = key_at[:, middle:middle + 1] - query_at[:, middle:middle + 1]
    used = allowed.any(dim=0, keepdim=True)  # pairs some mask group allows (the rest read padding)
    for start in range(0, query_at.shape[1], rows):
        stop = min(start + rows, query_at.shape[1])
        distance = key_at[:, start:stop] - query_at[:, start:stop]
        if not bool(((distance == first) | ~used[:, start:stop]).all()):
            return None
    return first


class _PieceRunner:
    """One piece on the run's device, with its masks prepared once in the run's dtype. With a score mod that
    is a bias, its mask is that bias where allowed (-inf elsewhere), evaluated on the positions of the
    piece's own layout: no L x S tensor."""

    def __init__(self, piece: Piece, plan: BlockPlan, length: int, source: int, dtype: torch.dtype, device: torch.device,
                 groups: _Groups | None = None, mod: AppliedMod | None = None, made_once: bool = True) -> None:
        self.piece, self.plan = piece.to(device), plan
        allowed = piece.kernel_allowed(length).to(device)
        self.allowed, self.dtype, self.mod, self.groups = allowed, dtype, mod, groups
        self._folded: dict[tuple, list[tuple[slice, torch.Tensor]]] = {}  # (group, mask groups) -> folded masks
        self.segments: list[tuple[slice, torch.Tensor]] | None = None
        if mod is None or groups is None:
            self.bias: torch.Tensor | None = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(
                ~allowed, float("-inf"))
            self.no_key = ~allowed.any(dim=-1)
            return
        # Where each (row, key) of the layout sits: padding rows and keys read position 0, and are not allowed.
        self.query_at = self.piece.queries_for(torch.arange(length, device=device)[None, :, None], plan)[..., 0, None]
        self.key_at = self.piece.keys_for(torch.arange(source, device=device)[None, :, None], plan)[..., 0][..., None, :]
        self.no_key = (~allowed.any(dim=-1)).index_select(0, groups.plan_group)
        # A mod that reads only j - i (ALiBi, a relative bias) over a layout where j - i is the same in every
        # problem (a band's windows): its term is one (g, 1, rows, keys) block, added to the mask's -inf/0.
        self.distance = _shared_distance(self.query_at, self.key_at, allowed) if mod.mod.RELATIVE else None
        self.mask_bias = (torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
                          if self.distance is not None else None)
        self.bias = None
        if self.distance is not None:
            self.segments = self._made_segments(mod)
            if not mod.trained:
                self.mask_bias = None  # in the segments now; a trained table's backward makes its biases again
        elif made_once:
            self.bias = self.bias_of(slice(0, len(groups.plan_group)))

    def _made_segments(self, mod: AppliedMod) -> list[tuple[slice, torch.Tensor]]:
        """The problems cut into runs, each with its additive mask for every mask group. A run of at least
        REPEATED_RUN problems whose masks are all alike (a band's interior; the stretch past a short item's
        padding) holds one (G, 1, rows, keys) mask, read through a view that repeats it; the problems between
        such runs (the ends of a band) hold their own."""
        allowed, problems = self.allowed, self.allowed.shape[1]
        like_previous = torch.zeros(problems, dtype=torch.bool, device=allowed.device)
        for start in range(1, problems, 256):
            stop = min(start + 256, problems)
            like_previous[start:stop] = (allowed[:, start:stop] == allowed[:, start - 1:stop - 1]).flatten(2).all(
                dim=-1).all(dim=0)
        starts = [*(~like_previous).nonzero().flatten().tolist(), problems]
        everything = slice(0, len(self.groups.plan_group))  # type: ignore[union-attr]
        fixed = mod.with_tables({name: table.detach() for name, table in mod.tables.items()})
        runs: list[tuple[slice, torch.Tensor]] = []
        own = 0  # the first problem not yet in a run: those before a repeated run get their own masks
        for first, end in zip(starts, starts[1:]):
            if end - first < REPEATED_RUN:
                continue
            if first > own:
                runs.append((slice(own, first), self.bias_of(everything, fixed, slice(own, first))))
            runs.append((slice(first, end), self.bias_of(everything, fixed, slice(first, first + 1))))
            own = end
        if own < problems:
            runs.append((slice(own, problems), self.bias_of(everything, fixed, slice(own, problems))))
        return runs

    def bias_of(self, pick: slice, mod: AppliedMod | None = None, problems: slice = slice(None)) -> torch.Tensor:
        """The additive mask of the mask groups `pick` (and of these problems): kept, or made from positions
        (with `mod`, another binding of the same mod: the backward's copy of a learned table)."""
        if mod is None and self.bias is not None:
            return self.bias[pick]
        mod = mod or self.mod
        groups = self.groups
        assert mod is not None and mod.bias is not None and groups is not None
        plan_groups = groups.plan_group[pick]
        if self.distance is not None:  # j - i alone: key position `distance` for a query at position 0
            assert self.mask_bias is not None
            origin = torch.tensor(mod.query_offset, device=self.distance.device)
            term = mod.bias(groups.item[pick], groups.head[pick], origin, self.distance).to(self.dtype)
            # One pass: the mask's -inf/0 (one group for every head, or the chunk's own) plus the term, broadcast.
            mask = self.mask_bias[:, problems]
            mask = mask if mask.shape[0] == 1 else mask.index_select(0, plan_groups)
            return torch.add(mask, term)
        allowed = self.allowed.index_select(0, plan_groups)
        term = mod.bias(groups.item[pick], groups.head[pick], self.query_at + mod.query_offset, self.key_at)
        return term.to(self.dtype).expand(allowed.shape).masked_fill(~allowed, float("-inf"))

    def bias_bytes_per_group(self) -> int:
        """What bias_of makes per mask group: one additive mask in the layout."""
        return self.allowed[0].numel() * torch.empty((), dtype=self.dtype).element_size()

    def keys_for(self, x: torch.Tensor) -> torch.Tensor:
        return self.piece.keys_for(x, self.plan)

    def queries_for(self, q: torch.Tensor) -> torch.Tensor:
        return self.piece.queries_for(q, self.plan)

    def rows_back(self, x: torch.Tensor, length: int) -> torch.Tensor:
        return self.piece.rows_back(x, length)

    def _no_key(self, pick: slice, group: int) -> torch.Tensor:
        """The rows without an allowed key for these heads, folded by groups of query heads."""
        return _fold_mask(self.no_key[pick], group)

    def runs(self, pick: slice, group: int) -> list[tuple[slice, torch.Tensor]]:
        """(problems, additive mask) for these heads, folded by groups of query heads: one run of every problem,
        or (a mod's term shared by every problem) the ends' own masks and the interior's one mask repeated."""
        key = (group, pick.start, pick.stop)
        if key in self._folded:
            return self._folded[key]
        if self.segments is None:
            made = [(slice(None), _fold_mask(self.bias_of(pick), group))]
        else:
            made = []
            for run, bias in self.segments:
                mask = _fold_mask(bias[pick], group)
                made.append((run, mask.expand(mask.shape[0], run.stop - run.start, *mask.shape[2:])))
        # Kept when it is small (a mask shared by every head, or runs of the interior's one mask): not a whole
        # layout per chunk of heads, which the next call would make again anyway.
        if self.segments is not None or (self.bias is not None and (group == 1 or self.bias.shape[0] == 1)):
            self._folded[key] = made
        return made

    def _kernel(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pick: slice, group: int,
                scale: float, with_lse: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fused kernel on problems in layout (queries already folded), run by run; out (and lse)."""
        outs, lses = [], []
        no_key = self._no_key(pick, group) if with_lse else None
        for run, bias in self.runs(pick, group):
            q_run, k_run, v_run = queries[:, run], keys[:, run], values[:, run]
            if with_lse:
                assert no_key is not None
                out, lse = _attend_with_lse(q_run, k_run, v_run, bias, no_key[:, run], scale)
                lses.append(lse)
            else:
                out = F.scaled_dot_product_attention(q_run, k_run, v_run, attn_mask=bias, scale=scale)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        lse = None if not with_lse else lses[0] if len(lses) == 1 else torch.cat(lses, dim=1)
        return out, lse

    def single(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pick: slice, scale: float,
               group: int = 1) -> torch.Tensor:
        """The only piece: the public fused kernel, no merge needed. `pick`: the mask groups of these heads.
        group > 1: k and v hold one head per G query heads of q, whose rows are stacked against it."""
        # The additive float mask made once in __init__: a bool mask would be converted
        # to one on every call, and a 4-D one keeps SDPA on its fused CPU kernel.
        queries = self.queries_for(q)
        out, _ = self._kernel(_fold(queries, group) if group > 1 else queries, self.keys_for(k), self.keys_for(v),
                              pick, group, scale, with_lse=False)
        return self.rows_back(_unfold(out, group) if group > 1 else out, q.shape[1])

    def single_into(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pick: slice, scale: float, group: int,
                    into: torch.Tensor) -> None:
        """single() written into `into` (g, L, d) through a view in the stacked layout: one copy fewer of the
        output, where this piece's query rows are plain blocks with no padding rows (else single, copied)."""
        queries = self.queries_for(q)
        heads, blocks, rows = queries.shape[:3]
        plain = type(self.piece).rows_back is Piece.rows_back and blocks * rows == q.shape[1]
        if group == 1 or not plain:
            into.copy_(self.single(q, k, v, pick, scale, group))
            return
        out, _ = self._kernel(_fold(queries, group), self.keys_for(k), self.keys_for(v), pick, group, scale,
                              with_lse=False)
        target = into.view(heads // group, group, blocks, rows, -1).transpose(1, 2)  # (K, X, G, R, d), a view of into
        target.copy_(out.view(heads // group, blocks, group, rows, -1))

    def partial(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pick: slice, scale: float,
                group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        queries = self.queries_for(q)
        out, lse = self._kernel(_fold(queries, group) if group > 1 else queries, self.keys_for(k), self.keys_for(v),
                                pick, group, scale, with_lse=True)
        assert lse is not None
        if group > 1:
            out, lse = _unfold(out, group), _unfold(lse, group)
        return self.rows_back(out, q.shape[1]), self.rows_back(lse, q.shape[1])

    def keys_back_into(self, grad: torch.Tensor, target: torch.Tensor, first: bool) -> None:
        self.piece.keys_back_into(grad, target, self.plan, first)

    def bytes_per_head(self, source: int, head_dim: int, element: int) -> int:
        """Largest temporary the forward makes per head: copied keys (or values), or its output."""
        keys = self.piece.forward_keys(source, self.plan)
        return max(keys, self.plan.query_blocks * self.plan.block) * head_dim * element

    def backward_bytes_per_head(self, source: int, head_dim: int, element: int) -> int:
        """What the backward makes per head: the fused kernel's key and value gradients, in this
        piece's layout, and its query gradient."""
        keys = self.piece.keys_in_layout(source, self.plan)
        return (2 * keys + self.plan.query_blocks * self.plan.block) * head_dim * element


def _merge_into(out: torch.Tensor, lse: torch.Tensor, part_out: torch.Tensor, part_lse: torch.Tensor) -> None:
    """Online softmax merge of one more piece into (out, lse), in place.

    Rows that had, or get, no allowed key carry lse = -inf; their weight is 0, not NaN.
    """
    total = torch.logaddexp(lse, part_lse)
    keep = torch.exp(lse - total).nan_to_num_(0.0)
    take = torch.exp(part_lse - total).nan_to_num_(0.0)
    out.mul_(keep[..., None]).addcmul_(part_out, take[..., None])
    lse.copy_(total)


# Work goes through the kernels a few heads at a time, so that no temporary
# (padded keys, gathered blocks, a piece's output) exceeds this size. Freshly
# mapped memory costs a page fault per 4 KiB page, which on some machines costs
# more than the copy itself; small temporaries are served again from the heap.
CHUNK_BYTES = 8 * 2**20


class _SparseAttention:
    """A block plan made ready to run: forward (with or without the log-sum-exp) and backward."""

    def __init__(self, plan: BlockPlan, sizes: Sizes, dtype: torch.dtype, device: torch.device,
                 mod: AppliedMod | None = None) -> None:
        length, source, head_dim = sizes.seq_len, sizes.source_len, sizes.head_dim
        self.plan, self.mod, self.dtype = plan, mod, dtype
        self.groups = _Groups.of(plan, sizes, mod, device)
        # A score mod's biases: made once when they fit MOD_BIAS_BYTES and are not trained, else per chunk.
        element = torch.empty((), dtype=dtype).element_size()
        elements = sum(piece.kernel_allowed(length)[0].numel() for piece in plan.pieces) * len(self.groups.plan_group)
        made_once = mod is None or (not mod.trained and elements * element <= MOD_BIAS_BYTES)
        self.runners = [_PieceRunner(piece, plan, length, source, dtype, device, self.groups if mod else None, mod,
                                     made_once) for piece in plan.pieces]
        self.scale = 1.0 / math.sqrt(head_dim)
        self.dense_rows = plan.dense_rows.to(device) if plan.dense_rows is not None and len(plan.dense_rows) else None
        self.dense_bias = None
        if self.dense_rows is not None:
            self.dense_allowed = plan.dense_allowed.to(device)
            self.dense_bias = self.dense_bias_of(slice(None)) if mod is None or not mod.trained else None
        element = torch.empty((), dtype=dtype).element_size()
        shape = source, head_dim, element
        self.heads_per_chunk = max(1, CHUNK_BYTES // max(r.bytes_per_head(*shape) for r in self.runners))
        if any(r.bias is None and r.segments is None and r.mod is not None for r in self.runners):
            # each chunk makes its heads' additive masks: they count against the chunk too
            self.heads_per_chunk = min(self.heads_per_chunk,
                                       max(1, CHUNK_BYTES // max(r.bias_bytes_per_group() for r in self.runners)))
        # The backward's temporaries are several times the forward's: it goes through fewer heads at a time.
        self.backward_heads_per_chunk = max(1, CHUNK_BYTES // max(r.backward_bytes_per_head(*shape) for r in self.runners))
        self.backward_heads_per_chunk = min(self.backward_heads_per_chunk, self.heads_per_chunk)
        self.fused_backward = True  # False: the autograd surrogate (what other devices use), for tests

    def dense_bias_of(self, pick: slice, mod: AppliedMod | None = None) -> torch.Tensor:
        """The dense rows' additive mask (g, 1, R, S) for the mask groups `pick`: kept, or made (see bias_of)."""
        if mod is None and self.dense_bias is not None:
            return self.dense_bias[pick]
        mod = mod or self.mod
        if mod is None:  # the plan's groups are the groups
            allowed = self.dense_allowed[pick]
            return torch.zeros(allowed.shape, dtype=self.dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))[:, None]
        assert mod.bias is not None and self.dense_rows is not None
        groups = self.groups
        allowed = self.dense_allowed.index_select(0, groups.plan_group[pick])  # (g, R, S)
        i = (self.dense_rows + mod.query_offset)[None, None, :, None]
        j = torch.arange(allowed.shape[-1], device=allowed.device)[None, None, None, :]
        term = mod.bias(groups.item[pick], groups.head[pick], i, j)[:, 0]
        return term.to(self.dtype).expand(allowed.shape).masked_fill(~allowed, float("-inf"))[:, None]

    def chunks(self, n: int, h: int, heads_per_chunk: int) -> Iterator[tuple[slice, slice]]:
        """(flat heads, mask groups) to work on together: a few heads at a time, with their masks."""
        plan = self.groups
        if plan.batch == 1 and plan.heads == 1:  # one mask for every head of every item
            for start in range(0, n * h, heads_per_chunk):
                yield slice(start, min(start + heads_per_chunk, n * h)), slice(0, 1)
            return
        # Masks differ per item or head: a chunk of heads of one item reads its own run of mask groups.
        for item in range(n):
            for start in range(0, h, heads_per_chunk):
                stop = min(start + heads_per_chunk, h)
                first = plan.index(item, start)
                yield slice(item * h + start, item * h + stop), slice(first, first + (stop - start) if plan.heads > 1 else first + 1)

    def _chunk(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
               pick: slice, with_lse: bool, group: int = 1) -> None:
        """q (g, L, d), k and v (g / group, S, d) with masks[pick] (1 or g mask groups), written into out (g, L, d)
        (and the log-sum-exp of every row into lse (g, L) when with_lse, or when pieces are merged)."""
        runners, scale = self.runners, self.scale
        if len(runners) == 1 and not with_lse:
            runners[0].single_into(q, k, v, pick, scale, group, out)
        else:
            for index, runner in enumerate(runners):
                part_out, part_lse = runner.partial(q, k, v, pick, scale, group)
                if index == 0:
                    out.copy_(part_out)
                    lse.copy_(part_lse)
                else:
                    _merge_into(out, lse, part_out, part_lse)
        if self.dense_rows is not None:
            if group > 1:  # the rows the plan leaves dense (rare): their K/V per query head
                k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
            rows, bias = self.dense_rows, self.dense_bias_of(pick)  # (1 or g, 1, R, S), see single()
            if with_lse:
                no_key = torch.isinf(bias).all(dim=-1)
                part_out, part_lse = _attend_with_lse(q[:, None, rows], k[:, None], v[:, None], bias, no_key, scale)
                lse.index_copy_(1, rows, part_lse[:, 0].to(lse.dtype))
            else:
                part_out = F.scaled_dot_product_attention(q[:, None, rows], k[:, None], v[:, None], attn_mask=bias, scale=scale)
            out.index_copy_(1, rows, part_out[:, 0])

    @staticmethod
    def kv_rows(heads: slice, h: int, kv_heads: int, device: torch.device) -> slice | torch.Tensor:
        """The flat key/value heads that flat query heads `heads` read: the same slice without grouping, else
        item * H_kv + head // G for each (grouped-query attention: a chunk's K/V are gathered, a few heads at
        a time, never repeated for the whole tensor)."""
        if kv_heads == h:
            return heads
        flat = torch.arange(heads.start, heads.stop, device=device)
        return (flat // h) * kv_heads + (flat % h) // (h // kv_heads)

    @staticmethod
    def _take(x: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        return x[rows] if isinstance(rows, slice) else x.index_select(0, rows)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, with_lse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, L, d) queries, (N, H_kv, S, d) keys and values -> output (N, H, L, d) and log-sum-exp (N * H, L)."""
        n, h, length, d = q.shape
        kv_heads = k.shape[1]
        flat_q = q.reshape(n * h, length, d)
        flat_k, flat_v = (x.reshape(n * kv_heads, x.shape[2], d) for x in (k, v))
        out = torch.empty_like(flat_q)
        lse = torch.empty(n * h, length, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32, device=q.device)
        group = h // kv_heads
        # Grouped heads: the query rows of a group's heads are stacked against their key/value head (K and V read,
        # padded and laid out once per `stack` query heads, not once per query head). A whole group when the
        # chunk's budget holds it, else the largest part of one that fits (the stacked rows are copies).
        stack = group if self.heads_per_chunk >= group else max(f for f in range(1, group + 1)
                                                                 if group % f == 0 and f <= self.heads_per_chunk)
        per_chunk = self.heads_per_chunk // group * group if stack == group else stack
        for heads, pick in self.chunks(n, h, per_chunk if group > 1 else self.heads_per_chunk):
            count = heads.stop - heads.start
            if group > 1 and heads.start % stack == 0 and count % stack == 0 and (count == stack or stack == group):
                rows = slice(heads.start // group, heads.start // group + max(1, count // group))
                self._chunk(flat_q[heads], flat_k[rows], flat_v[rows], out[heads], lse[heads], pick, with_lse, stack)
                continue
            rows = self.kv_rows(heads, h, kv_heads, q.device)  # type: ignore[assignment]
            self._chunk(flat_q[heads], self._take(flat_k, rows), self._take(flat_v, rows), out[heads], lse[heads], pick,
                        with_lse)
        return out.view(n, h, length, d), lse

    def backward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                 grad_out: torch.Tensor, tables: dict[str, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """dQ, dK, dV piece by piece, FlashAttention's way: each piece's probabilities are recomputed from
        the merged log-sum-exp, P = exp(S - lse), and dS = P * (dO V^T - rowsum(dO * O)), so no L x S
        tensor is ever made. On the CPU each piece goes through PyTorch's fused flash-attention backward
        given the merged output and log-sum-exp (which is exactly this), and its key gradients are summed
        back through the piece's view of the keys (keys_back). Elsewhere, autograd on a per-piece sum with
        these derivatives (_surrogate) does the same; so does a learned score mod's table (`tables`), whose
        gradient the fused kernel does not give: the sum of dS over the pairs that read each entry."""
        n, h, length, d = q.shape
        kv_heads = k.shape[1]
        flat_q, flat_out, flat_grad = (x.reshape(n * h, x.shape[2], d) for x in (q, out, grad_out))
        flat_k, flat_v = (x.reshape(n * kv_heads, x.shape[2], d) for x in (k, v))
        # Rows without an allowed key have lse = -inf and P = 0: use 0 there to avoid inf - inf.
        # The fused kernel forms rowsum(dO * O) itself, but gives no gradient for the mask.
        fused = q.device.type == "cpu" and self.fused_backward and not tables
        # A learned table: a copy that requires grad, bound to the same mod, so the surrogate reaches it.
        copies = {name: table.detach().requires_grad_() for name, table in (tables or {}).items()}
        table_mod = self.mod.with_tables(copies) if copies and self.mod is not None else None
        table_grads = {name: torch.zeros_like(table) for name, table in copies.items()}
        delta = None if fused else (flat_grad * flat_out).sum(dim=-1)
        lse = torch.where(torch.isfinite(lse), lse, torch.zeros((), dtype=lse.dtype, device=lse.device))  # float32 or 64
        grouped = kv_heads < h
        dq = torch.empty_like(flat_q)
        # Grouped: a K/V head's gradient is the sum over its query heads, added chunk by chunk.
        dk, dv = ((torch.zeros_like if grouped else torch.empty_like)(x) for x in (flat_k, flat_v))
        for heads, pick in self.chunks(n, h, self.backward_heads_per_chunk):
            rows = self.kv_rows(heads, h, kv_heads, q.device)
            k_part, v_part = self._take(flat_k, rows), self._take(flat_v, rows)
            dk_part, dv_part = (torch.empty_like(k_part), torch.empty_like(v_part)) if grouped else (dk[heads], dv[heads])
            if fused:
                self._fused_backward(flat_q[heads], k_part, v_part, flat_out[heads], lse[heads],
                                     flat_grad[heads], pick, dq[heads], dk_part, dv_part)
            else:
                with torch.enable_grad():
                    leaves = [x.detach().requires_grad_() for x in (flat_q[heads], k_part, v_part)]
                    assert delta is not None
                    total = self._surrogate(*leaves, lse[heads].to(q.dtype), delta[heads], flat_grad[heads], pick,
                                            table_mod)
                    grads = torch.autograd.grad(total, [*leaves, *copies.values()], allow_unused=True)
                    for target, grad in zip((dq[heads], dk_part, dv_part), grads[:3]):
                        target.copy_(grad)
                    for name, grad in zip(copies, grads[3:]):
                        if grad is not None:
                            table_grads[name] += grad
            if grouped:
                assert isinstance(rows, torch.Tensor)
                dk.index_add_(0, rows, dk_part)
                dv.index_add_(0, rows, dv_part)
        return dq.view(n, h, length, d), dk.view(n, kv_heads, -1, d), dv.view(n, kv_heads, -1, d), table_grads

    def _fused_backward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                        grad_out: torch.Tensor, pick: slice, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor) -> None:
        """(g, L, d) chunks -> dq, dk, dv (g, L or S, d) written in place, one fused backward call per piece."""
        backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        length = q.shape[1]
        for index, runner in enumerate(self.runners):
            lse_p = runner.queries_for(lse[..., None])[..., 0].contiguous()
            layouts = (runner.queries_for(grad_out), runner.queries_for(q), runner.keys_for(k), runner.keys_for(v),
                       runner.queries_for(out), lse_p)
            parts = [backward(*(x[:, run] for x in layouts[:5]), layouts[5][:, run].contiguous(), 0.0, False,
                              attn_mask=bias, scale=self.scale)
                     for run, bias in runner.runs(pick, 1)]
            gq, gk, gv = parts[0] if len(parts) == 1 else (torch.cat(p, dim=1) for p in zip(*parts))
            part = runner.rows_back(gq, length)
            dq.copy_(part) if index == 0 else dq.add_(part)
            runner.keys_back_into(gk, dk, first=index == 0)
            runner.keys_back_into(gv, dv, first=index == 0)
        if self.dense_rows is not None:
            rows = self.dense_rows
            gq, gk, gv = backward(
                grad_out[:, None, rows].contiguous(), q[:, None, rows].contiguous(), k[:, None], v[:, None],
                out[:, None, rows].contiguous(), lse[:, None, rows].contiguous(), 0.0, False,
                attn_mask=self.dense_bias_of(pick), scale=self.scale,
            )
            dq.index_add_(1, rows, gq[:, 0])
            dk += gk[:, 0]
            dv += gv[:, 0]

    def _surrogate(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lse: torch.Tensor, delta: torch.Tensor,
                   grad_out: torch.Tensor, pick: slice, mod: AppliedMod | None = None) -> torch.Tensor:
        """sum(P V * dO) - sum(P * delta) over every piece, with P = exp(S - lse) and lse held fixed: its
        gradient in S is P * (dO V^T - delta), the softmax's backward through the merged normalisation."""
        total = torch.zeros((), dtype=q.dtype, device=q.device)
        for runner in self.runners:
            qp, kp, vp = runner.queries_for(q), runner.keys_for(k), runner.keys_for(v)
            lse_p, delta_p = (runner.queries_for(x[..., None])[..., 0] for x in (lse, delta))
            bias = runner.bias_of(pick, mod)  # with a learned table's copy: its gradient is the sum of dS per entry
            probabilities = torch.exp((qp @ kp.transpose(-2, -1)) * self.scale + bias - lse_p[..., None])
            total = total + ((probabilities @ vp) * runner.queries_for(grad_out)).sum() - (probabilities * delta_p[..., None]).sum()
        if self.dense_rows is not None:
            rows = self.dense_rows
            scores = (q[:, rows] @ k.transpose(-2, -1)) * self.scale + self.dense_bias_of(pick, mod)[:, 0]
            probabilities = torch.exp(scores - lse[:, rows, None])
            total = total + ((probabilities @ v) * grad_out[:, rows]).sum() - (probabilities * delta[:, rows, None]).sum()
        return total


class _BlockedFunction(torch.autograd.Function):
    """Autograd for blocked: the forward keeps the log-sum-exp, the backward walks the same pieces."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, engine: _SparseAttention,  # type: ignore[override]
                *tables: torch.Tensor) -> torch.Tensor:
        out, lse = engine.forward(q, k, v, with_lse=True)
        ctx.save_for_backward(q, k, v, out, lse, *tables)
        ctx.engine = engine
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        q, k, v, out, lse, *tables = ctx.saved_tensors
        engine = ctx.engine
        names = list(engine.mod.tables) if tables else []
        dq, dk, dv, table_grads = engine.backward(q, k, v, out, lse, grad_out.contiguous(), dict(zip(names, tables)))
        return (dq, dk, dv, None, *(table_grads[name] for name in names))


def _sparse_core(plan: BlockPlan, sizes: Sizes, dtype: torch.dtype, device: torch.device,
                 mod: AppliedMod | None = None) -> Core:
    engine = _SparseAttention(plan, sizes, dtype, device, mod)
    # A learned score mod's table in a training pass: an input of the autograd function, for its gradient.
    tables = tuple(mod.tables.values()) if mod is not None and mod.trained else ()

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, *tables)):
            return _BlockedFunction.apply(q, k, v, engine, *tables)
        return engine.forward(q, k, v)[0]

    core.engine = engine  # type: ignore[attr-defined]  # for tests: the backward's path can be chosen
    return core


def _full_core(work: Workload) -> Core:
    """Full attention has no structure to exploit: the fused SDPA kernel is already the blocked algorithm."""
    is_causal = work.form.is_causal
    dense = work.mask.dense() if work.form.needs_dense else None
    # A bias mod under full attention: every pair is read anyway, so the bias goes in as SDPA's float mask.
    additive = additive_mask(work) if work.score_mod is not None else None

    grouped = work.experiment.sizes.grouped

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if additive is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=additive(), enable_gqa=grouped)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, is_causal=is_causal, enable_gqa=grouped)

    return core


# Decoding with at most this many new tokens takes the decode path: their (L, S) rows of the mask are small.
DECODE_MAX_QUERIES = 64


def _decode_core(work: Workload) -> Core:
    """A decode step: a few new queries against a long KV cache, where the time is reading K and V.

    Each key/value head is read once for its whole group of query heads: the group's G * L queries are the
    columns of one tall matrix product, K (S, d) @ Q^T (d, G * L), which streams K at memory speed (PyTorch's
    SDPA with enable_gqa reads K once per query head instead). Softmax runs down the keys, then
    P^T (G * L, S) @ V (S, d). Only the span of keys some new query may attend is read: the window of a
    local pattern, not the whole cache. The mask's rows for the new tokens are made once, as a bias in the
    product's layout.
    """
    sizes, mask = work.experiment.sizes, work.mask
    n, h, length, d = sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.head_dim
    kv_heads, group = sizes.kv_heads, sizes.group_size
    scale = 1.0 / math.sqrt(d)
    lo, hi, bias = 0, sizes.source_len, None
    mod = work.score_mod
    if mask.masked or mod is not None:
        allowed = mask.dense()  # (N, 1 or H, L, S): L is a handful of rows
        keys = allowed.flatten(0, 2).any(dim=0).nonzero()
        if len(keys):
            lo, hi = int(keys[0]), int(keys[-1]) + 1
        allowed = allowed[..., lo:hi].expand(n, h, length, hi - lo)
        dtype = work.inputs.query.dtype
        # The mask (and a bias mod's term) as one additive mask over the span: (N, H, L, span)
        additive = torch.zeros(allowed.shape, dtype=dtype, device=work.device)
        if mod is not None:
            rows = torch.arange(length, device=work.device)
            additive = additive + mod.dense_bias(n, h, rows, hi, dtype)[..., lo:hi]
        additive = additive.masked_fill(~allowed, float("-inf"))
        # (N, H, L, span) -> (N * H_kv, span, G * L): the layout of K @ Q^T, made once
        bias = additive.reshape(n, kv_heads, group, length, hi - lo).permute(0, 1, 4, 2, 3).reshape(
            n * kv_heads, hi - lo, group * length)

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        queries = q.reshape(n * kv_heads, group * length, d)  # query heads h = kv * G + g, rows g * L + l
        keys = k[:, :, lo:hi].reshape(n * kv_heads, hi - lo, d)  # a view: each head's span is contiguous
        values = v[:, :, lo:hi].reshape(n * kv_heads, hi - lo, d)
        scores = torch.bmm(keys, queries.transpose(1, 2)).mul_(scale)  # (N * H_kv, span, G * L)
        if bias is not None:
            scores.add_(bias)
        weights = torch.softmax(scores, dim=1)  # over the keys
        return torch.bmm(weights.transpose(1, 2), values).view(n, h, length, d)

    return core


def build_core(work: Workload) -> tuple[Core, float | None]:
    """The core, and the seconds its block plan took to build (None: full attention needs no plan)."""
    if work.mask_given:
        raise Unsupported("a mask given through Workload.with_mask has no block plan; blocked runs the experiment's own pattern")
    experiment = work.experiment
    if experiment.decoding and experiment.sizes.seq_len <= DECODE_MAX_QUERIES and not experiment.timing.trains:
        return _decode_core(work), None
    if not work.experiment.needs_plan:
        return _full_core(work), None
    plan = work.prepared.plan
    return _sparse_core(plan, work.experiment.sizes, work.inputs.query.dtype, work.device, work.score_mod), plan.plan_s


def build(work: Workload) -> Forward:
    core, plan_s = build_core(work)
    forward = layer_around(core, work)
    forward.plan_s = plan_s  # type: ignore[attr-defined]  # reported beside the median, never inside it
    return forward
