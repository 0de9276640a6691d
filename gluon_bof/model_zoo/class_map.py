"""``reset_class`` support shared by the detectors: which old class rows a new class reuses."""
from typing import Dict, Sequence

__all__ = ["reuse_index_map"]


def reuse_index_map(new: Sequence[str], old: Sequence[str], reuse_weights, where: str) -> Dict[int, int]:
    """``{new index: old index}`` from GluonCV's ``reuse_weights``: a dict ``{new: old}`` of indices
    or names, or a list of names kept from the old classes (names missing on either side are
    skipped). An index out of range is a ValueError naming ``where``."""
    new, old = list(new), list(old)
    reuse: Dict[int, int] = {}
    if isinstance(reuse_weights, dict):
        for k, v in reuse_weights.items():
            reuse[new.index(k) if isinstance(k, str) else int(k)] = old.index(v) if isinstance(v, str) else int(v)
    elif isinstance(reuse_weights, (list, tuple)):
        reuse = {new.index(n): old.index(n) for n in reuse_weights if n in new and n in old}
    for k, v in reuse.items():
        if not (0 <= k < len(new) and 0 <= v < len(old)):
            raise ValueError(f"{where}: reuse_weights index {k}->{v} out of range")
    return reuse
