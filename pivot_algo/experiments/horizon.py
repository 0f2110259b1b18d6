"""Claim 3 as a function of the horizon: how the cost of E2E-RL relative to PivotRL grows with the number
of turns per task (issue "The paper's claims, decided": a 4x saving in model calls cannot exist on
3-turn episodes; the paper's setting is tens of turns).

Each horizon H is its own grid run (`pivotrl table --preset P --horizon H --methods base,pivotrl,e2e_grpo`,
results in <out>/<P>-h<H>/). This module reads those results, nothing else:

    pivotrl table --preset full --horizon-summary     # -> <out>/full-horizon/horizon.md, horizon.png

Per H it takes the matched-accuracy comparison the table already made (report.efficiency: per seed, the
model calls each method spent to first reach the highest in-domain validation accuracy both reach,
PivotRL's profiling included; the ratio E2E / PivotRL summarised by a t-interval over seeds of its
logarithm; a seed where one method never left its start enters as a bound, "censored", see
report.efficiency) and the methods' held-out in-domain success. The crossover is the smallest H whose ratio
interval lies above 1 (E2E-RL needs more model calls than PivotRL for the same accuracy); "none" when no
horizon's interval does. Only seeds whose base meets the premises at that H count; `pivotrl table ...
--skip-excluded` runs no method from the others (their base is judged before any method trains).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pivot_algo.experiments.report import percent_ci, ratio_text
from pivot_algo.experiments.stats import wilson

RATIO_KEYS = ("calls_ratio", "wall_ratio")
SWEEP_METHODS = ("base", "pivotrl", "e2e_grpo")
"""What each horizon run trains (its own name: `presets.METHODS` is every method of the grid)."""


def horizon_folders(out_root: Path, preset_name: str) -> dict[int, Path]:
    """H -> the folder of a finished horizon run of `preset_name` (one with a results.json)."""
    found = {}
    for path in sorted(out_root.glob(f"{preset_name}-h*")):
        suffix = path.name[len(preset_name) + 2:]
        if suffix.isdigit() and (path / "results.json").is_file():
            found[int(suffix)] = path
    return found


def summarise_horizons(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Rows per horizon (ratios with intervals, usable seeds, held-out in-domain means) and the crossover."""
    rows = []
    for h in sorted(results):
        summary = results[h]["summary"]
        # A run where no seed's base met the premises summarised them all "and tests nothing": it counts
        # no seed here either (a run with --skip-excluded writes no results then).
        untestable = bool(summary.get("premises_failed_everywhere"))
        eff = {} if untestable else summary.get("efficiency") or {}
        row: dict[str, Any] = {"horizon": h, "seeds": len(results[h]["config"]["seeds"]),
                               "usable_seeds": eff.get("usable_seeds", 0), "no_base_meets_premises": untestable}
        for key in RATIO_KEYS:
            row[key] = eff.get(key)
        row["in_domain"] = {m: {k: r["in_domain"][k] for k in ("mean", "lo", "hi")}
                            for m, r in summary["methods"].items()}
        row["per_seed"] = seed_rows(results[h])
        rows.append(row)
    crossover = next((r["horizon"] for r in rows
                      if r["calls_ratio"] and math.isfinite(r["calls_ratio"]["lo"]) and r["calls_ratio"]["lo"] > 1), None)
    return {"rows": rows, "crossover": crossover}


