"""Per-iteration records kept by every iterative solver."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["History"]


@dataclass
class History:
    """A list of per-iteration dicts (``iter``, ``time`` and solver-specific keys).

    ``time`` is seconds since the history was created.
    """

    records: list = field(default_factory=list)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def append(self, **values) -> dict:
        rec = {"iter": len(self.records), "time": time.perf_counter() - self._t0}
        rec.update({k: (float(v) if hasattr(v, "item") or isinstance(v, (int, float)) else v)
                    for k, v in values.items()})
        self.records.append(rec)
        return rec

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    def column(self, key: str) -> list:
        """Values of ``key`` across iterations (missing → None)."""
        return [r.get(key) for r in self.records]

    def to_list(self) -> list:
        return list(self.records)
