"""Helpers shared by plugins."""

from __future__ import annotations

from ..framework import MAX_NODE_SCORE


def normalize(scores: dict[str, int], reverse: bool = False) -> None:
    """Scale to 0..100 by the maximum (kube's DefaultNormalizeScore); ``reverse``: lower is better."""
    top = max(scores.values(), default=0)
    if top == 0:
        if reverse:
            for k in scores:
                scores[k] = MAX_NODE_SCORE
        return
    for k, v in scores.items():
        s = v * MAX_NODE_SCORE // top
        scores[k] = MAX_NODE_SCORE - s if reverse else s


def min_max_normalize(scores: dict[str, int], reverse: bool = False) -> None:
    """Scale so the lowest becomes 0 and the highest 100 (all equal: all 0, or 100 reversed)."""
    if not scores:
        return
    lo, hi = min(scores.values()), max(scores.values())
    for k, v in scores.items():
        s = (v - lo) * MAX_NODE_SCORE // (hi - lo) if hi > lo else 0
        scores[k] = MAX_NODE_SCORE - s if reverse else s
