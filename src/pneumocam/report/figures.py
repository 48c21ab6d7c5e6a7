"""The report's figures (matplotlib, Agg). Each function draws one PNG from plain arrays or results.json entries."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import io

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve

from pneumocam import CLASS_NAMES
from pneumocam.analysis.stats import format_number, format_p
from pneumocam.core.outputs import atomic_write_bytes
from pneumocam.core.schema import REGIONS
from pneumocam.evaluation.calibration import expected_calibration_error, reliability_bins

# ----------------------------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> Path:

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def heatmap_grid(
    path: Path,
    images: np.ndarray,
    maps: np.ndarray,
    labels,
    preds,
    probs,
    names: list[str],
    contours: np.ndarray | None = None,
) -> Path:
    """Each example twice: the film, then the Grad-CAM overlay; titled with truth, prediction, probability."""
    n = len(images)
    cols = 4
    rows = int(np.ceil(n / (cols // 2)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.9))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols // 2)
        title = f"true {CLASS_NAMES[labels[i]]}\npred {CLASS_NAMES[preds[i]]}, p(PNEU)={probs[i]:.2f}"
        axes[r, 2 * c].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[r, 2 * c].set_title(f"{names[i][:24]}", fontsize=7)
        axes[r, 2 * c + 1].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[r, 2 * c + 1].imshow(maps[i], cmap="jet", alpha=0.45, vmin=0, vmax=max(float(maps[i].max()), 1e-12))
        if contours is not None and contours[i].any():
            axes[r, 2 * c + 1].contour(contours[i], levels=[0.5], colors="white", linewidths=0.8)
        axes[r, 2 * c + 1].set_title(title, fontsize=7, color="darkred" if labels[i] != preds[i] else "black")
    fig.suptitle("Films and Grad-CAM overlays (each map scaled to its own maximum for display)", fontsize=9)
    return _save(fig, path)


def score_comparison(path: Path, normal: np.ndarray, pneumonia: np.ndarray, score: str, result: dict) -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    ax.boxplot([normal, pneumonia], tick_labels=list(CLASS_NAMES), widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)
    for i, values in enumerate((normal, pneumonia), start=1):
        ax.scatter(i + jitter.uniform(-0.12, 0.12, len(values)), values, s=8, alpha=0.6)
    ax.set_ylabel(score)
    ax.set_title(
        f"{score}: Welch p = {format_p(result['welch']['p'])}\nCohen's d = {format_number(result['cohens_d'], '.2f')} "
        f"({result['effect_size_label']}), "
        f"n = {result['groups']['NORMAL']['n']} + {result['groups']['PNEUMONIA']['n']}",
        fontsize=8,
    )
    return _save(fig, path)


def roc_figure(path: Path, labels: np.ndarray, probs: np.ndarray, auc: float | None, ci) -> Path:

    fig, ax = plt.subplots(figsize=(4, 4))
    if auc is not None:
        fpr, tpr, _ = roc_curve(labels, probs)
        ax.plot(fpr, tpr, lw=2, label=f"AUC {auc:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="chance")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("ROC curve", fontsize=9)
    return _save(fig, path)


def confusion_figure(path: Path, matrix, threshold: float) -> Path:
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks([0, 1], [f"pred {n}" for n in CLASS_NAMES], fontsize=7)
    ax.set_yticks([0, 1], [f"true {n}" for n in CLASS_NAMES], fontsize=7)
    ax.set_title(f"Confusion matrix, threshold {threshold:.3f}", fontsize=9)
    return _save(fig, path)


def p_histogram(path: Path, p_values, alpha: float, score: str, n_per_class: int) -> Path:
    """p over the resampled draws; a draw whose test is undefined (both groups constant: p saved as null) is left out
    of the histogram and counted in the title."""
    defined, title = p_histogram_title(p_values, alpha, score, n_per_class)
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.hist(defined, bins=np.linspace(0, 1, 41), color="steelblue")
    ax.axvline(alpha, color="red", ls="--", label=f"alpha = {alpha}")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("Student's t-test p")
    ax.legend(fontsize=7)
    return _save(fig, path)


def p_histogram_title(p_values, alpha: float, score: str, n_per_class: int) -> tuple[np.ndarray, str]:
    """(the draws' defined p values, the histogram's title counting the draws without one)."""
    values = np.array([np.nan if p is None else p for p in p_values], dtype=float)
    defined = values[np.isfinite(values)]
    share = float(np.mean(defined < alpha)) if len(defined) else float("nan")
    missing = len(values) - len(defined)
    undefined = f"; {missing} draws without a p (constant scores)" if missing else ""
    return defined, (
        f"{score}: p over {len(values)} random {n_per_class} vs {n_per_class} draws{undefined}\n"
        f"{share:.0%} of the draws with a p have p < {alpha}"
    )


def training_curves(path: Path, history: list[dict]) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 2.8))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    a.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    a.legend(fontsize=7)
    b.plot(epochs, [h["val_auc"] for h in history], label="val AUC", color="green")
    b.plot(epochs, [h["val_acc"] for h in history], label="val accuracy", color="orange")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.set_xlabel("epoch")
    return _save(fig, path)


def region_bars(path: Path, shares: dict, areas: dict) -> Path:

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    colours = ["#2e7d32", "#f9a825", "#90a4ae", "#c62828"]
    for row, cls in enumerate(CLASS_NAMES):
        left_mass = left_area = 0.0
        for r, colour in zip(REGIONS, colours):
            ax.barh(
                row + 0.18, shares[cls][r], left=left_mass, color=colour, height=0.34, label=r if row == 0 else None
            )
            ax.barh(row - 0.18, areas[cls][r], left=left_area, color=colour, height=0.34, hatch="//", alpha=0.5)
            left_mass += shares[cls][r]
            left_area += areas[cls][r]
    ax.set_yticks([0, 1], [f"{c}\n(mass | area)" for c in CLASS_NAMES], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return _save(fig, path)


def trust_figure(path: Path, trust: dict) -> Path:
    rand, faith = trust["randomisation"], trust["faithfulness"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    stages = ["trained"] + [r["randomised_up_to"] for r in rand["cascade"]]
    a.plot(
        stages,
        [1.0] + [np.nan if r["spearman_mean"] is None else r["spearman_mean"] for r in rand["cascade"]],
        marker="o",
        label="Spearman",
    )
    a.plot(stages, [1.0] + [r["ssim_mean"] for r in rand["cascade"]], marker="s", label="SSIM")
    a.set_ylim(-0.2, 1.05)
    a.set_title("similarity to the trained model's maps", fontsize=8)
    a.tick_params(axis="x", labelrotation=45, labelsize=7)
    a.legend(fontsize=7)
    x = faith["fractions"]
    for name, style in (("maps", "-"), ("random", "--")):
        b.plot(x, faith[name]["deletion_curve"], style, color="red", label=f"deletion, {name}")
        b.plot(x, faith[name]["insertion_curve"], style, color="green", label=f"insertion, {name}")
    b.set_xlabel("share of pixels removed / inserted")
    b.set_ylabel("p(target class)")
    b.legend(fontsize=6)
    return _save(fig, path)


def reliability_figure(path: Path, labels, probs_before, probs_after) -> Path:
    """Top-label reliability diagram (15 bins): accuracy against confidence, before and after calibration."""

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0.5, 1], [0.5, 1], ls="--", color="grey", label="perfect")
    for probs, name, style in ((probs_before, "before", "o-"), (probs_after, "after", "s-")):
        bins = [b for b in reliability_bins(labels, probs) if b["count"]]
        ece = expected_calibration_error(labels, probs)
        ax.plot(
            [b["confidence"] for b in bins], [b["accuracy"] for b in bins], style, ms=4, label=f"{name} (ECE {ece:.3f})"
        )
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.set_title("Reliability", fontsize=9)
    return _save(fig, path)


def ood_grid(path: Path, images: np.ndarray, names: list[str], reasons: list[str], scores: np.ndarray) -> Path:
    """The films the domain-shift guard found least like the training films, with its reason."""
    cols = min(4, len(images))
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes[divmod(i, cols)]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        reason = reasons[i] if reasons[i] else "passed"
        ax.set_title(f"{names[i][:22]}\n{reason[:38]}\ndistance {scores[i]:.1f}", fontsize=6.5)
    fig.suptitle("Least like the training films (domain-shift guard)", fontsize=9)
    return _save(fig, path)
