"""The representation study's ``REPORT.md``, ``report.json`` and figures, from a study folder.

Every number comes from the runs' ``result.json`` files (:mod:`~dereverb.experiment.analysis`);
nothing in the report is written by hand. The report is built around the question: the answer
in one paragraph (:func:`dereverb.experiment.verdicts.answer`), then per mechanism its
prediction, test and verdict with the intervals (:func:`dereverb.experiment.verdicts.verdicts`),
then the evidence: metric-vs-training-length curves, paired differences to the reference at
every length, the capacity comparison, the last step's tables, T60 bands (measured rooms), the
seed spread, training curves, and the limits. :func:`build_report` assembles the text from one
function per section; the tables are :mod:`~dereverb.experiment.tables`, the figures
:mod:`~dereverb.experiment.figures`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dereverb.atomic import atomic_path, write_atomic
from dereverb.experiment.analysis import (
    PRIMARY,
    SET_TITLES,
    Study,
    band_table,
    baseline_means,
    compare,
    compare_capacities,
    curve_table,
    load_study,
    runtime,
    summary_table,
)
from dereverb.experiment.figures import FIGURES, report_figures
from dereverb.experiment.files import write_json_atomic
from dereverb.experiment.tables import (
    bands_markdown,
    capacity_effect_markdown,
    capacity_markdown,
    curve_markdown,
    diffs_markdown,
    net_arguments,
    setup_markdown,
    spread_markdown,
    steps_diffs_markdown,
    summary_markdown,
)
from dereverb.experiment.verdicts import answer, mechanism_markdown, question_table, verdicts
from dereverb.signals.metrics import LABELS

__all__ = ["FIGURES", "build_report", "write_report"]

DEFAULT_N_BOOT = 2000
TITLE = "# Representation study: can an RGB spectrogram beat the raw one?"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return (
        f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"
    )


def _session_line(s: Mapping[str, Any]) -> str:
    la = (s.get("machine") or {}).get("load_average")
    return (
        f"- `{s['command']}` — {s.get('id')}, {_hms(s.get('wall_seconds', 0.0))} wall, "
        f"{len(s.get('trained', []))} runs trained, {len(s.get('skipped', []))} reused, "
        f"{len(s.get('failed') or {})} failed"
        + (f", load average {la[0]:.1f} at its start" if la else "")
        + (" (interrupted)" if s.get("interrupted") else "")
        + "".join(f"; {n}" for n in s.get("notes") or [])
    )


def _answer(study: Study, n_boot: int, vs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    sets = study.eval_sets
    if not sets:
        return ["## The answer", "", "(no finished runs yet)", ""]
    text = " ".join(answer(study, s, n_boot, vs=vs[s], brief=k > 0) for k, s in enumerate(sets))
    return [
        "## The answer",
        "",
        text,
        "",
        "The mechanisms below say why, each with its prediction, the test and the intervals; "
        "the evidence follows them.",
        "",
    ]


def _how_it_was_run(study: Study, report_command: str) -> list[str]:
    meta = study.meta
    sessions = meta.get("sessions", [])
    rt = runtime(study)
    machine = next((s.get("machine") for s in reversed(sessions) if s.get("machine")), {}) or {}
    missing = study.missing()
    failed = {k: v for s in sessions for k, v in (s.get("failed") or {}).items() if k in missing}
    lines = ["## How it was run", ""]
    lines += [_session_line(s) for s in sessions if s.get("command")]
    if report_command:
        lines.append(f"- report: `{report_command}`")
    per_cap = "; ".join(
        f"{c}: {v['train_seconds_mean']:.0f} s training + {v['eval_seconds_mean']:.0f} s evaluation "
        f"per run ({v['runs']} runs)"
        for c, v in rt["per_capacity"].items()
    )
    lines += [
        f"- machine: {machine.get('cpu_count')}-core CPU ({machine.get('cpu') or 'unknown model'}), "
        f"{machine.get('gpu') or 'no GPU'}; torch {machine.get('torch')}, Python "
        f"{machine.get('python')}; shared with other jobs (load averages above), "
        f"{meta.get('jobs')} run(s) in parallel x {meta.get('threads')} torch thread(s)",
        f"- runtime: {_hms(rt['wall_seconds'])} wall over {rt['sessions']} session(s); per run "
        f"{rt['train_seconds_mean']:.0f} s training + {rt['eval_seconds_mean']:.0f} s evaluation on average "
        f"({per_cap}; {rt['cpu_seconds'] / 60:.0f} CPU-min in total)",
        f"- runs: {len(study.results)} finished of {len(study.planned())} planned "
        f"({len(study.conditions)} conditions, capacities {', '.join(study.capacities) or '-'})",
    ]
    if missing:
        lines.append(
            f"- **missing runs ({len(missing)})**: "
            + ", ".join(f"`{m}`" for m in missing)
            + (f"; failed: {', '.join(failed)}" if failed else "; not run yet (the study was cut short)")
        )
    return lines


def _setup(study: Study, n_boot: int) -> list[str]:
    meta = study.meta
    train = meta.get("train", {})
    data, model, trainer = train.get("data", {}), train.get("model", {}), train.get("trainer", {})
    net = net_arguments(model)
    ev = meta.get("evaluation", {})
    sets = study.eval_sets
    n_items = {s: len(study.results[0]["rows"].get(s, [])) for s in sets} if study.results else {}
    steps = study.steps()
    margins = ", ".join(f"{LABELS[m]} ±{study.margins[m]:g}" for m in (*PRIMARY, "si_sdr") if m in study.margins)
    a = study.alpha
    return [
        "## Setup",
        "",
        f"- data: speech `{data.get('speech')}` (speaker-disjoint train/val/test splits), simulated shoebox rooms "
        f"T60 {data.get('room', {}).get('t60_range', '(default)')} s with disjoint train/val/test RIR banks "
        f"{data.get('rir_bank_sizes')}, {data.get('segment_seconds')}-s segments, batch {data.get('batch_size')}, "
        f"data seed {data.get('seed', 0)} (same items, same order for every run)",
        f"- model: U-Net ({', '.join(f'{k} {v}' for k, v in net.items())}; per capacity below), "
        f"residual={model.get('residual', True)}, {model.get('loss', 'l1')} loss in the target domain, AdamW lr "
        f"{model.get('lr')}, {model.get('scheduler', 'cosine')} schedule over {trainer.get('max_steps')} steps; "
        f"phase {model.get('phase', 'griffinlim-warm')} ({model.get('griffin_lim_iters', 32)} iterations)",
        "- residual: every arm uses the same setting. With `residual: true` the U-Net predicts a correction to "
        "its input expressed in the output domain; for target `log_magnitude` the skip is the input *decoded by "
        "its own representation*, so a lossy representation (8-bit, JPEG, resize, 80-dB clip) only passes on "
        "what it kept; for target `same` the skip is the input image itself (before the output activation).",
        "- seeds: `seed_everything` = network initialisation; the data seed is fixed, so the seed spread is "
        "initialisation noise only.",
        f"- training lengths: every run saved its weights after steps {', '.join(map(str, steps))} "
        "(`steps/step=<k>.ckpt`, the last one `final.ckpt`) and each was evaluated: the curves come from one "
        "run each, along one cosine schedule.",
        "- evaluation: the full inverse path on "
        + ", ".join(f"{n_items.get(s, 0)} {SET_TITLES[s]} items" for s in sets)
        + f" ({ev.get('segment_seconds') or data.get('segment_seconds')} s each; measured = test-split speakers x "
        f"`{ev.get('measured_rirs')}`, rooms in turn). Baselines: {ev.get('baselines')}.",
        f"- statistics: mean over seeds of the per-seed means with a 95% Student-t interval over seeds. A "
        f"difference is judged on the items (each item's score averaged over seeds, paired by item, paired t) "
        f"and on the seeds (Welch on the per-seed means); the verdict interval is the hull of the two. "
        f"**better / worse**: the {100 * (1 - a):.0f}% hull excludes 0; **equivalent within ±margin**: both "
        f"{100 * (1 - 2 * a):.0f}% intervals lie inside ±margin (two one-sided tests at α = {a:g}, checked "
        f"first); else **inconclusive**. Margins: {margins}. A change with training compares each run with "
        "itself at two steps; a change with capacity compares independent runs. (The paired bootstrap of the "
        f"first study, {n_boot} resamples, is kept in report.json as `lo`/`hi`.)",
        "",
        "Capacities:",
        "",
        capacity_markdown(study),
        "",
        setup_markdown(study),
        "",
    ]


def _mechanisms(study: Study, vs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    sets = study.eval_sets
    if not sets:
        return []
    lines = ["## Mechanisms", ""]
    for mech in vs[sets[0]]:
        by_set = {s: next(x for x in vs[s] if x["key"] == mech["key"]) for s in sets}
        lines += [mechanism_markdown(by_set), ""]
    return lines


def _curves(study: Study, n_boot: int) -> list[str]:
    lines = [
        "## Training-length curves",
        "",
        "Mean over seeds ± σ of the per-seed means at every evaluated step (rows: conditions x capacities).",
        "",
    ]
    for s in study.eval_sets:
        lines += [f"### {SET_TITLES[s]}", "", f"![curves {s}](curves_{s}.png)", ""]
        for k, m in enumerate(PRIMARY):
            table = curve_markdown(study, s, m)
            lines += _maybe_folded(f"{LABELS[m]} vs steps", table, folded=k > 0)
    lines += [
        "## Differences to the reference at every length",
        "",
        f"Δ = condition − `{study.reference}` at the same capacity and step, 95% verdict interval "
        "(items and seeds), ▲ better, ▼ worse, ≈ equivalent within the margin, ? inconclusive.",
        "",
    ]
    for s in study.eval_sets:
        lines += [f"### {SET_TITLES[s]}", "", f"![differences {s}](diffs_{s}.png)", ""]
        for k, m in enumerate(PRIMARY):
            lines += _maybe_folded(f"Δ {LABELS[m]}", steps_diffs_markdown(study, s, m, n_boot), folded=k > 0)
    return lines


def _maybe_folded(title: str, body: str, folded: bool) -> list[str]:
    if folded:
        return [f"<details><summary>{title}</summary>", "", body, "", "</details>", ""]
    return [f"{title}:", "", body, ""]


def _capacity(study: Study, n_boot: int) -> list[str]:
    caps = study.capacities
    lines = ["## Capacity", ""]
    if len(caps) < 2:
        return lines + ["One capacity only: no capacity comparison.", ""]
    lines += [
        f"The same condition at `{caps[0]}` and `{caps[-1]}` (each at its last step; independent runs, items "
        "paired): mean → mean and the change, 95% verdict interval.",
        "",
    ]
    for s in study.eval_sets:
        lines += [f"{SET_TITLES[s]}:", "", capacity_effect_markdown(study, s, n_boot), ""]
    return lines


def _last_step(study: Study, n_boot: int) -> list[str]:
    lines = ["## Results at the last step", ""]
    for cap in study.capacities:
        view = study.view(cap)
        step = view.selected[1] if view.selected else "?"
        for s in view.eval_sets:
            lines += [
                f"### {SET_TITLES[s]}, {cap} (step {step})",
                "",
                "Mean over seeds [95% t interval over seeds]; baselines in parentheses.",
                "",
                summary_markdown(view, s),
                "",
                f"Differences to `{study.reference}`:",
                "",
                diffs_markdown(view, s, n_boot),
                "",
            ]
    for s in study.eval_sets:
        lines += [f"![summary {s}](summary_{s}.png)", ""]
    return lines


def _bands(study: Study) -> list[str]:
    lines: list[str] = []
    sets = study.eval_sets
    if "measured" in sets:
        lines += [
            "## Per T60 band: measured rooms",
            "",
            "The measured rooms' T60 (estimated from each RIR) by band, at each capacity's last step.",
            "",
        ]
        for cap in study.capacities:
            view = study.view(cap)
            for m in PRIMARY:
                lines += [f"{LABELS[m]} ({cap}):", "", bands_markdown(view, "measured", m), ""]
        lines += ["![bands measured](bands_measured.png)", ""]
    if "sim" in sets:
        lines += ["## Per T60 band: simulated test rooms", ""]
        for cap in study.capacities:
            lines += [f"PESQ-WB ({cap}):", "", bands_markdown(study.view(cap), "sim", "pesq"), ""]
        lines += ["![bands sim](bands_sim.png)", ""]
    return lines


def _spread_and_training(study: Study) -> list[str]:
    sets = study.eval_sets
    lines = [
        "## Seed-to-seed spread" + (f" ({SET_TITLES[sets[0]]})" if sets else ""),
        "",
        "σ = standard deviation over seeds of the per-seed mean score, at each capacity's last step.",
        "",
    ]
    for cap in study.capacities:
        lines += [f"{cap}:", "", spread_markdown(study.view(cap), sets[0]) if sets else "(no runs)", ""]
    lines += [
        "![seed spread](seed_spread.png)",
        "",
        "## Training curves (TensorBoard)",
        "",
        "Mean over seeds, read from each run's TensorBoard events. Losses are comparable only between conditions "
        "with target `log_magnitude` (same output domain); validation STOI/PESQ (a few validation items) are "
        "comparable for all.",
        "",
        "![training](training.png)",
        "",
    ]
    return lines


def _budget_limit(study: Study) -> list[str]:
    """How much training "the most training" is, and whether the reference was still
    improving at its end (then the ranking is that of a network still learning)."""
    data = study.meta.get("train", {}).get("data", {})
    steps, batch, seg = (study.steps() or [0])[-1], data.get("batch_size"), data.get("segment_seconds")
    if not (steps and batch and seg):
        return []
    line = (
        f"- Training budget: the most training is {steps} steps of batch {batch} x {seg:g}-s segments, "
        f"{steps * batch * seg / 60:.0f} minutes of audio seen; the networks are not trained to convergence, "
        "so the verdicts hold for this budget"
    )
    cap = study.capacities[0] if study.capacities else None
    pts = sorted((r["step"], r["mean"]) for r in (curve_table(study, study.eval_sets[0], "pesq", cap) if cap else [])
                 if r["condition"] == study.reference)
    if len(pts) >= 2 and pts[-1][1] > pts[-2][1]:
        line += (
            f" (the reference's {LABELS['pesq']} still rose from {pts[-2][1]:.3f} at step {pts[-2][0]} to "
            f"{pts[-1][1]:.3f} at step {pts[-1][0]}, {cap} network, {SET_TITLES.get(study.eval_sets[0], study.eval_sets[0])})"
        )
    return [line + "."]


def _limits(study: Study) -> list[str]:
    caps = study.capacities
    lines = [
        "## Limits",
        "",
        "- No ImageNet-pretrained encoder arm: the classic argument for RGB spectrograms is transfer from image "
        "networks, but no pretrained image weights are available offline here, so every network starts from "
        "random weights; the study answers the question for networks trained from scratch only.",
        "- The training-length curves are checkpoints of one run along one cosine schedule: the early points "
        "are taken at a high learning rate, not from shorter, separately tuned runs.",
        "- *Equivalent* means within the stated margins with 95% confidence; *inconclusive* means the data "
        "cannot tell (more seeds or items would), not that there is no difference.",
    ]
    lines += _budget_limit(study)
    if len(caps) > 1:
        small = [c for c in study.conditions if not any(r["condition"] == c and r["capacity"] == caps[-1]
                                                       for r in study.results)]
        if small:
            lines.append(
                f"- Only some conditions ran at `{caps[-1]}`: "
                + ", ".join(f"`{c}`" for c in small)
                + f" ran at `{caps[0]}` only, so their capacity effect is untested."
            )
    seeds = sorted(
        {
            sum(r["capacity"] == cap for r in study.runs(c))
            for c in study.conditions
            for cap in study.capacities
        }
        - {0}
    )
    if seeds and seeds[0] < 5:
        n = f"{seeds[0]} to {seeds[-1]}" if seeds[0] != seeds[-1] else str(seeds[0])
        lines.append(
            f"- Seeds per condition and capacity: {n}; a seed-level interval with {seeds[0]} seeds "
            "is wide, so equivalence is hard to show there."
        )
    if "measured" in study.eval_sets and study.results:
        n = len(study.results[0]["rows"].get("measured", []))
        rooms = {x.get("room") or x.get("rir") for x in study.results[0]["rows"].get("measured", [])}
        lines.append(
            f"- Measured rooms: {n} items from {len(rooms)} measured RIR(s); their T60 bands hold few items."
        )
    lines.append("")
    return lines


def _set_data(
    study: Study, s: str, vs: Sequence[Mapping[str, Any]], n_boot: int
) -> dict[str, Any]:
    """``report.json``'s entry of one evaluation set."""
    caps = study.capacities
    out: dict[str, Any] = {
        "answer": answer(study, s, n_boot, vs=vs),
        "baselines": baseline_means(study, s),
        "summary": {},
        "curves": {},
        "diffs": [],
        "bands": {},
        "verdicts": [dict(v) for v in vs],
        "question": question_table(study, s, n_boot),
        "capacity_effects": [],
    }
    for cap in caps:
        view = study.view(cap)
        out["summary"][cap] = summary_table(view, s)
        out["curves"][cap] = {m: curve_table(study, s, m, cap) for m in PRIMARY}
        out["bands"][cap] = {m: band_table(view, s, m) for m in PRIMARY}
        for st in study.steps(cap):
            v = study.view(cap, st)
            out["diffs"] += [
                d
                for c in v.conditions
                if c != study.reference
                for m in PRIMARY
                if (d := compare(v, s, c, study.reference, m, n_boot=n_boot)) is not None
            ]
    if len(caps) > 1:
        out["capacity_effects"] = [
            d
            for c in study.conditions
            for m in PRIMARY
            if (d := compare_capacities(study, s, c, m, (caps[0], caps[-1]), n_boot=n_boot)) is not None
        ]
    return out


