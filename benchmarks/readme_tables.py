"""The measured tables of the documentation, written from the result records under benchmarks/results/.

Each table stands in one of DOCUMENTS (the README, docs/measured.md) between `<!-- record-table: NAME -->` and
`<!-- /record-table -->`; this script rewrites those blocks from the records, and `--check` (run by the test suite)
fails when a block differs from what its records say, so a figure in a marked block cannot drift from the file
behind it.

    python benchmarks/readme_tables.py          # rewrite the blocks
    python benchmarks/readme_tables.py --check  # exit 1 if any block is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from itertools import groupby
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "measured.md")  # where the record tables stand
BLOCK = re.compile(r"(<!-- record-table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /record-table -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _source(*names: str) -> str:
    parts = []
    for name in names:
        record = load(name)
        dirty = " with uncommitted changes" if "uncommitted" in record["commit"] else ""
        machine = (record.get("machine") or {}).get("gpu") or (record.get("machine") or {}).get(
            "cpu", "unknown machine"
        )
        parts.append(
            f"benchmarks/results/{name}.json ({record['date'][:10]}, commit {record['commit'][:7]}{dirty}, {machine})"
        )
    return "Record: " + "; ".join(parts) + "."


def precision_speed() -> str:
    f = load("precision")["figures"]
    rows = ["| measure (images/s) | fp32 | bf16 | bf16 / fp32 | over the matmul gain |", "|---|---|---|---|---|"]
    for key, label in (
        ("train_128", "training step, 128 px (full mode, augmentation, batch 32)"),
        ("train_224", "training step, 224 px"),
        ("gradcam_224", "Grad-CAM, 224 px, batch 32"),
    ):
        rows.append(
            f"| {label} | {f[key + '_fp32']:.1f} | {f[key + '_bf16']:.1f} | **{f[key + '_bf16_over_fp32']:.2f}x** "
            f"| {f[key + '_ratio_over_matmul_ratio']:.2f} |"
        )
    rows.append(
        f"| matmul ceiling, 2048 x 2048 (GFLOP/s) | {f['matmul_tflops_fp32'] * 1e3:.0f} | "
        f"{f['matmul_tflops_bf16'] * 1e3:.0f} | {f['matmul_bf16_over_fp32']:.2f}x | |"
    )
    auto = f["auto_resolves_to"]
    rows.append("")
    rows.append(
        f"`auto` picks **{auto['used']}** here ({auto['reason']}). Medians of {f['rounds']} alternating rounds of "
        f"{f['films_per_round']} films. " + _source("precision")
    )
    return "\n".join(rows)


def precision_maps() -> str:
    f = load("precision-maps")["figures"]
    shares = f["largest_region_share_difference"]
    return (
        f"| films | Spearman of raw maps, median (min) | largest region-share difference | largest probability "
        f"difference | decisions changed |\n|---|---|---|---|---|\n"
        f"| {f['films']} ({f['films_with_reference_lungs']} with reference lungs) | "
        f"{f['spearman_raw_maps_median']:.4f} ({f['spearman_raw_maps_min']:.4f}) | "
        f"{max(shares.values()):.4f} ({max(shares, key=shares.get)}) | {f['largest_probability_difference']:.5f} | "
        f"{f['decisions_changed_at_threshold']} |\n\n" + _source("precision-maps")
    )


def precision_seeds() -> str:
    f = load("precision-seeds")["figures"]
    rows = ["| precision | seed | validation AUC | epochs' seconds |", "|---|---|---|---|"]
    for r in f["runs"]:
        rows.append(f"| {r['precision']} | {r['seed']} | {r['val_auc']:.4f} | {r['epochs_seconds']:.0f} |")
    rows.append("")
    rows.append(
        f"fp32 seed-to-seed spread {f['fp32_seed_spread']:.4f}; bf16 mean minus fp32 mean "
        f"{f['bf16_mean_minus_fp32_mean']:+.4f}; fp32 took {f['epochs_seconds_fp32_over_bf16']:.2f}x bf16's time "
        f"(`--max-per-class {f['per_class']} --size-schedule {f['schedule']}`). " + _source("precision-seeds")
    )
    return "\n".join(rows)


def _schedule(figures: dict) -> str:
    """The size schedule a run trained with, read from its epochs' image sizes (`--size-schedule` notation)."""
    sizes = figures.get("image_size_per_epoch") or []
    return ",".join(f"{size}:{len(list(epochs))}" for size, epochs in groupby(sizes)) or "n/a"


def _run_row(name: str, label: str) -> str:
    f = load(name)["figures"]
    low, high = f["roc_auc_ci95"]
    wall = f"{f['wall_s'] / 60:.0f} min" if f.get("wall_s") else "n/a"
    memory = f"{f['peak_rss_gb']:.1f} GB" if f.get("peak_rss_gb") else "n/a"
    return (
        f"| {label} | {_schedule(f)} | {wall} | {memory} | {f['roc_auc']:.3f} ({low:.3f}-{high:.3f}) | "
        f"{f['accuracy_at_threshold']:.3f} at {f['threshold']:.3f} (sens. {f['sensitivity_at_threshold']:.3f}, "
        f"spec. {f['specificity_at_threshold']:.3f}) | {f['sensitivity_at_specificity_0.85']['value']:.3f} | "
        f"{f['specificity_at_sensitivity_0.95']['value']:.3f} | {f['ece']:.3f} |"
    )


