"""What one experiment derives, each piece computed once, on first use, for as long as the run lasts.

The pattern's rule (your own mask_mod is imported here, once), the combined
pair rule, the mask groups, blocked's plan and the allowed-pair count all live
on one Prepared object that the run owns: no module-level caches, so a long
process holds nothing of experiments it has finished.
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import Any

import torch

from .block_plan import BlockPlan, PlanContext
from .experiment import Experiment
from .memory import blocked_keys_bound
from .masks import PairRule, allowed_rows, full_pair_count, mask_groups, pair_rule
from .patterns import PatternRule
from .score_mods import Tables
from .score_mods.applied import AppliedMod


class Prepared:
    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._rules_on: dict[str, PairRule] = {}

    @functools.cached_property
    def pattern_rule(self) -> PatternRule | None:
        """The pattern's own rule (None for full attention); a rule the config names is imported and checked here."""
        pattern = self.experiment.pattern
        return pattern.rule() if pattern is not None else None

    @functools.cached_property
    def score_mod_loaded(self) -> Any:
        """What the score mod is made from: your own score_mod imported and checked here, once; None otherwise."""
        mod = self.experiment.score_mod
        return mod.load() if mod is not None else None

    def applied_mod(self, tables: Tables) -> AppliedMod | None:
        """The experiment's score mod bound to these numbers (the inputs' run-dtype tables, or the float64
        masters), or None without one."""
        mod = self.experiment.score_mod
        if mod is None:
            return None
        return AppliedMod(mod, tables, self.score_mod_loaded, self.experiment.mask.query_offset)

    @functools.cached_property
    def groups(self) -> tuple[int, int]:
        """(batch, heads) sizes of every mask: N where it differs per batch item, H where per head, else 1."""
        pattern = self.experiment.pattern
        varies = pattern.varies(self.pattern_rule) if pattern is not None else (False, False)  # type: ignore[arg-type]
        return mask_groups(self.experiment.sizes, self.experiment.mask, varies)

    def rule_on(self, device: torch.device | str = "cpu") -> PairRule:
        """The combined rule (pattern, causal, prefix, documents, padding) with its tables on `device`."""
        key = str(device)
        if key not in self._rules_on:
            self._rules_on[key] = pair_rule(self.pattern_rule, self.experiment.mask, device)
        return self._rules_on[key]

    @property
    def rule(self) -> PairRule:
        """The combined rule on the CPU."""
        return self.rule_on("cpu")

    @functools.cached_property
    def plan_context(self) -> PlanContext:
        experiment = self.experiment
        return PlanContext(experiment.sizes, self.rule, self.groups, one_sided=experiment.mask.plain_causal)

    @functools.cached_property
    def plan(self) -> BlockPlan:
        """blocked's plan, from the pattern (or the generic plan for packed documents); its plan_s says how long it took."""
        from .block_plan import generic_plan

        experiment = self.experiment
        if not experiment.needs_plan:
            raise ValueError("full attention has no block plan")
        start = time.perf_counter()
        pattern = experiment.pattern
        # A pattern's own plan lays its blocks along the main diagonal; queries aligned lower right sit S - L
        # further on, which the generic plan (it evaluates the rule) follows.
        own = pattern is not None and not experiment.mask.query_offset
        plan = pattern.plan(self.plan_context) if own else generic_plan(self.plan_context)  # type: ignore[union-attr]
        return replace(plan, plan_s=time.perf_counter() - start)

    @functools.cached_property
    def blocked_keys_per_query(self) -> int:
        """Keys each query reads in blocked, for the memory guard: the pattern's bound, or exact for the
        generic plan (which evaluates the rule: a custom rule is imported)."""
        bound = blocked_keys_bound(self.experiment) if not self.experiment.mask.query_offset else None
        return bound if bound is not None else self.plan_context.generic_keys_per_query()

    @functools.cached_property
    def allowed_pairs(self) -> int:
        """Allowed (query, key) pairs summed over batch items and heads, without an L x S mask."""
        experiment = self.experiment
        if experiment.pattern is not None:
            return self.plan.allowed_pairs()
        return experiment.sizes.num_heads * full_pair_count(experiment.sizes, experiment.mask, self.rule)

    @property
    def density(self) -> float:
        """Allowed pairs / (N * H * L * S)."""
        return self.allowed_pairs / self.experiment.sizes.scores

    @functools.cached_property
    def keys_read(self) -> int:
        """Keys some query may attend, summed over batch items: what K and V reads count (measure.count_bytes).
        Exact when the query rows are few (decoding: a window leaves most of the cache unread), else S per item."""
        sizes = self.experiment.sizes
        if sizes.seq_len * sizes.source_len * sizes.batch_size * self.groups[1] > 2**24:
            return sizes.batch_size * sizes.source_len
        allowed = self.dense_allowed()  # (N, 1 or H, L, S)
        return int(allowed.any(dim=2).any(dim=1).sum())

    def allowed_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, 1 or H, R, S) bool on the CPU for the given query rows."""
        return allowed_rows(self.rule, self.experiment.sizes, self.groups[1], rows)

    def dense_allowed(self) -> torch.Tensor:
        """(N, 1 or H, L, S) bool on the CPU: every pair the experiment allows. Dense: small L only."""
        return self.allowed_rows(torch.arange(self.experiment.sizes.seq_len))
