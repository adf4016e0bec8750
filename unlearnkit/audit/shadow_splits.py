"""Which training examples each shadow model sees, and which of those it then forgets (pure numpy).

A U-LiRA audit trains K shadow originals, each on a random half of the training set
(:func:`shadow_halves`), draws a forget set from each half by the benchmark's scenario rule
(:func:`forget_subset`) and runs the audited method on each. :func:`ulira_masks` turns that into the
IN/OUT masks :func:`unlearnkit.audit.scoring.fit_gaussians` takes. Everything is seeded and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unlearnkit.engine.halves import Seed, shadow_halves

__all__ = ["Seed", "forget_subset", "shadow_halves", "ulira_masks"]


def _parse_rule(rule: str, fraction: float | None) -> tuple[str, float | None, int | None]:
    """``instance``/``random`` (+ ``fraction``), ``instance:0.1``/``random:0.1``/``0.1``, or ``class:<id>``."""
    text = rule.strip()
    if text.startswith("class:"):
        target = text.split(":", 1)[1].strip()
        if not (target.isascii() and target.isdigit()):
            raise ValueError(f"class rule needs an integer class id (resolve names first); got {rule!r}")
        return "class", None, int(target)
    if text in ("instance", "random"):
        kind, frac = text, ""
    elif ":" in text:
        kind, _, frac = text.partition(":")
    else:
        kind, frac = "instance", text  # a bare fraction, as in the benchmark's --forget 0.1
    if kind not in ("instance", "random"):
        raise ValueError(f"unknown forget rule {rule!r}: expected instance, random, class:<id> or e.g. random:0.1")
    if frac:
        try:
            parsed = float(frac)
        except ValueError:
            raise ValueError(f"bad fraction in forget rule {rule!r}") from None
        if fraction is not None and fraction != parsed:
            raise ValueError(f"forget rule {rule!r} and fraction={fraction} disagree")
        fraction = parsed
    if fraction is None or not 0.0 < fraction < 1.0:
        raise ValueError(f"forget rule {rule!r} needs a fraction strictly between 0 and 1; got {fraction}")
    return kind, fraction, None


def forget_subset(
    in_indices: np.ndarray,
    labels: np.ndarray,
    rule: str,
    fraction: float | None = None,
    seed: Seed = None,
) -> np.ndarray:
    """The forget set a shadow draws from its IN half, by the benchmark's scenario rule.

    ``in_indices``: the shadow's IN half, as dataset indices or as a boolean row of
    :func:`shadow_halves` (length ``len(labels)``). ``labels``: every training example's class, indexed
    by dataset index. Rules mirror :func:`unlearnkit.splits.make_splits`, applied inside the half:

    - ``instance`` (fraction f): the first ``max(1, floor(f * n_c))`` IN examples of each class c present,
      in dataset order — the same for every seed;
    - ``random`` (fraction f): ``max(1, round(f * n_in))`` IN examples drawn without replacement with
      ``seed`` (required);
    - ``class:<c>``: every IN example of integer class c (empty if the half has none).

    ``rule`` may carry the fraction (``instance:0.1``, ``random:0.1``, ``0.1``, i.e. a scenario key).
    Returns the sorted dataset indices (int64), a subset of ``in_indices``.
    """
    y = np.asarray(labels)
    idx = np.asarray(in_indices)
    if idx.dtype == bool:
        if idx.shape != y.shape:
            raise ValueError(f"a boolean in_indices must have the shape of labels {y.shape}; got {idx.shape}")
        idx = np.flatnonzero(idx)
    elif idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"in_indices must be integer indices or a boolean mask; got dtype {idx.dtype}")
    idx = np.unique(idx.astype(np.int64))  # sorted: dataset order
    if idx.size and (idx[0] < 0 or idx[-1] >= y.size):
        raise ValueError(f"in_indices must lie in [0, {y.size - 1}]")
    kind, frac, target = _parse_rule(rule, fraction)
    if kind == "class":
        return idx[y[idx] == target]
    if idx.size == 0:
        return idx
    if kind == "instance":
        y_in = y[idx]
        parts = []
        for c in np.unique(y_in):
            members = idx[y_in == c]
            parts.append(members[: max(1, int(len(members) * (frac or 0.0)))])
        return np.sort(np.concatenate(parts))
    if seed is None:
        raise ValueError("the random forget rule needs a seed")
    n_forget = max(1, int(round(idx.size * (frac or 0.0))))
    return np.sort(np.random.default_rng(seed).choice(idx, size=n_forget, replace=False))


def ulira_masks(halves: np.ndarray, forget_sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """U-LiRA's IN and OUT masks, both (K, N), from the shadows' halves and their forget sets.

    IN[k, n]: example n was in shadow k's forget set (trained on, then unlearned by the audited method).
    OUT[k, n]: example n was not in shadow k's training half (never trained on). Trained-and-retained
    examples are neither. A forget index outside its shadow's half is an error.
    """
    h = np.asarray(halves)
    if h.ndim != 2 or h.dtype != bool:
        raise ValueError(f"halves must be a boolean (K, N) matrix; got {h.dtype} {h.shape}")
    if len(forget_sets) != h.shape[0]:
        raise ValueError(f"need one forget set per shadow: {h.shape[0]} halves, {len(forget_sets)} forget sets")
    in_mask = np.zeros_like(h)
    for k, forget in enumerate(forget_sets):
        f = np.asarray(forget, dtype=np.int64)
        if f.size and (f.min() < 0 or f.max() >= h.shape[1] or not h[k, f].all()):
            raise ValueError(f"forget set of shadow {k} is not inside its training half")
        in_mask[k, f] = True
    return in_mask, ~h
