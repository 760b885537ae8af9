"""Condense ``n2v-cascade reproduce`` runs into one verdict table for RESULTS.md.

``python -m benchmarks.reproduce_summary NAME=OUTDIR [NAME=OUTDIR ...]`` reads each
``OUTDIR/reproduce.json`` and prints Markdown: per data set and noise model, the noisy
input, the best single stage, the best 2nd/3rd pass, the best two-stage cascade, the
paper's headline pair (Structured -> Probabilistic), which stage the GT-free score picks,
and the Spearman correlation of that score with the true MSE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _best(runs: list[dict], keep) -> dict:
    chosen = [r for r in runs if keep(r)]
    return max(chosen, key=lambda r: r["psnr"])


def _is_pass(r: dict, k: int) -> bool:
    parts = r["chain"].split("+")
    return len(parts) == k and len(set(parts)) == 1


def _is_cascade(r: dict) -> bool:
    parts = r["chain"].split("+")
    return len(parts) == 2 and parts[0] != parts[1]


def rows(name: str, data: dict) -> list[str]:
    """Markdown rows of one reproduce run (one row per noise model)."""
    out = []
    for noise, res in data["noise"].items():
        runs = res["runs"]
        first = _best(runs, lambda r: r["stages"] == 1)
        second = _best(runs, lambda r: _is_pass(r, 2))
        third = _best(runs, lambda r: _is_pass(r, 3))
        casc = _best(runs, _is_cascade)
        sp = _best(runs, lambda r: r["chain"] == "structured+probabilistic")
        picked = min(runs, key=lambda r: r["gt_free"])
        top = max(runs, key=lambda r: r["psnr"])
        rho = res["spearman_gt_free_vs_mse"]["rho"]

        def cell(r: dict) -> str:
            return f"{r['run']} {r['psnr']:.2f}"

        out.append(
            f"| {name} | {noise} | {res['noisy']['psnr']:.2f} | {cell(first)} | "
            f"{cell(second)} | {cell(third)} | {cell(casc)} | {sp['psnr']:.2f} | "
            f"{cell(picked)} ({'= best' if picked is top else 'best: ' + cell(top)}) | "
            f"{rho:.3f} |")
    return out


def pass_rows(name: str, data: dict) -> list[str]:
    """Per variant: PSNR of passes 1-3, and the change from pass 1 to the best later pass."""
    out = []
    for noise, res in data["noise"].items():
        by_chain = {r["chain"]: r for r in res["runs"]}
        cells = []
        for v in data["variants"]:
            p = [by_chain.get("+".join([v] * k)) for k in (1, 2, 3)]
            if None in p:
                continue
            delta = max(p[1]["psnr"], p[2]["psnr"]) - p[0]["psnr"]
            cells.append(f"{p[0]['psnr']:.2f} / {p[1]['psnr']:.2f} / {p[2]['psnr']:.2f} "
                         f"({delta:+.2f})")
        out.append(f"| {name} | {noise} | " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    print("| data | noise | noisy | best 1st stage | best 2nd pass | best 3rd pass | "
          "best 2-stage cascade | Structured→ProbN2V | GT-free pick | Spearman |")
    print("| --- | --- | ---: | --- | --- | --- | --- | ---: | --- | ---: |")
    for arg in args:
        name, _, folder = arg.partition("=")
        data = json.loads((Path(folder) / "reproduce.json").read_text())
        print("\n".join(rows(name, data)))
    print()
    variants = None
    for arg in args:
        name, _, folder = arg.partition("=")
        data = json.loads((Path(folder) / "reproduce.json").read_text())
        if variants is None:
            variants = data["variants"]
            print("| data | noise | " + " | ".join(f"{v}: pass 1 / 2 / 3 (best later - 1st)"
                                                    for v in variants) + " |")
            print("| --- | --- |" + " --- |" * len(variants))
        print("\n".join(pass_rows(name, data)))


if __name__ == "__main__":
    main()
