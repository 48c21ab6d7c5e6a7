"""The report's section on where the films come from: metrics per population and per recorded stratum (view, sex,
age band), from results.json's "populations" (evaluation.populations via evaluate.population_records)."""

from __future__ import annotations

from pneumocam.report.document import Banner, Section, Table
from pneumocam.report.text import decided_at, fmt, headline_threshold

# An AUC this far below the whole split's in one group is a warning a reader must see (a stratum or a population
# the model does not rank well, or a confounder it reads instead of pneumonia).
AUC_GAP_WARNING = 0.1


def populations_section(results: dict, figures: dict | None = None) -> Section | None:
    groups = results.get("populations") or {}
    by_population, by_stratum = groups.get("by_population"), groups.get("by_stratum")
    if not by_population and not by_stratum:
        return None
    key = headline_threshold(results)
    overall = results["metrics"][key].get("roc_auc")
    sec = Section("Per population and stratum")
    sec.add(
        f"The same model and the same decision threshold {decided_at(results)} on each group of the evaluated films: "
        "a ranking can hold on a population while its threshold does not (sensitivity and specificity move), and an "
        "AUC that holds on the whole split but not within a view means the model reads the view."
    )
    tables = [("population", by_population)] if by_population else []
    tables += [(name, values) for name, values in sorted((by_stratum or {}).items())]
    low = []
    for name, values in tables:
        rows = []
        for value, m in values.items():
            at = m["at"].get(key, {})
            rows.append(
                [
                    value,
                    f"{m['n_normal']} / {m['n_pneumonia']}",
                    fmt(m["roc_auc"]),
                    fmt(at.get("sensitivity")),
                    fmt(at.get("specificity")),
                    fmt(m.get("ece")),
                    "n/a" if m.get("share_flagged") is None else f"{m['share_flagged']:.0%}",
                ]
            )
            if overall is not None and m["roc_auc"] is not None and m["roc_auc"] < overall - AUC_GAP_WARNING:
                low.append(f"{name} {value} (ROC-AUC {m['roc_auc']:.3f})")
        headers = [name, "NORMAL / PNEUMONIA", "ROC-AUC", "sensitivity", "specificity", "ECE", "guard flagged"]
        sec.add(Table(headers, rows, f"decisions at {key}"))
    relied = (results.get("reliance") or {}).get("by_population")
    if relied:
        rows = [
            [
                name,
                str(r["n_images"]),
                *(fmt((r.get("roc_auc") or {}).get(k)) for k in ("whole", "lungs_removed_fill", "only_lungs_fill")),
                r["verdict"],
            ]
            for name, r in relied.items()
        ]
        headers = ["population", "films", "ROC-AUC whole", "lungs removed", "only the lungs", "verdict"]
        sec.add(Table(headers, rows, "the reliance check per population (no intervals; the whole split's has them)"))
    if low:
        sec.add(
            Banner(
                f"ROC-AUC more than {AUC_GAP_WARNING} below the whole split's ({overall:.3f}) in: {'; '.join(low)}.",
                "warning",
            )
        )
    return sec
