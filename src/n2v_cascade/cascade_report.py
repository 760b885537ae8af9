"""How a cascade's stages compare: the GT-free ranking stored in its manifest, and the
lines and sentence that report it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .gtfree import SIGNIFICANT, rank

__all__ = ["rank_stages", "ranking_note", "report_stage", "versus_best"]


def rank_stages(manifest: dict[str, Any]) -> None:
    """Set ``best_stage`` and the stages whose score is indistinguishable from its score."""
    best, versus, ties = rank([e["gt_free_error"] for e in manifest["stages"]])
    for entry, pair in zip(manifest["stages"], versus, strict=True):
        entry["gt_free_vs_best"] = (None if pair is None else
                                    {"difference": pair[0], "standard_error": pair[1]})
    manifest["best_stage"] = best + 1
    manifest["indistinguishable_from_best"] = [i + 1 for i in ties]


def versus_best(entry: Mapping[str, Any]) -> str:
    """A stage's GT-free score relative to the lowest: ``lowest`` or ``+12.3 ± 4.5``.

    The ± is the standard error of the paired difference, which is what tells two stages
    apart (each score's own standard error also holds the noise that both share).
    """
    pair = entry.get("gt_free_vs_best")
    if pair is None:
        return "lowest"
    return f"{pair['difference']:+.4g} ± {pair['standard_error']:.2g}"


def ranking_note(manifest: Mapping[str, Any],
                 label: Callable[[Mapping[str, Any]], str] = lambda e: f"stage {e['stage']}",
                 ) -> str:
    """One sentence on which stage the GT-free scores favour, or that they cannot tell.

    ``label`` names a stage entry (default ``stage N``).
    """
    stages = manifest["stages"]
    best = stages[manifest["best_stage"] - 1]
    ties = [stages[i - 1] for i in manifest.get("indistinguishable_from_best", [])]
    if not ties:
        if len(stages) == 1:
            return f"GT-free score: {label(best)} (one stage)"
        return (f"Lowest GT-free score: {label(best)} (lower than every other stage's by more "
                f"than {SIGNIFICANT:g} standard errors of the difference)")
    names = [label(e) for e in sorted([best, *ties], key=lambda e: e["stage"])]
    diffs = ", ".join(f"{label(e)} {versus_best(e)}" for e in ties)
    return (f"GT-free scores of {', '.join(names[:-1])} and {names[-1]} are indistinguishable: "
            f"the difference to the lowest ({label(best)}) is within {SIGNIFICANT:g} standard "
            f"errors ({diffs})")


def report_stage(entry: dict[str, Any]) -> None:
    """One line on a finished stage: trained or reused, its time, its scores."""
    from tqdm.auto import tqdm

    how = "trained" if entry["trained"] else "reused"
    psnr = f", PSNR {entry['metrics']['psnr']:.2f} dB" if entry["metrics"] else ""
    tqdm.write(f"stage {entry['stage']} {entry['variant']}: {how} "
               f"({entry['stage_seconds']:.1f} s), GT-free score "
               f"{entry['gt_free_error']:.6g}{psnr}")
