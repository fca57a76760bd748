"""The representation study's ``REPORT.md``, ``report.json`` and figures, from a study folder.

Every number comes from the runs' ``result.json`` files (:mod:`~dereverb.experiment.analysis`);
nothing in the report is written by hand. :func:`build_report` assembles the text from one
function per section; the tables are :mod:`~dereverb.experiment.tables`, the answers
:mod:`~dereverb.experiment.verdicts`, the figures :mod:`~dereverb.experiment.figures`.
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
    load_study,
    runtime,
    summary_table,
)
from dereverb.experiment.figures import FIGURES, report_figures
from dereverb.experiment.files import write_json_atomic
from dereverb.experiment.tables import (
    bands_markdown,
    diffs_markdown,
    net_arguments,
    setup_markdown,
    spread_markdown,
    summary_markdown,
    verdict_markdown,
)
from dereverb.experiment.verdicts import answer, verdicts
from dereverb.signals.metrics import LABELS

__all__ = ["FIGURES", "build_report", "write_report"]

DEFAULT_N_BOOT = 2000


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
    lines += [
        f"- machine: {machine.get('cpu_count')}-core CPU ({machine.get('cpu') or 'unknown model'}), "
        f"{machine.get('gpu') or 'no GPU'}; torch {machine.get('torch')}, Python "
        f"{machine.get('python')}; shared with other jobs (load averages above), "
        f"{meta.get('jobs')} run(s) in parallel x {meta.get('threads')} torch thread(s)",
        f"- runtime: {_hms(rt['wall_seconds'])} wall over {rt['sessions']} session(s); per run "
        f"{rt['train_seconds_mean']:.0f} s training + {rt['eval_seconds_mean']:.0f} s evaluation on average "
        f"({rt['cpu_seconds'] / 60:.0f} CPU-min in total)",
        f"- runs: {len(study.results)} finished of {len(study.planned())} planned "
        f"({len(study.conditions)} conditions x seeds {meta.get('seeds')})",
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
    return [
        "## Setup",
        "",
        f"- data: speech `{data.get('speech')}` (speaker-disjoint train/val/test splits), simulated shoebox rooms "
        f"T60 {data.get('room', {}).get('t60_range', '(default)')} s with disjoint train/val/test RIR banks "
        f"{data.get('rir_bank_sizes')}, {data.get('segment_seconds')}-s segments, batch {data.get('batch_size')}, "
        f"data seed {data.get('seed', 0)} (same items, same order for every run)",
        f"- model: U-Net base {net.get('base_channels')} channels, depth {net.get('depth')}, "
        f"residual={model.get('residual', True)}, {model.get('loss', 'l1')} loss in the target domain, AdamW lr "
        f"{model.get('lr')}, {model.get('scheduler', 'cosine')} schedule, {trainer.get('max_steps')} steps; phase "
        f"{model.get('phase', 'griffinlim-warm')} ({model.get('griffin_lim_iters', 32)} iterations)",
        "- residual: every arm uses the same setting. With `residual: true` the U-Net predicts a correction to "
        "its input expressed in the output domain; for target `log_magnitude` the skip is the input *decoded by "
        "its own representation*, so a lossy representation (8-bit, JPEG, resize, 80-dB clip) only passes on "
        "what it kept; for target `same` the skip is the input image itself (before the output activation).",
        "- seeds: `seed_everything` = network initialisation; the data seed is fixed, so the seed spread is "
        "initialisation noise only.",
        "- evaluation: the weights after the last step (`final.ckpt`), full inverse path, on "
        + ", ".join(f"{n_items.get(s, 0)} {SET_TITLES[s]} items" for s in sets)
        + f" ({ev.get('segment_seconds') or data.get('segment_seconds')} s each; measured = test-split speakers x "
        f"`{ev.get('measured_rirs')}`, rooms in turn). Baselines: {ev.get('baselines')}.",
        f"- statistics: mean over seeds of the per-seed means with a 95% Student-t interval over seeds; "
        f"differences: per-item scores averaged over seeds, paired by item, percentile bootstrap "
        f"({n_boot} resamples) — pooled over seeds; *beyond seed noise* = the bootstrap CI excludes 0 and "
        "|Δ| > thr = t(0.975, Welch df)·se_seed, se_seed = sqrt(σ_a²/n + σ_b²/n) from the σ of "
        "per-seed means (a Welch t-test on the per-seed means at 5%; `thr` in the tables).",
        "",
        setup_markdown(study),
        "",
    ]


def _question(study: Study, n_boot: int) -> list[str]:
    sets = study.eval_sets
    if not sets:
        return []
    lines = [f"## The question in numbers ({SET_TITLES[sets[0]]})", ""]
    lines += answer(study, sets[0], n_boot) or [
        "(the conditions needed for this summary have no finished runs)"
    ]
    return lines + [
        "",
        "Per-mechanism comparisons follow; the measured-room section repeats everything on real rooms.",
        "",
    ]


def _results(study: Study, s: str, vs: Sequence[Mapping[str, Any]], n_boot: int) -> list[str]:
    title = SET_TITLES[s]
    return [
        f"## Results: {title}",
        "",
        f"Mean over seeds [95% t interval over seeds]; baselines in parentheses. Figure: `summary_{s}.png`.",
        "",
        summary_markdown(study, s),
        "",
        f"![summary {s}](summary_{s}.png)",
        "",
        f"### Differences to `{study.reference}` ({title})",
        "",
        "Δ = condition − reference, paired by item (seed-averaged scores), 95% bootstrap CI; thr = the "
        "seed-noise threshold (Welch t x se from the seed spread); **bold** = beyond seed noise.",
        "",
        diffs_markdown(study, s, n_boot),
        "",
        f"![differences {s}](diffs_{s}.png)",
        "",
        f"### Verdicts ({title})",
        "",
        verdict_markdown(vs),
    ]


def _bands(study: Study) -> list[str]:
    lines: list[str] = []
    if "sim" in study.eval_sets:
        lines += ["## Per T60 band (simulated test rooms)", ""]
        for m in PRIMARY:
            lines += [f"{LABELS[m]}:", "", bands_markdown(study, "sim", m), ""]
        lines += ["![bands](bands.png)", ""]
    if "measured" in study.eval_sets:
        lines += [
            "Measured rooms by T60 band (PESQ-WB):",
            "",
            bands_markdown(study, "measured", "pesq"),
            "",
        ]
    return lines


def _curves_and_spread(study: Study) -> list[str]:
    sets = study.eval_sets
    return [
        "## Training curves",
        "",
        "Mean over seeds, read from each run's TensorBoard events. Losses are comparable only between conditions "
        "with target `log_magnitude` (same output domain); validation STOI/PESQ are comparable for all.",
        "",
        "![curves](curves.png)",
        "",
        "## Seed-to-seed spread (simulated test rooms)" if "sim" in sets else "## Seed-to-seed spread",
        "",
        "σ = standard deviation over seeds of the per-seed mean score.",
        "",
        spread_markdown(study, sets[0]) if sets else "(no runs)",
        "",
        "![seed spread](seed_spread.png)",
        "",
    ]


def _set_data(study: Study, s: str, vs: Sequence[Mapping[str, Any]], n_boot: int) -> dict[str, Any]:
    """``report.json``'s entry of one evaluation set."""
    return {
        "summary": summary_table(study, s),
        "baselines": baseline_means(study, s),
        "diffs": [
            compare(study, s, c, study.reference, m, n_boot=n_boot)
            for c in study.conditions
            if c != study.reference
            for m in PRIMARY
        ],
        "verdicts": [
            {k: v[k] for k in ("key", "title", "headline")}
            | {
                "pairs": [
                    {k: p[k] for k in ("a", "b", "outcome", "sentence")} for p in v["results"]
                ]
            }
            for v in vs
        ],
        "bands": {m: band_table(study, s, m) for m in PRIMARY},
    }


