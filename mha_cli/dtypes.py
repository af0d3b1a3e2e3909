"""The dtypes an experiment can run in: their names, their sizes, and the torch dtype of each.

One table for the config (which names are allowed), the memory guard (bytes per
element) and the tensors (the torch dtype). No torch at import: `mha validate`
reads the names and sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

DType = Literal["float32", "float64", "bfloat16", "float16"]

# Bytes per element, by name; the torch dtype of a name is torch's attribute of that name.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}


def torch_dtype(name: str) -> torch.dtype:
    """"float32" -> torch.float32."""
    import torch

    return getattr(torch, name)
