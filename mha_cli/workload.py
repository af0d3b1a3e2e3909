"""One experiment made ready to run on one device: what every implementation is built from.

The experiment, its derived state (Prepared), the inputs and weights on the
run device, and the mask in every form (AttentionMask), decided once and handed
to every implementation alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .experiment import Experiment
from .implementation import AttentionMask, AttentionSpec
from .inputs import Inputs
from .mask_spec import MaskForm
from .prepared import Prepared
from .score_mods.applied import AppliedMod


@dataclass(frozen=True)
class Workload:
    experiment: Experiment
    prepared: Prepared
    inputs: Inputs
    mask: AttentionMask
    mask_given: bool = False  # with_mask replaced the experiment's mask: shortcuts such as is_causal no longer apply
    checked_before: bool = False  # this experiment already ran here once (a repetition's process): skip one-off probes

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def score_mod(self) -> AppliedMod | None:
        """The experiment's score mod on the run device, in the run dtype (its tables: the inputs'), or None."""
        return self.prepared.applied_mod(self.inputs.mod_tables)

    @property
    def spec(self) -> AttentionSpec:
        """What a core is called with besides q, k and v."""
        return AttentionSpec(self.mask, 1.0 / math.sqrt(self.experiment.sizes.head_dim), self.experiment,
                             self.score_mod)

    @property
    def form(self) -> MaskForm:
        """How the mask reaches a kernel: decided once for the experiment, or dense for a given mask."""
        return MaskForm.given() if self.mask_given else self.experiment.mask_form

    def with_inputs(self, inputs: Inputs) -> Workload:
        return replace(self, inputs=inputs)

    def with_mask(self, allowed: torch.Tensor) -> Workload:
        """A copy whose mask is `allowed` instead of the experiment's: arbitrary masks for experiments.
        (N, L, S) for one mask per batch item, or (N, H, L, S) for one per head; True = may attend.

        torch, manual, sdpa and flex honour it; blocked has no plan for an arbitrary mask and
        says so (Unsupported), rather than run the experiment's pattern instead."""
        dense = (allowed[:, None] if allowed.dim() == 3 else allowed).to(self.device)
        per_head = dense.shape[1] > 1

        def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
            return dense[b, h if per_head else 0, q_idx, kv_idx]

        mask = AttentionMask(
            mask_mod=mask_mod, masked=True, is_causal=False, causal=False, prefix=0, key_lengths=None,
            document_lengths=None, pattern=None, pattern_settings={}, groups=(dense.shape[0], dense.shape[1]),
            _dense=lambda: dense,
        )
        return replace(self, mask=mask, mask_given=True)


def attention_mask(prepared: Prepared, device: torch.device) -> AttentionMask:
    """The experiment's mask in every form, on `device`; the dense form is made only when asked for."""
    experiment = prepared.experiment
    form, spec, pattern = experiment.mask_form, experiment.mask, experiment.pattern
    return AttentionMask(
        mask_mod=prepared.rule_on(device),
        masked=form.masked,
        is_causal=form.is_causal,
        causal=spec.causal,
        query_offset=spec.query_offset,
        new_keys_from=spec.new_keys_from,
        prefix=spec.prefix,
        key_lengths=spec.key_lengths,
        document_lengths=spec.document_lengths,
        pattern=pattern.NAME if pattern is not None else None,
        pattern_settings=pattern.settings.model_dump(mode="json") if pattern is not None else {},
        groups=prepared.groups,
        _dense=lambda: prepared.dense_allowed().to(device),
    )


def make_workload(prepared: Prepared, inputs: Inputs, checked_before: bool = False) -> Workload:
    return Workload(prepared.experiment, prepared, inputs, attention_mask(prepared, inputs.device),
                    checked_before=checked_before)