def resolve_n_boot(study: Study, n_boot: int | None = None) -> int:
    """``n_boot``, else the study's ``evaluation.n_boot``, else 2000."""
    return int(n_boot or study.meta.get("evaluation", {}).get("n_boot", DEFAULT_N_BOOT))


def build_report(
    study: Study, report_command: str = "", n_boot: int | None = None
) -> tuple[str, dict[str, Any]]:
    """``(REPORT.md text, report.json dict)``; figures are referenced by their file names."""
    n_boot = resolve_n_boot(study, n_boot)
    meta = study.meta
    lines = [
        "# Representation study: can an RGB spectrogram beat the raw one?",
        "",
        f"Generated by `dereverb.experiment.report` from `{study.folder}` (profile **{meta.get('profile')}**, config "
        f"`{meta.get('config_path')}`). Every number below is computed from the runs' `result.json` files; "
        "re-running the report command regenerates this file and the figures.",
        "",
        *_how_it_was_run(study, report_command),
        "",
        *_setup(study, n_boot),
        *_question(study, n_boot),
    ]
    data: dict[str, Any] = {
        "folder": str(study.folder),
        "runtime": runtime(study),
        "missing": study.missing(),
        "sets": {},
    }
    for s in study.eval_sets:
        vs = verdicts(study, s, n_boot=n_boot)
        data["sets"][s] = _set_data(study, s, vs, n_boot)
        lines += _results(study, s, vs, n_boot)
    lines += _bands(study) + _curves_and_spread(study)
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
