"""Ray's ``ray.experimental`` names that nbray provides: ``tqdm_ray`` (progress bars
from tasks and actors, shown in the cell that submitted the work)."""

from __future__ import annotations

__all__ = ["tqdm_ray"]