def scratch_runs() -> str:
    names = [
        ("scratch-bf16", "`scratch`, bf16 training, AMD EPYC (AVX512-BF16, no AMX)"),
        ("scratch-amx", "`scratch`, bf16 throughout (this version's `auto`), Intel Xeon with AMX-BF16"),
        ("scratch-amx-quiet", "the same, nothing else running"),
        ("scratch-longer-amx", "`scratch` with the longer 224 px phase (the recipe now), the same Xeon"),
    ]
    names = [(n, label) for n, label in names if (RESULTS / f"{n}.json").is_file()]
    rows = [
        "| run | size schedule | wall time | peak memory | held-out ROC-AUC (95% CI, by patient) | accuracy at the "
        "validation threshold | sens. at spec. 0.85 | spec. at sens. 0.95 | ECE (15 bins) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_run_row(n, label) for n, label in names),
    ]
    notes = [load(n).get("note") for n, _ in names]
    return "\n".join(rows) + "\n\n" + " ".join(n for n in notes if n) + " " + _source(*(n for n, _ in names))


RELIANCE_RUNS = (  # (the run's record: its wall time; the check re-measured on its model and films, or None where
    # the run's own check is the current one; label)
    ("scratch-amx-quiet", "reliance-check-scratch", "`scratch`"),
    ("recommended-amx", "reliance-check-recommended", "`recommended` (`scratch` with `--focus lungs-only`)"),
    ("scratch-longer-amx", None, "`scratch`"),
    ("recommended-longer-amx", None, "`recommended`"),
)