def seed_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per seed of a horizon run: each method's held-out in-domain success and whole-run model
    calls (None where the method did not run: `--skip-excluded` trains nothing from a base outside the
    premises), why the seed does not count (its base's premise failures, or no matched accuracy), and its
    calls to matched accuracy from report.efficiency (a bound when censored)."""
    cells = {(c["seed"], c["method"]): c for c in result.get("cells", [])}
    excluded = {e["seed"]: e["why"] for e in result["summary"].get("excluded_seeds", [])}
    matched = {r["seed"]: r for r in (result["summary"].get("efficiency") or {}).get("per_seed", [])}
    rows = []
    for seed in result["config"]["seeds"]:
        row: dict[str, Any] = {"seed": seed, "excluded": excluded.get(seed)}
        for m in SWEEP_METHODS:
            cell = cells.get((seed, m))
            row[m] = _success_with_interval(cell["eval"]["in_domain"]) if cell else None
            row[f"{m}_run_calls"] = cell["costs"]["rollout_turns"] if cell else None
        eff = matched.get(seed)
        if row["excluded"] is None and eff is not None and eff["usable"]:
            row.update(target=eff["target"], censored=eff.get("censored"), calls_ratio=eff["calls_ratio"],
                       pivotrl_calls=eff["pivotrl_calls"], e2e_grpo_calls=eff["e2e_grpo_calls"])
        rows.append(row)
    return rows


def _success_with_interval(suite: dict[str, Any]) -> dict[str, float]:
    """One seed's held-out success with its 95% Wilson interval over the suite's tasks."""
    lo, hi = wilson(int(sum(suite["per_task"])), len(suite["per_task"]))
    return {"mean": suite["success"], "lo": lo, "hi": hi, "n_tasks": len(suite["per_task"])}


def _seed_markdown(h: int, r: dict[str, Any]) -> str:
    acc = " | ".join(percent_ci(r[m]) for m in SWEEP_METHODS)
    run = " / ".join("-" if r[f"{m}_run_calls"] is None else f"{r[f'{m}_run_calls']:.0f}" for m in SWEEP_METHODS[1:])
    if r["excluded"]:
        counted = "no: base " + "; ".join(r["excluded"])
        matched = "-"
    elif "calls_ratio" in r:
        bound = {"at least": ">= ", "at most": "<= "}.get(r["censored"] or "", "")
        counted = "yes" + (f" (censored: {r['censored']})" if r["censored"] else "")
        matched = (f"{r['target'] * 100:.1f}%: {r['pivotrl_calls']:.0f} / {r['e2e_grpo_calls']:.0f} = "
                   f"{bound}{r['calls_ratio']:.2f}")
    else:
        counted, matched = "no: neither method rose above its start", "-"
    return f"| {h} | {r['seed']} | {acc} | {run} | {matched} | {counted} |"


def _ratio(d: dict[str, Any] | None, untestable: bool = False) -> str:
    if untestable:
        return "- (no seed's base meets the premises)"
    return ratio_text(d) if d else "- (no seed where a method rose above its start)"


def markdown(sweep: dict[str, Any]) -> str:
    head = ("| H (operations per task) | seeds (usable) | E2E / PivotRL model calls to matched accuracy [95% CI] "
            "| E2E / PivotRL wall time | held-out in-domain % [95% CI over usable seeds and tasks]: base / PivotRL / E2E-RL |")
    lines = [head, "|---|---|---|---|---|"]
    for r in sweep["rows"]:
        acc = " / ".join(percent_ci(r["in_domain"][m]) if m in r["in_domain"] else "-"
                         for m in SWEEP_METHODS)
        untestable = r.get("no_base_meets_premises", False)
        lines.append(f"| {r['horizon']} | {r['seeds']} ({r['usable_seeds']}) | {_ratio(r['calls_ratio'], untestable)} "
                     f"| {_ratio(r['wall_ratio'], untestable)} | {acc} |")
    cross = sweep["crossover"]
    lines += ["", "crossover (smallest H whose calls-ratio interval lies above 1): "
              + (f"H = {cross}" if cross is not None
                 else "none among H = " + ", ".join(str(r["horizon"]) for r in sweep["rows"]))]
    lines += ["", ("Per seed (held-out in-domain success of greedy whole episodes with its 95% Wilson interval over "
                   "the tasks; whole-run model calls, PivotRL's profiling included; calls to the matched validation "
                   "accuracy, PivotRL / E2E-RL = ratio):"), "",
              ("| H | seed | base % | PivotRL % | E2E-RL % | whole-run calls PivotRL / E2E-RL "
               "| matched accuracy: calls PivotRL / E2E-RL = ratio | counted |"),
              "|---|---|---|---|---|---|---|---|"]
    lines += [_seed_markdown(r["horizon"], s) for r in sweep["rows"] for s in r.get("per_seed", [])]
    return "\n".join(lines) + "\n"


def plot(sweep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, colour in (("calls_ratio", "model calls", "C0"), ("wall_ratio", "wall time", "C1")):
        pts = [(r["horizon"], r[key]) for r in sweep["rows"] if r[key]]
        if not pts:
            continue
        xs = [h for h, _ in pts]
        means = [d["mean"] for _, d in pts]
        los = [d["mean"] - (d["lo"] if math.isfinite(d["lo"]) else d["mean"]) for _, d in pts]
        his = [(d["hi"] if math.isfinite(d["hi"]) else d["mean"]) - d["mean"] for _, d in pts]
        ax.errorbar(xs, means, yerr=[los, his], fmt="o-", capsize=3, color=colour, label=f"E2E / PivotRL, {label}")
    ax.axhline(1, color="grey", lw=0.5)
    ax.axhline(4, color="grey", lw=0.5, ls="--", label="the paper's 4x")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("operations per in-domain task (H)")
    ax.set_ylabel("cost ratio to matched accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(out_root: Path, preset_name: str) -> dict[str, Any]:
    """Read every finished <preset>-h<H> run under `out_root`, write <preset>-horizon/{horizon.md,
    horizon.png, horizon.json}, return the sweep. Raises FileNotFoundError when no horizon run is finished."""
    folders = horizon_folders(out_root, preset_name)
    if not folders:
        raise FileNotFoundError(f"no finished horizon run under {out_root} (folders {preset_name}-h<H> with a "
                                f"results.json): run `pivotrl table --preset {preset_name} --horizon H` first")
    sweep = summarise_horizons({h: json.loads((p / "results.json").read_text()) for h, p in folders.items()})
    out = out_root / f"{preset_name}-horizon"
    out.mkdir(parents=True, exist_ok=True)
    (out / "horizon.json").write_text(json.dumps(sweep, indent=1))
    text = markdown(sweep)
    (out / "horizon.md").write_text(text)
    plot(sweep, out / "horizon.png")
    print(text, flush=True)
    return sweep
