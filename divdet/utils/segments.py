"""Index helpers for tensors that hold consecutive segments (one per image, member...)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def first_of_each(counts: Sequence[int], k: Optional[int]) -> torch.Tensor:
    """(sum(counts),) host bools: the first ``k`` elements of each of the consecutive
    segments of ``counts[i]`` elements (every element for None); a fixed number of
    operators whatever the number of segments."""
    counts = torch.as_tensor(list(counts), dtype=torch.long)
    total = int(counts.sum())
    if k is None:
        return torch.ones(total, dtype=torch.bool)
    rank = torch.arange(total) - (counts.cumsum(0) - counts).repeat_interleave(counts)
    return rank < k