def reliance() -> str:
    """The decision-reliance check of each recipe's held-out run, with the issue's targets for the recommended one."""
    names = [(n, c, label) for n, c, label in RELIANCE_RUNS if (RESULTS / f"{c or n}.json").is_file()]
    columns = ("whole", "lungs_removed_fill", "only_lungs_fill", "lungs_removed_blur", "only_lungs_blur")
    rows = [
        "| run (780 held-out films, size schedule) | whole film | lungs removed (grey) | only the lungs (grey) | "
        "lungs removed (blur) | only the lungs (blur) | removed <= 0.75 and only >= 0.95 x whole | verdict | wall "
        "time of the one `run` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, check, label in names:
        r = load(check)["figures"]["masks"]["as_is"] if check else load(name)["figures"]["reliance"]
        auc, ci = r["roc_auc"], r["roc_auc_ci95"]
        cells = [f"{auc[c]:.3f} ({ci[c][0]:.3f}-{ci[c][1]:.3f})" for c in columns]
        met = auc["lungs_removed_fill"] <= 0.75 and auc["only_lungs_fill"] >= 0.95 * auc["whole"]
        wall = load(name)["figures"].get("wall_s")
        rows.append(
            f"| {label}, {_schedule(load(name)['figures'])} | "
            + " | ".join(cells)
            + f" | {'met' if met else 'not met'} | {r['verdict']} | "
            + (f"{wall / 60:.0f} min |" if wall else "n/a |")
        )
    return (
        "\n".join(rows)
        + "\n\nROC-AUC with 95% bootstrap intervals by patient; each run's model, seed 0, bf16, this CPU; the check "
        "as it is now (each region removed whole, the feather outside it), re-run on each run's model and evaluated "
        "films (`python benchmarks/reliance_edge.py RUN --masks as_is --record NAME`) where the run predates it, "
        "the run's own otherwise; the wall time is the run's. "
        + _source(*(n for n, c, _ in names), *(c for _, c, _ in names if c))
    )


GPU_ARMS = (
    ("scratch-gpu", "`scratch`"),
    ("control-gpu", "+ 2 epochs `--focus body` (control: `focused` with `--attention-penalty 0`)"),
    ("focused-gpu", "`focused` (+ the penalty)"),
)


def gpu_recipes() -> str:
    rows = [
        "| run (780 held-out films) | size schedule | wall time on the GPU | held-out ROC-AUC (95% CI, by patient) | "
        "accuracy at the validation threshold | sens. at spec. 0.85 | spec. at sens. 0.95 | ECE (15 bins) | "
        "temperature | guard flags |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in GPU_ARMS:
        f = load(name)["figures"]
        low, high = f["roc_auc_ci95"]
        rows.append(
            f"| {label} | {_schedule(f)} | {f['wall_s']:.0f} s | {f['roc_auc']:.3f} ({low:.3f}-{high:.3f}) | "
            f"{f['accuracy_at_threshold']:.3f} at {f['threshold']:.3f} (sens. {f['sensitivity_at_threshold']:.3f}, "
            f"spec. {f['specificity_at_threshold']:.3f}) | {f['sensitivity_at_specificity_0.85']['value']:.3f} | "
            f"{f['specificity_at_sensitivity_0.95']['value']:.3f} | {f['ece']:.3f} | {f['temperature']:.2f} | "
            f"{f['guard_flagged_share']:.1%} |"
        )
    machine = load("scratch-gpu")["machine"]
    return (
        "\n".join(rows)
        + f"\n\nOn {machine['gpu']} (torch {machine['torch']}), fp32 with PyTorch's default TF32 convolutions, seed 0, "
        "one run each; leakage 0 images / 0 patients in every run. " + _source(*(n for n, _ in GPU_ARMS))
    )


def _pair(compare: dict, measure: str, fmt, side: str = "B") -> str:
    """NORMAL / PNEUMONIA of one run (A or B) in a compare record's attention measure."""
    by_class = compare["attention"][measure]
    return " / ".join(fmt(by_class[c][side]) for c in ("NORMAL", "PNEUMONIA"))


def gpu_focused() -> str:
    focused, control = load("compare-focused-gpu")["figures"], load("compare-control-gpu")["figures"]
    fig = {name: load(name)["figures"] for name, _ in GPU_ARMS}

    def per_class(name, key, fmt):
        return " / ".join(fmt(fig[name]["attention"][c][key]) for c in ("NORMAL", "PNEUMONIA"))

    def worst_p(measure):
        return max(focused["attention"][measure][c]["wilcoxon_p"] for c in ("NORMAL", "PNEUMONIA"))

    auc, acc = focused["classification"]["roc_auc"], focused["classification"]["accuracy"]

    def diff(d):
        return f"{d['difference']:+.3f} ({d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"

    ratio, outside, point, share = "{:.2f}".format, "{:.1%}".format, "{:.2f}".format, "{:.0%}".format
    rows = [
        "| measure (780 held-out films) | `scratch` | control | `focused` | `focused` - `scratch` (95% CI) |",
        "|---|---|---|---|---|",
        f"| ROC-AUC | {auc['A']:.3f} | {control['classification']['roc_auc']['B']:.3f} | {auc['B']:.3f} | "
        f"{diff(auc)} |",
        f"| accuracy at the validation threshold | {acc['A']:.3f} at {acc['thresholds']['A']:.3f} | "
        f"{control['classification']['accuracy']['B']:.3f} | {acc['B']:.3f} at {acc['thresholds']['B']:.3f} | "
        f"{diff(acc)} |",
        "| lung ratio NORMAL / PNEUMONIA (target >= 1.8) | "
        + " | ".join(per_class(n, "lung_ratio", ratio) for n, _ in GPU_ARMS)
        + f" | Wilcoxon p <= {worst_p('ratio_lungs'):.0e} |",
        "| outside-body share NORMAL / PNEUMONIA (target <= 5%) | "
        + " | ".join(per_class(n, "share_outside_body", outside) for n, _ in GPU_ARMS)
        + f" | p <= {worst_p('share_outside_body'):.0e} |",
        "| pointing game in the lungs NORMAL / PNEUMONIA (target >= 0.70) | "
        + " | ".join(per_class(n, "pointing_lungs", point) for n, _ in GPU_ARMS)
        + " | |",
        "| Grad-CAM mass share in the lungs NORMAL / PNEUMONIA | "
        + " | ".join(
            [
                _pair(focused, "share_lungs", share, side="A"),
                _pair(control, "share_lungs", share),
                _pair(focused, "share_lungs", share),
            ]
        )
        + " | |",
    ]
    return (
        "\n".join(rows)
        + "\n\nAll the region measures above are Grad-CAM's, the method the `focused` model was trained against "
        "(not independent evidence of where its decision rests). "
        + _source("compare-focused-gpu", "compare-control-gpu")
    )


def gpu_check() -> str:
    f = load("gpu-check")["figures"]
    cam, train = f["gradcam_224"], f["training_speed_224"]
    tf32, exact = f["cpu_vs_device_frozen"], f["cpu_vs_device_frozen_tf32_off"]
    return (
        f"On {f['environment']['gpu']} (torch {f['environment']['torch']}, CUDA {f['environment']['cuda']}, "
        f"NCCL {f['environment']['nccl']}): Grad-CAM at 224 px, batch 32, **{cam['ours_img_s']:,.0f} films/s**, "
        f"{cam['ours_img_s'] / cam['library_img_s']:.1f}x pytorch-grad-cam's ({cam['library_img_s']:,.0f}); full "
        f"training at 224 px **{train['train_img_s']:,.0f} films/s**; a frozen head trained on the CPU and on the GPU "
        f"from one seed differs by at most {tf32['fc_weight_max_abs_diff']:.1e} with PyTorch's default TF32 "
        f"convolutions and {exact['fc_weight_max_abs_diff']:.1e} with TF32 off (weights of scale "
        f"{exact['fc_weight_scale']:.1e}); `pneumocam run --device cuda` end to end: "
        f"{'passed' if f['run_end_to_end']['ok'] else 'FAILED'}; pneumocam's collectives in a one-process NCCL "
        f"group: {'passed' if f['nccl_one_process']['ok'] else 'FAILED'}; two torchrun processes on one GPU: "
        f"{f['torchrun_2_processes']['two_processes']} (expected: NCCL wants one GPU per process, and the machine "
        "had one; N-process NCCL training was not measured). " + _source("gpu-check")
    )


def performance() -> str:
    from run import table_rows  # the rows `make bench` prints, so the two cannot differ

    record = load("performance")
    rows = ["| measure | result | against |", "|---|---|---|"]
    rows += [f"| {name} | {value} | {note} |" for name, value, note in table_rows(record["figures"])]
    return "\n".join(rows) + "\n\n" + record.get("note", "") + ". " + _source("performance")


def serve_abuse() -> str:
    f = load("serve-abuse")["figures"]
    latency = load("serve-latency")["figures"]
    return (
        "| measure | result |\n|---|---|\n"
        f"| requests in {f['seconds']:.0f} s from {f['clients']} clients (good and bad mixed) | {f['requests']:,} |\n"
        f"| answers with a 5xx status | **{f['server_errors_5xx']}** |\n"
        + (
            f"| good uploads and film views without a 200 / connections closed unexpectedly | "
            f"{f['good_requests_not_200']} / {f['closed_connections_unexpected']} |\n"
            if "good_requests_not_200" in f
            else ""
        )
        + f"| hostile inputs sent (kinds) | {len(f.get('status_by_kind', {})) - 2} |\n"
        f"| status counts | {', '.join(f'{k}: {v}' for k, v in f['status_counts'].items())} |\n"
        f"| good uploads: median / 95th percentile latency under abuse | {f['good_latency_p50_s']:.2f} s / "
        f"{f['good_latency_p95_s']:.2f} s |\n"
        f"| good uploads one at a time before it | {f['quiet_latency_median_s']:.3f} s |\n"
        f"| server peak RSS over its idle RSS | **{f['peak_over_idle_mb']:.0f} MB** "
        f"(idle {f['idle_rss_mb']:.0f} MB) |\n"
        f"| quiet latency against the model's own Grad-CAM (`benchmarks/serve.py`) | "
        f"{latency['latency_ratio']:.2f}x ({latency['server_median_latency_s']:.3f} s vs "
        f"{latency['model_single_image_gradcam_s']:.3f} s) |\n"
        + (
            f"| the viewer's request (`display=true`: the film to look at too), the same way | "
            f"{latency['display_latency_ratio']:.2f}x ({latency['server_median_latency_display_s']:.3f} s) |\n"
            if "display_latency_ratio" in latency
            else ""
        )
        + "\n"
        + _source("serve-abuse", "serve-latency")
    )


LEVER_LABELS = {
    "base": "`scratch` as it was (128:6, 224:3)",
    "acquisition": "+ acquisition augmentation (gamma, blur/sharpen, noise)",
    "label_smoothing": "+ label smoothing 0.1",
    "seed1": "seed 1 (split seed 0)",
    "seed2": "seed 2 (split seed 0)",
    "ensemble2": "ensemble of seeds 0 and 1 (mean probability)",
    "ensemble3": "ensemble of seeds 0, 1, 2 (mean probability)",
    "longer_224": "longer 224 px phase (128:6, 224:5)",
    "more_epochs": "more epochs (128:9, 224:4)",
    "focus_body": "`--focus body`",
    "tta": "`scratch` as it was, read with `--tta` (the film and 4 views, averaged)",
}


def _auc(cell: dict | None) -> str:
    if not cell:
        return "n/a"
    low, high = cell["ci95"]
    return f"{cell['auc']:.3f} ({low:.3f}-{high:.3f})"


def levers() -> str:
    """Each lever trained on the random (carved) and on the family validation; every model on the held-out films."""
    record = load("levers")
    f = record["figures"]
    found = f["levers"]
    rows = [
        "| lever | random validation AUC | its held-out AUC | family validation AUC | its held-out AUC |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(k.split("/")[0] for k in found):
        random, family = found.get(f"{name}/carved"), found.get(f"{name}/family")
        rows.append(
            f"| {LEVER_LABELS.get(name, name)} | {_auc((random or {}).get('val'))} | "
            f"{_auc((random or {}).get('heldout'))} | {_auc((family or {}).get('val'))} | "
            f"{_auc((family or {}).get('heldout'))} |"
        )
    return (
        "\n".join(rows)
        + f"\n\nEach run: {f['max_per_class']} films per class of train (class-balanced subset), the `scratch` "
        "schedule as it was then (128:6, 224:3), seed 0 unless named; held-out: the same 15% of train's patients "
        "for every run (780 films). AUC with 95% bootstrap intervals by patient. "
        + record["note"]
        + " "
        + _source("levers")
    )


# The two schedules compared: (label, lever names for seeds 0-2 in their record, that record, the whole-split `run`
# record with the random validation). The whole split's family-validation runs are in levers-full-family.
SCHEDULES = (
    ("before (128:6, 224:3)", ("base", "seed1", "seed2"), "levers", "base", "scratch-amx-quiet"),
    (
        "longer, now `scratch` (128:6, 224:5)",
        ("longer_224", "longer_224_seed1", "longer_224_seed2"),
        "levers-longer-seeds",
        "longer_224",
        "scratch-longer-amx",
    ),
)


def _present(name: str) -> bool:
    return (RESULTS / f"{name}.json").is_file()


def longer_phase() -> str:
    """The longer 224 px phase against the schedule before it, seed by seed on the subset and on the whole split."""
    rows = [
        "| schedule | train films | seed | random validation AUC | its held-out AUC | family validation AUC | its "
        "held-out AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    whole = load("levers-full-family")["figures"]["levers"] if _present("levers-full-family") else {}
    means, sources = [], []
    for label, names, subset_record, whole_name, run in SCHEDULES:
        subset = load(subset_record)["figures"]
        found = subset["levers"]
        sources.append(subset_record)
        sums: dict[str, list[float]] = {}
        for seed, name in enumerate(names):
            random, family = found.get(f"{name}/carved"), found.get(f"{name}/family")
            for key, cell in (("random", random), ("family", family)):
                if cell:
                    sums.setdefault(key, []).append(cell["val"]["auc"])
                    sums.setdefault(f"{key} held-out", []).append(cell["heldout"]["auc"])
            rows.append(
                f"| {label} | {subset['max_per_class']} per class | {seed} | {_auc((random or {}).get('val'))} | "
                f"{_auc((random or {}).get('heldout'))} | {_auc((family or {}).get('val'))} | "
                f"{_auc((family or {}).get('heldout'))} |"
            )
        means.append(f"{label}: " + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in sums.items()))
        f = load(run)["figures"] if _present(run) else None
        family = whole.get(f"{whole_name}/family")
        if f:
            sources.append(run)
            selected_val = (
                f"{f['val_auc_per_epoch'][f['best_epoch'] - 1]:.3f} (no interval)"  # best_epoch counts from 1
            )
        rows.append(
            f"| {label} | whole split | 0 | {selected_val if f else 'n/a'} | "
            f"{_auc({'auc': f['roc_auc'], 'ci95': f['roc_auc_ci95']}) if f else 'n/a'} | "
            f"{_auc((family or {}).get('val'))} | {_auc((family or {}).get('heldout'))} |"
        )
    if whole:
        sources.append("levers-full-family")
    return (
        "\n".join(rows)
        + "\n\nMeans over the three seeds on the subset (validation AUC, and the held-out AUC of the same models): "
        + "; ".join(means)
        + ". Held-out: the same 15% of train's patients (780 films) for every row, never trained or selected on; AUC "
        "with 95% bootstrap intervals by patient. Whole split, random validation: one `pneumocam run --recipe` "
        "each, its selected epoch's validation AUC (the run stores no interval for it). " + _source(*sources)
    )


def guard_depths() -> str:
    """Each guard score's flagged share per shift at its 95% validation pass rate."""
    record = load("guard-depths")
    f = record["figures"]
    scores = list(f["mean_flagged_over_shifts"])
    rows = ["| films | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    for name, row in f["flagged_share"].items():
        best = max(row[k] for k in scores)
        cells = [f"**{row[k]:.1%}**" if row[k] == best and name != "held-out films as they are" else f"{row[k]:.1%}"
                 for k in scores]  # fmt: skip
        rows.append(f"| {name} (n={row['n']}) | " + " | ".join(cells) + " |")
    mean = f["mean_flagged_over_shifts"]
    rows.append("| mean over the shifts | " + " | ".join(f"{mean[k]:.1%}" for k in scores) + " |")
    return (
        "\n".join(rows)
        + f"\n\nThe `scratch` model (seed 0); each score fitted on {f['train_films']} training films, its threshold "
        f"passing 95% of the {f['val_films']} validation films. {record['note']} " + _source("guard-depths")
    )


def startup() -> str:
    record = load("startup")
    f, machine = record["figures"], record["machine"]
    rows = ["| command | median wall time | against `python -c pass` |", "|---|---|---|"]
    for name, seconds in f["median_s"].items():
        rows.append(f"| `{name}` | {seconds:.3f} s | {f['ratio_to_python'][name]:.1f}x |")
    return (
        "\n".join(rows) + f"\n\nMedians of {f['repeats']} fresh interpreters each, interleaved, on {machine['cpu']} "
        f"({machine['cores']} cores); target: `--version` and `--help` within {f['target_ratio']:g}x, "
        f"{'met' if f['target_met'] else 'missed'}. " + _source("startup")
    )


def foreign_audit() -> str:
    record = load("foreign-audit")
    f, machine = record["figures"], record["machine"]
    rows = ["| model | audit wall time (median) | runs |", "|---|---|---|"]
    for name, seconds in f["median_s"].items():
        runs = ", ".join(f"{s:.0f} s" for s in f["seconds"][name])
        rows.append(f"| {name} | {seconds:.0f} s | {runs} |")
    return (
        "\n".join(rows)
        + f"\n\nForeign / pneumocam: {f['ratio_foreign_to_pneumocam']:.2f}x (target {f['target_ratio']:g}x, "
        f"{'met' if f['target_met'] else 'missed'}); {f['films']} phantom films at {f['image_size']} px, interleaved, "
        f"{machine['torch_threads']} torch thread(s) on {machine['cpu']}. " + _source("foreign-audit")
    )


def shortcut_baseline() -> str:
    record = load("shortcut-baseline")
    rows = ["| data | films | ROC-AUC, no model | carried by (standardised coefficient) |", "|---|---|---|---|"]
    for name, found in record["figures"].items():
        carried = ", ".join(f"{c['feature']} ({c['coefficient']:+.2f})" for c in found["carried_by"][:3])
        rows.append(f"| {name} | {found['n_films']} | {found['roc_auc']:.3f} | {carried} |")
    return "\n".join(rows) + "\n\n" + _source("shortcut-baseline")


def _pair_at(found: dict) -> str:
    return f"{found['sensitivity']:.3f} / {found['specificity']:.3f}" if found["sensitivity"] is not None else "n/a"


def populations() -> str:
    """A Kermany-only model on its held-out patients and on nih-adult: the ranking, the thresholds, the guards."""
    record = load("populations-scratch")
    f = record["figures"]
    head = "| films | n | ROC-AUC | ECE | sens / spec at its threshold | at sensitivity 0.95 on validation | "
    baseline = f.get("baseline_guard_share_flagged") or {}
    before = f"its guard before ({baseline.get('guard') or 'none'})"
    head += f"recalibrated on 50 films | guard flags | {before} | input-statistics guard flags |"
    rows = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in f["by_population"].items():
        rules = f["travelling"]["populations"][name]
        before = f"{baseline[name]:.1%}" if name in baseline else "n/a"
        rows.append(
            f"| {name} | {row['n']} | {row['roc_auc']:.3f} | {row['ece']:.3f} | {_pair_at(rules['validation'])} | "
            f"{_pair_at(rules['sensitivity_target'])} | {_pair_at(rules['recalibrated'])} | "
            f"{f['guard_share_flagged'][name]:.1%} | {before} | {f['input_statistics_guard_share_flagged'][name]:.1%} |"
        )
    views = f["nih_by_stratum"].get("view", {})
    by_view = "; ".join(
        f"{v} {row['roc_auc']:.3f} (n {row['n']}"
        + (f", guard flags {row['share_flagged']:.1%})" if "share_flagged" in row else ")")
        for v, row in views.items()
    )
    return (
        "\n".join(rows) + f"\n\nModel: recipe {f['recipe']}, schedule {f['schedule']}, {f['image_size']} px; threshold "
        f"{f['threshold_recorded']:.3f} ({f['threshold_chosen']}). nih-adult ROC-AUC by view: {by_view}. "
        + _source("populations-scratch")
    )


def guard_parts() -> str:
    """Each guard candidate's share flagged on held-out Kermany and on nih-adult, per model."""
    record = load("guard-parts")
    models = record["figures"]["models"]
    names = list(models[0]["share_flagged"])
    head = ["| guard |"] + [
        f" {m['recipe']} seed {m['seed']}{' (chosen on)' if i == 0 else ''}: held-out / nih-adult |"
        for i, m in enumerate(models)
    ]
    rows = ["".join(head), "|---|" + "---|" * len(models)]
    for name in names:
        cells = [
            f" {m['share_flagged'][name]['kermany_heldout']:.1%} / {m['share_flagged'][name]['nih_adult']:.1%} |"
            for m in models
        ]
        rows.append(f"| {name} |" + "".join(cells))
    trained = "; ".join(
        f"{m['recipe']} seed {m['seed']}: {m['schedule']}, "
        + (f"{m['max_per_class']} films per class" if m["max_per_class"] else "all training films")
        + f" ({m['n_films']['train']} training, {m['n_films']['val']} validation films)"
        for m in models
    )
    return "\n".join(rows) + f"\n\nModels: {trained}. " + _source("guard-parts")


def recipe_epochs() -> str:
    """Where a cut recipe's training time goes: preparation and guard, each epoch's seconds and CPU utilisation."""
    record = load("recipe-epochs")
    f = record["figures"]
    rows = [
        "| recipe | focus | epoch | seconds | CPU utilisation (of 2 cores) | training films per epoch second | "
        "outside the epochs (preparing, guard) |",
        "|---|---|---|---|---|---|---|",
    ]
    for found in f["recipes"]:
        for i, epoch in enumerate(found["epochs"]):
            guard = (found.get("timings") or {}).get("guard_fit_s")
            outside = f"{found['outside_epochs_s']:.0f} s of {found['wall_s']:.0f} s" if i == 0 else ""
            outside += f" (the guard's fit {guard:.0f} s)" if i == 0 and guard is not None else ""
            rows.append(
                f"| {found['recipe'] if i == 0 else ''} | {found['focus'] if i == 0 else ''} | "
                f"{epoch['image_size']} px | {epoch['seconds']:.0f} | {epoch['cpu_utilisation']:.0%} | "
                f"{epoch['train_films_per_epoch_s']:.2f} | {outside} |"
            )
    first = f["recipes"][0]
    return (
        "\n".join(rows)
        + f"\n\n{f['max_per_class']} films per class ({first['n_train']} training, {first['n_val']} validation films, "
        f"validated every epoch), schedule {f['schedule']}, seed 0, one process. " + _source("recipe-epochs")
    )


def recipe_projection() -> str:
    """Each recipe's whole schedule on every film, projected from the cut run's rates: minutes per part, one row per
    recipe (training at each size; validating, the guard's fit, preparing and writing together as the rest)."""
    f = load("recipe-epochs")["figures"]
    projected = {found["recipe"]: found["projected_whole_recipe"] for found in f["recipes"]}
    sizes = sorted(set(next(iter(projected.values()))["schedule"]))
    rows = [
        "| recipe | "
        + " | ".join(f"training at {size} px" for size in sizes)
        + " | validating | the guard's fit, preparing | in all |",
        "|---|" + "---|" * (len(sizes) + 3),
    ]
    for name, found in projected.items():
        minutes = found["minutes"]
        training = [sum(m for part, m in minutes.items() if part.startswith("training") and f" {size} px" in part)
                    for size in sizes]  # fmt: skip
        validating = sum(m for part, m in minutes.items() if part.startswith("validating"))
        rest = found["total_min"] - sum(training) - validating
        cells = [*training, validating, rest]
        rows.append(
            f"| `{name}` | " + " | ".join(f"{m:.0f} min" for m in cells) + f" | **{found['total_min']:.0f} min** |"
        )
    first = next(iter(projected.values()))
    machine = load("recipe-epochs")["machine"]
    return (
        "\n".join(rows)
        + f"\n\nProjected, not timed: the cut run's seconds per film at each size ({f['max_per_class']} "
        f"films per class, schedule {f['schedule']}) times the whole recipe's films ({first['n_train']} training, "
        f"{first['n_val']} validation once {first['holdout_fraction']:.0%} of the patients are held out) and epochs; "
        f"{machine['cores']} cores, {', '.join(machine['cpu_flags']) or 'no vector flags'}, fp32. "
        + _source("recipe-epochs")
    )


def compile_speed() -> str:
    """torch.compile against eager for the training step and Grad-CAM, and after how many films compiling repays."""
    f = load("compile")["figures"]
    rows = [
        "| pass | eager images/s | compiled images/s | compiled / eager | compiling, once | repaid after |",
        "|---|---|---|---|---|---|",
    ]
    for name, key in (("training step", "train"), ("Grad-CAM", "gradcam")):
        eager, compiled = f[f"{key}_images_per_s"]["eager"], f[f"{key}_images_per_s"]["compiled"]
        compile_s = f[f"compile_{key}_s"]
        saved_per_film = 1 / eager - 1 / compiled
        repaid = f"{compile_s / saved_per_film:,.0f} films" if saved_per_film > 0 else "never"
        rows.append(
            f"| {name} | {eager:.1f} | {compiled:.1f} | {compiled / eager:.2f}x | {compile_s:.0f} s | {repaid} |"
        )
    return (
        "\n".join(rows) + f"\n\n{f['size']} px, batch {f['batch']}, {f['threads']} threads, interleaved, after "
        "warm-up; repaid after: compiling's seconds over the seconds it saves per film. " + _source("compile")
    )


def populations_mixed() -> str:
    """A model trained on Kermany and NIH training patients, on its own held-out patients of each population."""
    record = load("populations-mixed")
    f = record["figures"]
    rows = [
        "| held-out patients of | films (NORMAL / PNEUMONIA) | ROC-AUC | sens / spec at its threshold | ECE | guard |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in f["heldout_by_population"].items():
        rows.append(
            f"| {name} | {row['n']} ({row['n_normal']} / {row['n_pneumonia']}) | {row['roc_auc']:.3f} | "
            f"{_pair_at(row['at']['recorded'])} | {row['ece']:.3f} | {row['share_flagged']:.1%} |"
        )
    views = "; ".join(
        f"{name} {view} {row['roc_auc']:.3f} (n {row['n']})" if row["roc_auc"] is not None else f"{name} {view} n/a"
        for name, by_view in f["heldout_by_view"].items()
        for view, row in by_view.items()
    )
    return (
        "\n".join(rows)
        + f"\n\nModel: recipe {f['recipe']}, schedule {f['schedule']}, {f['image_size']} px, trained on "
        f"{f['trained_on']}; threshold {f['threshold_recorded']:.3f} ({f['threshold_chosen']}). ROC-AUC by view: "
        f"{views}. " + _source("populations-mixed")
    )


def reliance_controls() -> str:
    """The controlled reliance check and each method's agreement with the intervention, per model (map_agreement.py)."""
    names = [n for n in ("map-agreement-scratch", "map-agreement-recommended") if _present(n)]
    labels = {
        "lungs_removed_fill": "lungs removed (grey)",
        "control_removed_fill": "control region removed",
        "lungs_removed_impute": "lungs removed (ROAD imputation)",
        "only_lungs_fill": "only the lungs kept",
    }
    rows = [
        "| model | films | " + " | ".join(labels.values()) + " | verdict |",
        "|---|---|" + "---|" * (len(labels) + 1),
    ]
    methods: list[str] = []
    for name in names:
        f = load(name)["figures"]
        kept = f["reliance"]["share_of_ranking_kept"]
        cells = " | ".join("n/a" if kept.get(k) is None else f"{kept[k]:.0%}" for k in labels)
        rows.append(f"| {name.removeprefix('map-agreement-')} | {f['films']} | {cells} | {f['reliance']['verdict']} |")
        methods += [m for m in f["methods"] if m not in methods]
    agreement = ["| method | " + " | ".join(n.removeprefix("map-agreement-") for n in names) + " |"]
    agreement.append("|---|" + "---|" * len(names))
    for method in methods:
        cells = []
        for name in names:
            found = load(name)["figures"]["methods"].get(method) or {}
            rho = found.get("spearman")
            cells.append("n/a" if rho is None else f"{rho:+.2f}" + (" (tracks)" if found.get("tracks") else ""))
        agreement.append(f"| {method} | " + " | ".join(cells) + " |")
    return (
        "Share of the whole film's ranking above chance kept (ROC-AUC - 0.5, relative):\n\n"
        + "\n".join(rows)
        + "\n\nSpearman rho, per film, of each map's lung share and the probability drop with the lungs removed:\n\n"
        + "\n".join(agreement)
        + "\n\n"
        + _source(*names)
    )


def seed_repeatability() -> str:
    f = load("seed-repeatability")["figures"]
    rows = [
        "| method | Spearman between seeds | SSIM between seeds | Spearman, head randomised | SSIM, head randomised |"
    ]
    rows.append("|---|---|---|---|---|")
    for method, found in f["methods"].items():
        a, b = found["between_seeds"], found["head_randomised"]
        rows.append(
            f"| {method} | {fmt_or_na(a['spearman_mean'])} | {fmt_or_na(a['ssim_mean'])} | "
            f"{fmt_or_na(b['spearman_mean'])} | {fmt_or_na(b['ssim_mean'])} |"
        )
    return (
        "\n".join(rows)
        + f"\n\nSeeds {f['seeds']}; {f['films']} held-out films, class-balanced. "
        + _source("seed-repeatability")
    )


def fmt_or_na(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def mutation() -> str:
    record = load("mutmut")
    f = record["figures"]
    statuses = ("killed", "survived", "no tests", "timeout", "not checked")
    rows = ["| module | " + " | ".join(statuses) + " | survivors, timeouts run again included: marked equivalent |"]
    rows.append("|---|" + "---|" * (len(statuses) + 1))
    for module, counts in f["per_module"].items():
        marked = sum(1 for name in f["equivalent"] if name.split(".x")[0] == module)
        survivors = sum(1 for name in f["survivors"] if name.split(".x")[0] == module)
        rows.append(
            f"| {module} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + f" | {marked} of {survivors} |"
        )
    reruns = Counter(f.get("timeouts_rerun", {}).values())
    rerun = (
        f"Of the timeouts (and 'no tests'), {sum(reruns.values())} run again under a wall limit instead of mutmut's: "
        + ", ".join(f"{n} {verdict}" for verdict, n in sorted(reruns.items()))
        + " (the table keeps mutmut's timeout; a survivor among them is also listed with the survivors). "
        if reruns
        else ""
    )
    carried = f.get("carried_modules") or {}
    by_commit: dict[str, list[str]] = {}
    for module, commit in sorted(carried.items()):
        by_commit.setdefault(commit[:7], []).append(module.rsplit(".", 1)[1])
    kept = (
        "Counts kept from the record of an earlier run (this run's mutmut state did not run them; their source and "
        "tests have not changed since): "
        + "; ".join(f"{', '.join(modules)} from commit {commit}" for commit, modules in by_commit.items())
        + ". "
        if carried
        else ""
    )
    return (
        "\n".join(rows) + f"\n\n{len(f['survivors'])} survivors listed by name in the record; "
        f"{len(f['equivalent'])} marked equivalent, each with its reason; {len(f['unexplained_survivors'])} not "
        "explained. " + rerun + kept + _source("mutmut")
    )


TABLES = {
    "mutmut": mutation,
    "populations": populations,
    "guard-parts": guard_parts,
    "recipe-epochs": recipe_epochs,
    "recipe-projection": recipe_projection,
    "compile": compile_speed,
    "populations-mixed": populations_mixed,
    "reliance-controls": reliance_controls,
    "seed-repeatability": seed_repeatability,
    "foreign-audit": foreign_audit,
    "shortcut-baseline": shortcut_baseline,
    "startup": startup,
    "guard-depths": guard_depths,
    "levers": levers,
    "longer-phase": longer_phase,
    "precision-speed": precision_speed,
    "precision-maps": precision_maps,
    "precision-seeds": precision_seeds,
    "scratch-runs": scratch_runs,
    "serve-abuse": serve_abuse,
    "gpu-recipes": gpu_recipes,
    "gpu-focused": gpu_focused,
    "gpu-check": gpu_check,
    "performance": performance,
    "reliance": reliance,
}


def render(text: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"a document names an unknown record table '{name}': one of {', '.join(TABLES)}")
        return match.group(1) + TABLES[name]().rstrip() + "\n" + match.group(4)

    return BLOCK.sub(replace, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for document in DOCUMENTS:
        text = document.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(document.relative_to(ROOT))
            if not args.check:
                document.write_text(rendered)
    if args.check and stale:
        names = ", ".join(map(str, stale))
        print(f"record tables in {names} differ from benchmarks/results: run python benchmarks/readme_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
