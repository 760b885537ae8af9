"""Render ``results.json`` into the generated block of ``RESULTS.md`` (between markers).

Everything outside the markers is kept byte for byte; without markers the block is
appended at the end of the file.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.speed import CAREAMICS

BEGIN = "<!-- BEGIN generated: make bench (python -m benchmarks.run); edits inside are lost -->"
END = "<!-- END generated: make bench -->"
BM3D_REFERENCE = 28.77  # BM3D with the true sigma, BSD68 test001-004, reference run on this machine


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(" ---: " if i else " --- " for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _f(value: object, fmt: str = ".2f") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float | int):
        return format(value, fmt)
    return str(value)


def _meta(meta: dict) -> list[str]:
    load = meta.get("load", {})
    return [f"*Run {meta['date']}, `{meta['command']}`, suite `{meta['suite']}`, "
            f"{meta['threads']} torch thread(s), git `{meta.get('git', '?')}`; "
            f"{meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} s CPU; load average "
            f"{load.get('start', '?')} at start, {load.get('end', '?')} at end.*", ""]


def machine_lines(m: dict) -> list[str]:
    return [f"- Machine: {m['cpu']} ({m['cores']} cores), {m['mem_gb']:.0f} GB RAM, "
            f"Python {m['python']}, torch {m['torch']} (oneDNN {m['onednn']}), "
            f"numpy {m['numpy']}, scikit-image {m['skimage']}, bm3d {m['bm3d']}.",
            f"- Host: `{m['host']}`; other processes share this CPU (see the load averages "
            f"per section: with 2 cores, a load above 1 means our threads compete).", ""]


def quality_lines(sec: dict) -> list[str]:
    out = ["### Quality on real data", ""] + _meta(sec["meta"])
    out += [f"Equal training budget per variant and data set: **{sec['budget_s']:g} s** of "
            "training-step time, counted as CPU seconds per torch thread (= wall seconds on "
            "an idle machine; time taken by other processes on this shared CPU is not "
            f"counted) ({sec['precision']} autocast, {sec['recipe']}). "
            "Self-supervised models are trained on the noisy images of the data set only; "
            "baselines see each noisy image alone. PSNR/SSIM are means over the images "
            "(data range 255).", ""]
    for ds in sec["datasets"]:
        out += [f"**{ds['name']}** - {ds['description']} ({ds['n_images']} images)", ""]
        rows = [[r["method"], _f(r["psnr"]), _f(r["ssim"], ".4f"), _f(r.get("train_s"), ".0f"),
                 _f(r.get("train_wall_s"), ".0f"), _f(r.get("steps"), "d"),
                 _f(r.get("predict_s"), ".1f")] for r in ds["rows"]]
        out += _table(["method", "PSNR (dB)", "SSIM", "train s", "train wall s", "steps",
                       "predict wall s"], rows)
        out += group_lines(ds["rows"])
        for rerun in ds.get("rerun", []):
            out += [f"*Rows of {', '.join(rerun['recipes'])} retrained {rerun['date']} "
                    f"(`{rerun['command']}`), same budget and data.*", ""]
    pc = sec.get("precision_check")
    if pc:
        out += [f"**bfloat16 check** ({pc['dataset']}): the bf16 run uses the budget, the "
                "float32 run trains the same number of steps.", ""]
        rows = [[r["variant"], r["precision"], r["steps"], _f(r["train_s"], ".0f"),
                 _f(r["psnr"]), _f(r["psnr_bf16_inference"]), _f(r["predict_s"], ".1f"),
                 _f(r["predict_bf16_s"], ".1f")] for r in pc["rows"]]
        out += _table(["variant", "training", "steps", "train s", "PSNR fp32 inference",
                       "PSNR bf16 inference", "predict s fp32", "predict s bf16"], rows)
    return out


def group_lines(rows: list[dict]) -> list[str]:
    """Say how a data set trained per group was split, and the blind radii chosen."""
    grouped = [r for r in rows if r.get("models")]
    if not grouped:
        return []
    sizes = ", ".join(f"{m['images'][0].split('_')[0]} ({len(m['images'])})"
                      for m in grouped[0]["models"])
    out = [f"One model per microscope type - {sizes} images - with the budget split by "
           "image count, for every variant alike (a user trains on one instrument's data)."]
    radii = {r["method"].split(" - ")[0]: [m["blind_radius"] for m in r["models"]]
             for r in grouped if any(m.get("blind_radius") for m in r["models"])}
    if radii:
        out[-1] += " Blind radius chosen per group (`auto`): " + "; ".join(
            f"{k}: {', '.join(map(str, v))}" for k, v in radii.items()) + "."
    return out + [""]


def ttq_lines(sec: dict) -> list[str]:
    res = sec["result"]
    out = ["### Time to quality", ""] + _meta(sec["meta"])
    screening = res.get("screening_best")
    note = (f" The quality section's winner at its short budget was `{screening}`; the "
            "probabilistic blind-spot net is run here because it is expected to be best at "
            "longer budgets." if screening else "")
    out += [f"{res['description']}; noisy input {res['noisy_psnr']:.2f} dB. One run per "
            "variant, weights snapshotted at the given training times (step time only; "
            "evaluations excluded)." + note, "",
            f"![PSNR vs training seconds]({sec['plot']})", ""]
    rows = []
    for s in res["series"].values():
        for p in s["points"]:
            rows.append([s["label"], _f(p["train_s"], ".0f"), p["steps"], _f(p["psnr"]),
                         _f(p.get("psnr_posterior"))])
        rows.append([s["label"] + " + 8-fold TTA", _f(s["points"][-1]["train_s"], ".0f"),
                     s["points"][-1]["steps"], "" if s["posterior"] else _f(s["final_tta_psnr"]),
                     _f(s["final_tta_psnr"]) if s["posterior"] else "-"])
    out += _table(["variant", "train s", "steps", "PSNR (dB)", "posterior PSNR (dB)"], rows)
    return out


def speed_lines(sec: dict) -> list[str]:
    out = ["### Speed", ""] + _meta(sec["meta"])
    out += ["Throughputs use CPU seconds per torch thread (as the training budget); the wall "
            "figure is what the shared machine gave.", ""]
    out += ["Training throughput of the real training loop (`train()`: sampling, 8-fold "
            "augmentation, masking, forward, backward, Adam; first step not counted):", ""]
    rows = [[r["label"], f"{r['patch']}x{r['patch']}", r["batch"], r["precision"],
             _f(r["patches_per_s"], ".1f"), _f(r["mpix_per_s"], ".3f"),
             _f(r.get("wall_patches_per_s"), ".1f"), r["steps_timed"]]
            for r in sec["training"]]
    out += _table(["network", "patch", "batch", "precision", "patches/s", "MP/s",
                   "patches/s (wall)", "steps"], rows)
    size = sec["inference"][0]["size"] if sec["inference"] else 0
    out += [f"Inference (`Model.predict`, default tiling: 512 tiles, batch 4) on a "
            f"{size}x{size} image:", ""]
    rows = [[r["label"], r["precision"], _f(r["seconds"], ".1f"), _f(r.get("wall_s"), ".1f"),
             _f(r["mpix_per_s"], ".3f")] for r in sec["inference"]]
    out += _table(["network", "precision", "seconds", "wall seconds", "MP/s"], rows)
    out += ["Peak resident memory of `Model.denoise` on a float32 image, fresh subprocess "
            "(includes Python + torch, the input and all outputs; limit 2048 MB):", ""]
    rows = []
    for r in sec["memory"]:
        if "error" in r:
            rows.append([r.get("label", "?"), "-", "-", "-", "-", r["error"]])
            continue
        rows.append([r["label"], "x".join(map(str, r["shape"])), _f(r["peak_rss_mb"], ".0f"),
                     _f(r["rss_after_load_mb"], ".0f"), _f(r["tracemalloc_peak_mb"], ".0f"),
                     f"{r['seconds']:.0f} s" + (" - OK" if r["peak_rss_mb"] < 2048 else
                                                " - over 2 GB")])
    out += _table(["model", "image", "peak RSS MB", "RSS after import+load MB",
                   "NumPy peak MB (tracemalloc)", "time / verdict"], rows)
    return out


def limit_lines(sec: dict) -> list[str]:
    pk = sec["peaks"]
    out = ["### Distance to the limit", ""] + _meta(sec["meta"])
    out += [f"2048x2048 matmul peak in this run ({sec['meta']['threads']} thread(s)): "
            f"float32 **{pk['float32']:.0f} GFLOP/s**, bfloat16 **{pk['bfloat16']:.0f} "
            "GFLOP/s** (best of the measurements at start and end). FLOPs are counted with "
            "`torch.utils.flop_counter.FlopCounterMode` on the reference (unfused) float32 "
            "network; bf16 runs are credited with the same FLOPs.", ""]
    rows = [[f["label"], f["params"], _f(f["fwd_flop_per_px"] / 1e3, ".1f"),
             _f(f["train_gflop_per_patch"], ".3f"), _f(f["train_gflop_per_patch_3x"], ".3f")]
            for f in sec["flops"]]
    out += _table(["network", "params", "fwd kFLOP/px", "train GFLOP/64² patch (counted)",
                   "3x fwd"], rows)
    rows = [[a["what"], a["precision"], _f(a["gflops"], ".1f"), _f(a["pct_fp32_peak"], ".0f"),
             _f(a["pct_bf16_peak"], ".0f")] for a in sec["achieved"]]
    out += _table(["workload", "precision", "GFLOP/s", "% fp32 peak", "% bf16 peak"], rows)
    return out


def peers_lines(sec: dict, sections: dict) -> list[str]:
    """The peers table; our rows join it when the quality section ran on the same frames."""
    ds = sec["dataset"]
    budget = sec["peer_budget_s"]
    out = ["### Peers on FMD", ""] + _meta(sec["meta"])
    out += [f"**{ds['name']}** - {ds['description']} ({ds['n_images']} images). FM2S, "
            "Noise2Fast and ZS-N2N are our re-implementations of the published algorithms "
            "(`benchmarks/peers/`), trained per image (zero-shot) for "
            + ("their published schedules" if budget is None else
               f"at most **{budget:g} s** per image (or until their published schedule or "
               "stopping rule ends)") + f"; CAREamics N2V ({sec['careamics_settings']}) is "
            f"trained like our variants, one model per microscope type with **{sec['budget_s']:g}"
            " s** in total split by image count. Times are CPU seconds per torch thread per "
            "image (for the methods trained per microscope type: totals divided by the image "
            "count); *schedule done* counts the images whose training ended by the method's "
            "own rule rather than the budget.", ""]
    rows = []
    for r in sec["rows"]:
        if "unavailable" in r:
            rows.append([r["method"], "-", "-", "-", "-", "-", "-",
                         f"not run: {r['unavailable']}"])
            continue
        steps = r.get("steps_per_image")
        if steps is None and r.get("steps") is not None:
            steps = r["steps"] / r["n_images"]
        train, pred = r.get("train_s_per_image"), r.get("predict_s_per_image")
        total = (train or 0.0) + (pred or 0.0) if (train, pred) != (None, None) else None
        done = f"{r['finished']}/{r['n_images']}" if "finished" in r else ""
        rows.append([r["method"], _f(r["psnr"]), _f(r["ssim"], ".4f"), _f(train, ".1f"),
                     _f(steps, ".0f"), _f(pred, ".1f"), _f(total, ".1f"), done])
    ours = _ours_on(sections.get("quality"), set(ds["names"]))
    rows += [[f"{r['method']} (ours, quality section)", _f(r["psnr"]), _f(r["ssim"], ".4f"),
              _f(r["train_s"] / ds["n_images"], ".1f"), _f(r["steps"] / ds["n_images"], ".0f"),
              _f(r["predict_s"] / ds["n_images"], ".1f"),
              _f((r["train_s"] + r["predict_s"]) / ds["n_images"], ".1f"), ""] for r in ours]
    out += _table(["method", "PSNR (dB)", "SSIM", "train CPU s / image", "steps / image",
                   "predict s / image", "total s / image", "schedule done"], rows)
    if ours:
        out += ["Our rows come from the quality section above (same frames, its budget and "
                "settings; their predict time is wall time).", ""]
    car = next((r for r in sec["rows"] if r.get("key") == "careamics-n2v"), None)
    if car and "unavailable" not in car:
        version = (sec.get("careamics") or {}).get("version", "?")
        out += [f"CAREamics {version}, run in its own venv (`make peers-env`) through a "
                "subprocess.", ""]
    return out


def _ours_on(quality: dict | None, names: set[str]) -> list[dict]:
    """Our self-supervised FMD rows of the quality section, if it used exactly ``names``."""
    for ds in (quality or {}).get("datasets", []):
        rows = [r for r in ds["rows"] if r.get("kind") == "self-supervised"]
        grouped = [r for r in rows if r.get("models")]
        if ds["name"] == "fmd-real" and grouped and {
                n for m in grouped[0]["models"] for n in m["images"]} == names:
            return rows
    return []


def targets_lines(sections: dict) -> list[str]:
    """The speed and quality targets with the measured values (from the sections that ran)."""
    rows = []
    speed, limit, ttq = (sections.get(k) for k in ("speed", "limit", "time_to_quality"))
    if speed:
        same = [r for r in speed["training"] if r["backbone"] == "unet-333k"]
        if same:
            best = max(same, key=lambda r: r["patches_per_s"])
            ratio = best["patches_per_s"] / CAREAMICS["patches_per_s"]
            rows.append(["training >= 3x CAREamics N2V (same-size U-Net, 64x64, batch 128)",
                         f"{best['patches_per_s']:.1f} patches/s ({best['precision']}) = "
                         f"{ratio:.2f}x of {CAREAMICS['patches_per_s']:g}",
                         "met" if ratio >= 3 else f"missed by {3 - ratio:.2f}x"])
    if limit:
        for a in limit["achieved"]:
            if a.get("target"):
                pct = a["pct_fp32_peak"]
                rows.append([f">= 50% of fp32 matmul peak: {a['what']} ({a['precision']})",
                             f"{a['gflops']:.0f} GFLOP/s = {pct:.0f}%",
                             "met" if pct >= 50 else f"missed by {50 - pct:.1f} points"])
    if ttq:
        best, where = None, ""
        for s in ttq["result"]["series"].values():
            for p in s["points"]:
                for key in ("psnr", "psnr_posterior"):
                    if p["train_s"] <= 600 and p.get(key) is not None and (
                            best is None or p[key] > best):
                        best, where = p[key], f"{s['label']} {key} at {p['train_s']:.0f} s"
            if s["budget_s"] <= 600 and (best is None or s["final_tta_psnr"] > best):
                best, where = s["final_tta_psnr"], f"{s['label']} + TTA"
        refs = [("reference run", BM3D_REFERENCE)]
        quality = sections.get("quality")
        if quality:
            for row in quality["datasets"][0]["rows"]:
                if row["method"].startswith("BM3D"):
                    refs.append(("this run", row["psnr"]))
        if best is not None:
            for name, ref in refs:
                gap = best - ref
                rows.append([f"best self-supervised, BSD68 quick set, <= 10 min training > "
                             f"BM3D ({name}) {ref:.2f} dB", f"{best:.2f} dB ({where})",
                             "met" if gap > 0 else f"missed by {-gap:.2f} dB"])
    if not rows:
        return []
    return ["### Targets", ""] + _table(["target", "measured", "status"], rows)


def render(results: dict) -> str:
    """The generated block (markers included) for ``results``."""
    sections = results.get("sections", {})
    out = [BEGIN, "", "## Generated benchmark results", ""]
    out += machine_lines(results["machine"])
    out += targets_lines(sections)
    for key, fn in (("quality", quality_lines), ("time_to_quality", ttq_lines),
                    ("speed", speed_lines), ("limit", limit_lines)):
        if key in sections:
            out += fn(sections[key])
    if "peers" in sections:
        out += peers_lines(sections["peers"], sections)
    return "\n".join(out).rstrip() + "\n\n" + END


def update_markdown(path: Path, block: str) -> None:
    """Replace the generated block in ``path`` (or append it), keeping everything else."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = text.find(BEGIN), text.find(END)
    if start != -1 and end != -1 and end > start:
        text = text[:start] + block + text[end + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
