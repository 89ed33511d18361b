"""``Memo``: what a network computes from its conditioning inputs and ``t`` alone, kept while a
sampler draws batch after batch of the same inputs with the same weights.

Each batch of draws runs the same chunks of inputs through the same timesteps, so a part of the
network that does not see ``x_t`` (diffst's conditioning streams) gives the same tensors in
every batch; the memo hands them back instead of computing them again. It lives for one
:meth:`~methods.contract.StochasticMethod.sample_batches` call, so it never outlives the inputs
or the weights it was filled with, and it stores only while the tensors it holds stay within a
byte budget (beyond it they are computed again, as without a memo).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from torch import Tensor

BUDGET = 256 * 2**20  # bytes of tensors one memo holds at most


class Memo:
    """Tensors by key, within ``budget`` bytes; :meth:`chunk` gives each chunk of inputs its own
    keys (a network's key need only tell timesteps apart)."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget, self.used = budget, 0
        self._values: dict[Hashable, tuple[Tensor, ...]] = {}
        self._chunk: Hashable = None

    def chunk(self, key: Hashable) -> Memo:
        """Make ``key`` (e.g. the chunk's first row) part of every later :meth:`get` and
        :meth:`put`; returns the memo."""
        self._chunk = key
        return self

    def get(self, key: Hashable) -> tuple[Tensor, ...] | None:
        """The tensors stored under ``key`` in the current chunk, or None."""
        return self._values.get((self._chunk, key))

    def put(self, key: Hashable, tensors: Sequence[Tensor]) -> None:
        """Store ``tensors`` under ``key`` in the current chunk if they fit in the budget."""
        size = sum(t.numel() * t.element_size() for t in tensors)
        if self.used + size <= self.budget:
            self._values[(self._chunk, key)] = tuple(tensors)
            self.used += size
