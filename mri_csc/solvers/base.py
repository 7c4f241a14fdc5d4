"""The iteration protocol shared by the reconstruction solvers (SigPy's ``Alg``: ``update`` until ``done``)."""

from __future__ import annotations

__all__ = ["IterativeSolver"]


class IterativeSolver:
    """``while not done(): update()``, with an optional tqdm bar.

    Subclasses implement :meth:`update` (one iteration; returns its history record) and keep
    ``x`` (the iterate), ``iter``, ``max_iter`` and ``_stop`` (set by a callback or the stopping
    test). ``progress`` is ``(label, record key)`` of the figure shown beside the objective.
    """

    progress: tuple[str, str] = ("r", "objective")

    def update(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def done(self) -> bool:
        return self._stop or self.iter >= self.max_iter

    def run(self, pbar=None):
        """Iterate until :meth:`done`; returns the image."""
        label, key = self.progress
        while not self.done():
            rec = self.update()
            if pbar is not None:
                pbar.set_postfix({"obj": f"{rec['objective']:.4g}", label: f"{rec[key]:.2e}"})
                pbar.update()
        return self.x