def resolve_n_boot(study: Study, n_boot: int | None = None) -> int:
    """``n_boot``, else the study's ``evaluation.n_boot``, else 2000."""
    return int(n_boot or study.meta.get("evaluation", {}).get("n_boot", DEFAULT_N_BOOT))


def build_report(
    study: Study, report_command: str = "", n_boot: int | None = None
) -> tuple[str, dict[str, Any]]:
    """``(REPORT.md text, report.json dict)``; figures are referenced by their file names."""
    n_boot = resolve_n_boot(study, n_boot)
    meta = study.meta
    vs = {s: verdicts(study, s, n_boot=n_boot) for s in study.eval_sets}
    lines = [
        TITLE,
        "",
        f"Generated by `dereverb.experiment.report` from `{study.folder}` (profile **{meta.get('profile')}**, config "
        f"`{meta.get('config_path')}`). Every number below is computed from the runs' `result.json` files; "
        "re-running the report command regenerates this file and the figures.",
        "",
        *_answer(study, n_boot, vs),
        *_mechanisms(study, vs),
        *_how_it_was_run(study, report_command),
        "",
        *_setup(study, n_boot),
        *_curves(study, n_boot),
        *_capacity(study, n_boot),
        *_last_step(study, n_boot),
        *_bands(study),
        *_spread_and_training(study),
        *_limits(study),
    ]
    data: dict[str, Any] = {
        "folder": str(study.folder),
        "runtime": runtime(study),
        "missing": study.missing(),
        "capacities": {c: study.capacity_args(c) for c in study.capacities},
        "steps": {c: study.steps(c) for c in study.capacities},
        "margins": study.margins,
        "alpha": study.alpha,
        "sets": {s: _set_data(study, s, vs[s], n_boot) for s in study.eval_sets},
    }
    return "\n".join(lines), data


def write_report(
    folder: str | os.PathLike,
    report_dir: str | os.PathLike | None = None,
    report_command: str = "",
    n_boot: int | None = None,
) -> Path:
    """Write ``REPORT.md``, ``report.json`` and the PNG figures into ``report_dir``
    (default ``<folder>/report``), each atomically; returns the REPORT.md path."""
    study = load_study(folder)
    out = Path(report_dir) if report_dir is not None else Path(folder) / "report"
    out.mkdir(parents=True, exist_ok=True)
    n_boot = resolve_n_boot(study, n_boot)
    text, data = build_report(study, report_command, n_boot)
    for name, fig in report_figures(study, n_boot):
        with atomic_path(out / name, suffix=".tmp.png") as tmp:
            fig.savefig(tmp, dpi=100)
    write_json_atomic(out / "report.json", data)
    return write_atomic(out / "REPORT.md", text)

