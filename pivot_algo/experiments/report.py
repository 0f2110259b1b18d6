"""What a finished grid says: paired statistics per method, the claims' inputs (matched accuracy), the
markdown table, the plots, and the learning-rate choice on dev."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pivot_algo.experiments import curves, verdicts
from pivot_algo.experiments.presets import LABELS, METHODS, SUITES, GridPreset
from pivot_algo.experiments.stats import (
    bootstrap_two_level,
    paired_over_seeds,
    t_interval,
)

# ----------------------------------------------------------------------------- statistics

def success_matrix(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], method: str, suite: str) -> np.ndarray:
    """[seeds, tasks] held-out success of `method` on `suite`; "ood" pools group A and tool use."""
    if suite == "ood":
        return np.concatenate([success_matrix(cells, seeds, method, "ood_group_a"),
                               success_matrix(cells, seeds, method, "ood_tool")], axis=1)
    rows = [[0.0 if v is None else float(v) for v in cells[(s, method)]["eval"][suite]["per_task"]] for s in seeds]
    return np.array(rows, dtype=float)


def _interval(mat: np.ndarray) -> dict[str, Any]:
    mean, lo, hi = bootstrap_two_level(mat)
    return {"mean": mean, "lo": lo, "hi": hi, "per_seed": mat.mean(axis=1).tolist()}


def _matched_curves(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], a: str, b: str
                    ) -> Iterator[tuple[dict[str, Any], list[dict], list[dict]]]:
    """Per seed where both methods have a validation curve: (a row naming the seed and the matched
    accuracy, a's curve, b's curve). The matched accuracy ("target") is the highest in-domain accuracy
    both reach; the row is not "usable" when it is not above both start points (neither learned)."""
    key = curves.IN_DOMAIN
    for s in seeds:
        ca, cb = cells[(s, a)].get("curve") or [], cells[(s, b)].get("curve") or []
        if ca and cb:
            target = min(max(p[key] for p in ca), max(p[key] for p in cb))
            yield {"seed": s, "target": target, "usable": target > max(ca[0][key], cb[0][key]) + 1e-9}, ca, cb


def efficiency(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], a: str = "pivotrl",
               b: str = "e2e_grpo") -> dict[str, Any]:
    """Claim 3 at matched accuracy, per seed from the validation curves: the target is the highest
    in-domain accuracy both reach (the smaller of the two curves' maxima), the cost is the model calls
    (PivotRL's profiling included) and the wall seconds at each curve's first point at the target. The
    ratio b/a is summarised by a t-interval over seeds of its logarithm.

    A seed where neither method rose above its start has no matched accuracy and is left out. A seed where
    exactly one rose is **censored** (rule written 2026-12-06 before the horizon sweep's seeds 3-9 ran: at
    H = 16 E2E-RL made no update on two of three seeds while PivotRL learned, and "no matched accuracy" hid
    that): the target is the accuracy the learning method reached (its curve's maximum); the method that
    never left its start would need more than its whole run to reach it, so the ratio is a bound, "at
    least" b's whole run / a's cost to the target when b stalled, "at most" b's cost / a's whole run when a
    stalled. A censored ratio enters the t-interval at its bound: that understates how far it lies from 1,
    and the interval over a mix of values and bounds is approximate (the table counts the censored seeds)."""
    per_seed = []
    key = curves.IN_DOMAIN
    for row, ca, cb in _matched_curves(cells, seeds, a, b):
        per_seed.append(row)
        rose = {m: max(p[key] for p in c) > c[0][key] + 1e-9 for m, c in ((a, ca), (b, cb))}
        if not row["usable"] and rose[a] != rose[b]:
            row.update(usable=True, censored="at least" if rose[a] else "at most",
                       target=max(p[key] for p in (ca if rose[a] else cb)))
        if not row["usable"]:
            continue
        target = row["target"]
        prof = cells[(row["seed"], a)].get("profile_costs") or {}
        for what, cost, offset in (("calls", "costs/rollout_turns", prof.get("rollout_turns", 0.0)),
                                   ("wall", "costs/wall_seconds", prof.get("wall_seconds", 0.0))):
            # A method that never reaches the target is charged its whole run (the censoring bound).
            row[f"{a}_{what}"] = min(curves.calls_to_reach(ca, target, cost=cost, offset=offset),
                                     ca[-1].get(cost, 0.0) + offset)
            row[f"{a}_{what}_no_profiling"] = min(curves.calls_to_reach(ca, target, cost=cost), ca[-1].get(cost, 0.0))
            row[f"{b}_{what}"] = min(curves.calls_to_reach(cb, target, cost=cost), cb[-1].get(cost, 0.0))
            row[f"{what}_ratio"] = row[f"{b}_{what}"] / max(row[f"{a}_{what}"], 1e-9)
    out: dict[str, Any] = {"per_seed": per_seed, "usable_seeds": sum(r["usable"] for r in per_seed)}
    for what in ("calls", "wall"):
        used = [r for r in per_seed if r["usable"] and 0 < r[f"{what}_ratio"] < math.inf]
        if used:
            m, lo, hi = t_interval([math.log(r[f"{what}_ratio"]) for r in used])
            out[f"{what}_ratio"] = {"mean": math.exp(m), "lo": math.exp(lo) if math.isfinite(lo) else math.nan,
                                    "hi": math.exp(hi) if math.isfinite(hi) else math.nan, "n_seeds": len(used),
                                    "n_censored": sum(bool(r.get("censored")) for r in used)}
    out["ratio"] = out.get("calls_ratio")
    return out


OOD_KEYS = ("eval/ood_group_a", "eval/ood_tool")


def ood_at_matched_accuracy(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], a: str = "pivotrl",
                            b: str = "sft") -> dict[str, Any]:
    """Claim 2 the way "RL's Razor" compares forgetting: OOD retention at matched in-domain accuracy, per
    seed from the validation curves. The target is the highest in-domain accuracy both reach; each
    method's OOD (mean of the OOD validation suites) at its first point at the target, minus the start
    point's. A seed where the target is not above both start points is left out. The difference a - b
    is summarised by a t-interval over seeds."""
    per_seed = []
    for row, ca, cb in _matched_curves(cells, seeds, a, b):
        per_seed.append(row)
        if not row["usable"]:
            continue
        for method, c in ((a, ca), (b, cb)):
            at = [curves.calls_to_reach(c, row["target"], cost=k) for k in OOD_KEYS]
            row[f"{method}_ood_change"] = float(np.mean(at)) - float(np.mean([c[0].get(k, 0.0) for k in OOD_KEYS]))
        row["difference"] = row[f"{a}_ood_change"] - row[f"{b}_ood_change"]
    diffs = [r["difference"] for r in per_seed if r["usable"]]
    out: dict[str, Any] = {"per_seed": per_seed, "usable_seeds": len(diffs)}
    if diffs:
        mean, lo, hi = t_interval(diffs)
        sign = "above 0" if lo > 0 else "below 0" if hi < 0 else "includes 0"  # nan bounds (1 seed): includes
        out["difference"] = {"mean": mean, "lo": lo, "hi": hi, "n_seeds": len(diffs), "sign": sign,
                             "sign_from": "t over seeds"}
    return out


def summarise(preset: GridPreset, cells: dict[tuple[int, str], dict]) -> dict[str, Any]:
    """Per method: accuracies, paired differences, costs; the claims. On the test phase, seeds whose base
    fails `verdicts.BASE_PREMISES` are left out of everything (rule fixed before the test phase; they are
    listed under "excluded_seeds" with the reason), unless no seed is left."""
    methods = preset.methods
    excluded = {}
    if preset.phase == "test" and "base" in methods:
        excluded = {s: why for s in preset.seeds if (why := verdicts.premise_failures(cells[(s, "base")]["eval"]))}
    seeds = tuple(s for s in preset.seeds if s not in excluded) or preset.seeds

    def matrix(method: str, suite: str) -> np.ndarray:
        return success_matrix(cells, seeds, method, suite)

    out: dict[str, Any] = {"methods": {}, "seeds": list(seeds),
                           "excluded_seeds": [{"seed": s, "why": why} for s, why in excluded.items()],
                           "premises_failed_everywhere": bool(excluded) and len(excluded) == len(preset.seeds)}
    for m in methods:
        row: dict[str, Any] = {suite: _interval(matrix(m, suite)) for suite in (*SUITES, "ood")}
        if "sft" in methods and m != "sft":
            row["in_domain_minus_sft"] = paired_over_seeds(matrix(m, "in_domain"), matrix("sft", "in_domain"))
        if "base" in methods and m != "base":
            row["in_domain_minus_base"] = paired_over_seeds(matrix(m, "in_domain"), matrix("base", "in_domain"))
            row["ood_minus_base"] = paired_over_seeds(matrix(m, "ood"), matrix("base", "ood"))
        cost_keys = ("rollout_turns", "sandbox_executions", "generated_tokens", "sandbox_seconds", "wall_seconds",
                     "optimizer_steps")
        row["costs"] = {k: float(np.mean([cells[(s, m)]["costs"][k] for s in seeds])) for k in cost_keys}
        row["steps"] = float(np.mean([cells[(s, m)].get("steps", 0) for s in seeds]))
        row["plateaued"] = sum(bool(cells[(s, m)].get("plateau")) for s in seeds)
        row["best_step"] = float(np.mean([cells[(s, m)].get("best_step", 0) for s in seeds]))
        row["lr"] = cells[(seeds[0], m)].get("lr")
        pivots = [cells[(s, m)]["pivots"] for s in seeds if cells[(s, m)]["pivots"] is not None]
        cand = [int(cells[(s, m)]["candidate_states"]) for s in seeds if cells[(s, m)].get("candidate_states")]
        row["pivots"] = float(np.mean(pivots)) if pivots else None
        row["pivot_share"] = float(np.sum(pivots) / np.sum(cand)) if pivots and cand else None
        row["notes"] = [cells[(s, m)]["note"] for s in seeds if cells[(s, m)]["note"]]
        out["methods"][m] = row
    eff = efficiency(cells, seeds) if {"pivotrl", "e2e_grpo"} <= set(methods) else None
    out["efficiency"] = eff
    matched = ood_at_matched_accuracy(cells, seeds) if {"pivotrl", "sft"} <= set(methods) else None
    out["ood_at_matched_accuracy"] = matched
    out["claims"] = verdicts.claims(set(methods), matrix, eff, matched)
    return out


# ----------------------------------------------------------------------------- table and plots

def percent_ci(d: dict | None) -> str:
    """A success rate with its 95% interval, in percent ("-" when there is none)."""
    if not d:
        return "-"
    return f"{d['mean'] * 100:.1f} [{d['lo'] * 100:.1f}, {d['hi'] * 100:.1f}]"


def _delta(d: dict | None) -> str:
    """A paired difference: its t-interval over seeds, or (one seed) its bootstrap over tasks, marked *."""
    if not d:
        return "-"
    if d.get("sign_from") == "t over seeds":
        return percent_ci(d)
    return percent_ci({"mean": d["mean"], "lo": d["boot_lo"], "hi": d["boot_hi"]}) + "*"


def ratio_text(v: dict[str, Any]) -> str:
    """A cost ratio with its interval over seeds (none with one seed) and how many of its seeds are
    censored (one method never left its start: the seed's ratio is a bound, see `efficiency`)."""
    censored = f", {v['n_censored']} censored" if v.get("n_censored") else ""
    if not (math.isfinite(v["lo"]) and math.isfinite(v["hi"])):  # one seed: a t-interval has no width to give
        return f"{v['mean']:.2f} (n={v.get('n_seeds')} seed, no interval{censored})"
    return f"{v['mean']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}] (n={v.get('n_seeds')} seeds{censored})"


def number_text(k: str, v: Any) -> str:
    """One of a claim's numbers as the claims table prints it: a paired difference with its interval and
    sign, a cost ratio with its interval, or the value as it is."""
    if isinstance(v, dict) and "sign" in v:
        return f"{k} {_delta(v)} ({v['sign']})"
    if isinstance(v, dict):  # a ratio with its interval over seeds
        return f"{k} {ratio_text(v)}"
    return f"{k} {v}"


def markdown(preset: GridPreset, summary: dict[str, Any], meta: dict[str, Any]) -> str:
    head = ["method", "lr", "in-domain % [95% CI]", "Δ in-domain vs base", "Δ in-domain vs SFT", "OOD group A %",
            "OOD tool use %", "Δ OOD vs base", "model calls", "wall s", "steps (plateau)", "best step", "updates",
            "pivots (share)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seeds = summary.get("seeds", list(preset.seeds))
    n = len(seeds)
    for m in preset.methods:
        r = summary["methods"][m]
        c = r["costs"]
        piv = "-" if r["pivots"] is None else f"{r['pivots']:.1f} ({(r['pivot_share'] or 0) * 100:.1f}%)"
        lines.append("| " + " | ".join([
            LABELS[m], "-" if r["lr"] is None else f"{r['lr']:g}", percent_ci(r["in_domain"]), _delta(r.get("in_domain_minus_base")),
            _delta(r.get("in_domain_minus_sft")), percent_ci(r["ood_group_a"]), percent_ci(r["ood_tool"]), _delta(r.get("ood_minus_base")),
            f"{c['rollout_turns']:.0f}", f"{c['wall_seconds']:.0f}",
            "-" if m == "base" else f"{r['steps']:.0f} ({r['plateaued']}/{n})",
            "-" if m == "base" else f"{r['best_step']:.0f}", f"{c['optimizer_steps']:.0f}", piv]) + " |")
    excluded = summary.get("excluded_seeds", [])
    notes = [f"seed {e['seed']} left out (its base cannot test the claims: {'; '.join(e['why'])})" for e in excluded]
    if summary.get("premises_failed_everywhere"):
        notes.append("NO seed's base meets the premises: the table below uses them all and tests nothing")
    notes += [(f"preset `{meta['preset']}` ({preset.phase} tasks), seeds {seeds}; in-domain = group B, "
              f"{preset.eval_in} held-out tasks; OOD = group A and tool use, {preset.eval_ood} held-out tasks each; "
              "greedy whole episodes of each run's best validation checkpoint (early stopping)"),
             ("accuracy intervals: 95% bootstrap over seeds and tasks; Δ columns: paired differences (same seeds and "
              "tasks), 95% Student-t interval over seeds" + ("" if n > 1 else "; * = one seed: bootstrap over tasks only, "
                                                            "which says nothing about seed-to-seed variation")),
             (f"training: each method at its own rate (lr), {preset.warmup_steps} warm-up steps, validation curve every "
              f"{preset.eval_every} steps, stopped at a plateau (last quarter's best < {preset.plateau_gain * 100:.0f} point "
              f"above the best before) or at {preset.max_steps} steps; 'steps (plateau)' = mean steps run (seeds that "
              "plateaued); updates = optimiser steps that updated (a step whose groups all have zero reward variance "
              "skips its update)"),
             ("costs are means per seed; model calls = completions generated (PivotRL rows include profiling); wall s = "
              "profiling + training, evaluations excluded"),
             (f"run wall time {meta['wall_seconds']:.0f} s ({meta['cells_run']} cells run now, {meta['cells_resumed']} "
              f"read back), load average at start {meta['load_start']}, at end {meta['load_end']}; versions "
              f"{meta.get('versions')}")]
    for m in preset.methods:
        for note in sorted(set(summary["methods"][m]["notes"])):
            seeds_with = sum(x == note for x in summary["methods"][m]["notes"])
            notes.append(f"{LABELS[m]} ({seeds_with} of {n} seeds): {note.split(':')[0]}")
    eff = summary.get("efficiency")
    if eff:
        notes.append(f"claim 3, matched accuracy: {eff['usable_seeds']} of {len(eff['per_seed'])} seeds have an accuracy both "
                     "PivotRL and E2E-RL reach above their start (per seed in results.json)")
    claim_lines = ["", "| claim | paired difference(s), 95% CI | verdict |", "|---|---|---|"]
    for c in summary.get("claims", []):
        nums = "; ".join(number_text(k, v) for k, v in c["numbers"].items())
        claim_lines.append(f"| {c['claim']} | {nums} | **{c['verdict']}** |")
    if len(claim_lines) == 3:
        claim_lines = []
    return "\n".join(lines + [""] + [f"- {note}" for note in notes] + claim_lines) + "\n"


def seed_band(seeds_xy: list[tuple[list[float], list[float]]]) -> tuple[np.ndarray, ...]:
    """Seeds' curves as one band: each seed's curve is a step function of cost (its last checkpoint's
    accuracy holds until its next, and after its run stopped), read at every cost any seed has a
    checkpoint at; returns (x, 25th percentile, median, 75th percentile) over the seeds whose run has
    started by x. The seeds' costs differ (a plateau comes at another step, PivotRL's profiling at
    another size), so a per-checkpoint average would mix different budgets."""
    x = np.unique(np.concatenate([np.asarray(xs, dtype=float) for xs, _ in seeds_xy]))
    at = np.full((len(seeds_xy), len(x)), np.nan)
    for i, (xs, ys) in enumerate(seeds_xy):
        idx = np.searchsorted(np.asarray(xs, dtype=float), x, side="right") - 1  # last checkpoint at or before x
        ok = idx >= 0
        at[i, ok] = np.asarray(ys, dtype=float)[idx[ok]]
    lo, mid, hi = np.nanpercentile(at, [25, 50, 75], axis=0)
    return x, lo, mid, hi


def plots(preset: GridPreset, cells: dict[tuple[int, str], dict], summary: dict[str, Any], out: Path) -> list[str]:
    """curves.png (the paper's efficiency figure: in-domain validation accuracy against model calls, with
    and without PivotRL's profiling, and against wall time; seeds as a band, `seed_band`), in_vs_out.png, kl.png (OOD
    change against the forward KL to the start policy, every checkpoint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for m in preset.methods:
        per_axis: list[list[tuple[list[float], list[float]]]] = [[], [], []]
        for s in preset.seeds:
            cell = cells.get((s, m)) or {}  # absent: a seed skipped for its base (run_grid's skip_excluded)
            curve = cell.get("curve") or []
            if not curve:
                continue
            prof = cell.get("profile_costs") or {}
            y = [p[curves.IN_DOMAIN] * 100 for p in curve]
            per_axis[0].append(([p["costs/rollout_turns"] + prof.get("rollout_turns", 0) for p in curve], y))
            per_axis[1].append(([p["costs/rollout_turns"] for p in curve], y))
            per_axis[2].append(([p["costs/wall_seconds"] + prof.get("wall_seconds", 0) for p in curve], y))
        for ax, seeds_xy in zip(axes, per_axis):
            if seeds_xy:
                x, lo, mid, hi = seed_band(seeds_xy)
                ax.plot(x, mid, color=colours[m], label=LABELS[m], drawstyle="steps-post",
                        marker="o" if len(x) == 1 else None)  # SFT on the calls axes: it generates nothing
                ax.fill_between(x, lo, hi, color=colours[m], alpha=0.2, step="post", linewidth=0)
    for ax, xlabel in zip(axes, ("model calls (PivotRL: profiling included)", "model calls (profiling excluded)",
                                 "wall seconds (profiling + training)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("in-domain validation success (%)")
        if "calls" in xlabel:  # SFT generates nothing (0 calls); the RL methods' calls span decades
            ax.set_xscale("symlog", linthresh=100)
    if axes[0].get_legend_handles_labels()[0]:  # a grid whose runs kept no curve draws nothing
        axes[0].legend(fontsize=7)
    fig.suptitle(f"learning curves ({preset.phase}, seeds {list(preset.seeds)}; line: median over seeds, "
                 "band: their 25th-75th percentiles)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    written.append("curves.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in preset.methods:
        r = summary["methods"][m]
        if "in_domain_minus_base" not in r:
            continue
        dx, dy = r["in_domain_minus_base"], r["ood_minus_base"]
        lo_x, hi_x = (dx["lo"], dx["hi"]) if math.isfinite(dx["lo"]) else (dx["boot_lo"], dx["boot_hi"])
        lo_y, hi_y = (dy["lo"], dy["hi"]) if math.isfinite(dy["lo"]) else (dy["boot_lo"], dy["boot_hi"])
        ax.errorbar([dx["mean"] * 100], [dy["mean"] * 100], xerr=[[(dx["mean"] - lo_x) * 100], [(hi_x - dx["mean"]) * 100]],
                    yerr=[[(dy["mean"] - lo_y) * 100], [(hi_y - dy["mean"]) * 100]], fmt="o", capsize=3, label=LABELS[m],
                    color=colours[m])
    _save_change_plot(fig, ax, "in-domain change vs base (points)", "out-of-domain change vs base (points)",
                      out / "in_vs_out.png")
    written.append("in_vs_out.png")
    # "RL's Razor": forgetting against the forward KL D_KL(pi_0 || pi) on in-domain prompts, every checkpoint.
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for m in preset.methods:
        xy = [(p["eval/forward_kl"], (sum(p[k] for k in OOD_KEYS) - sum(c[0][k] for k in OOD_KEYS)) / len(OOD_KEYS) * 100)
              for s in preset.seeds for c in [(cells.get((s, m)) or {}).get("curve") or []] for p in c if "eval/forward_kl" in p]
        if xy:
            arr = np.array(xy)
            ax.scatter(arr[:, 0], arr[:, 1], s=10, alpha=0.6, color=colours[m], label=LABELS[m])
            drawn = True
    if drawn:
        _save_change_plot(fig, ax, "forward KL to the start policy on in-domain prompts (nats per completion)",
                          "OOD validation change vs start (points)", out / "kl.png")
        written.append("kl.png")
    else:
        plt.close(fig)
    return written


def _save_change_plot(fig: Any, ax: Any, xlabel: str, ylabel: str, path: Path) -> None:
    """Finish a change-vs-change scatter (axes through 0, labels, legend) and write it."""
    import matplotlib.pyplot as plt

    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)



# ----------------------------------------------------------------------------- the rate grid

def write_rate_grid(preset: GridPreset, stored: dict[tuple[int, str, float | None], dict], lr_grid: tuple[float, ...],
                    out: Path) -> dict[str, Any]:
    """The learning-rate choice on dev: per method and rate, the plateau of the in-domain validation curve
    (mean over seeds); the chosen rate is the best plateau (ties: the smaller rate). Writes rates.md and
    pareto.png (in-domain gain against OOD change over rates x checkpoints, validation suites)."""
    rows: dict[str, dict[float, dict[str, float]]] = {}
    for (s, m, r), cell in stored.items():
        if r is None or m not in preset.lrs or not cell.get("curve"):
            continue
        curve = cell["curve"]
        rows.setdefault(m, {}).setdefault(r, {"plateau": 0.0, "held_out": 0.0, "steps": 0.0, "n": 0})
        acc = rows[m][r]
        acc["plateau"] += curves.plateau_value(curve)
        acc["held_out"] += cell["eval"]["in_domain"]["success"]
        acc["steps"] += cell.get("steps", 0)
        acc["n"] += 1
    chosen = {}
    lines = ["| method | rate | in-domain validation plateau % (mean over seeds) | held-out in-domain % | steps | seeds |",
             "|---|---|---|---|---|---|"]
    for m, by_rate in rows.items():
        for r in sorted(by_rate):
            a = by_rate[r]
            for k in ("plateau", "held_out", "steps"):
                a[k] /= a["n"]
            lines.append(f"| {LABELS[m]} | {r:g} | {a['plateau'] * 100:.1f} | {a['held_out'] * 100:.1f} | {a['steps']:.0f} | {a['n']} |")
        chosen[m] = max(sorted(by_rate), key=lambda r: by_rate[r]["plateau"] - 1e-9 * r)
    lines.append("")
    lines.append(f"chosen (best validation plateau): {json.dumps(chosen)}")
    (out / "rates.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    pareto_plot(stored, out)
    return {"by_method": {m: {f"{r:g}": v for r, v in by_rate.items()} for m, by_rate in rows.items()}, "chosen": chosen}


def pareto_plot(stored: dict[tuple[int, str, float | None], dict], out: Path) -> None:
    """In-domain gain against OOD change (both vs the curve's start, validation suites, mean over seeds)
    for every rate x checkpoint of every method: where each method's points lie is its trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[tuple[str, float, int], list[tuple[float, float]]] = {}
    for (_s, m, r), cell in stored.items():
        curve = cell.get("curve") or []
        if r is None or not curve:
            continue
        p0 = curve[0]
        for i, p in enumerate(curve):
            ood = (p["eval/ood_group_a"] + p["eval/ood_tool"]) / 2 - (p0["eval/ood_group_a"] + p0["eval/ood_tool"]) / 2
            points.setdefault((m, r, i), []).append(((p[curves.IN_DOMAIN] - p0[curves.IN_DOMAIN]) * 100, ood * 100))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, m in enumerate(METHODS):
        xy = [np.mean(v, axis=0) for (mm, _r, _i), v in points.items() if mm == m]
        if xy:
            arr = np.array(xy)
            ax.scatter(arr[:, 0], arr[:, 1], s=10, alpha=0.6, color=f"C{i}", label=LABELS[m])
    ax.set_title("rates x checkpoints (mean over seeds)")
    _save_change_plot(fig, ax, "in-domain validation gain vs start (points)", "OOD validation change vs start (points)",
                      out / "pareto.png")
