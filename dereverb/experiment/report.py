"""The study's ``REPORT.md`` (the answer, one headline figure, one table per evaluation set, the
method), ``report.json`` (every number behind it and more: the scores at every step, the
differences to the reference, the sessions) and ``headline.png``, from a study folder.

Every number comes from the runs' ``result.json`` files through :mod:`~dereverb.experiment.analysis`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dereverb.atomic import atomic_path, write_atomic
from dereverb.experiment.analysis import (
    BASES,
    PRIMARY,
    SECONDARY,
    SET_TITLES,
    Study,
    answer_family,
    baseline_means,
    differences,
    load_study,
    runtime,
    summary,
)
from dereverb.experiment.figures import fig_headline
from dereverb.experiment.files import write_json_atomic
from dereverb.signals.metrics import DIGITS, LABELS

TITLE = "# Representation study: can an RGB spectrogram beat the raw one?"
HEADLINE = "headline.png"


def _num(v: Any, metric: str, sign: bool = False) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    return f"{float(v):{'+' if sign else ''}.{DIGITS[metric]}f}"


def _diff(c: Mapping[str, Any] | None, metric: str) -> str:
    """``Δ [lo, hi]`` of one comparison."""
    if c is None:
        return "n/a"
    return f"{_num(c['delta'], metric, True)} [{_num(c['lo'], metric, True)}, {_num(c['hi'], metric, True)}]"


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _name(condition: str) -> str:
    return f"`{condition}`"


def _at(study: Study) -> str:
    return ", ".join(f"{cap} {study.steps(cap)[-1]} steps" for cap in study.capacities)


def answer(study: Study, families: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The title question in at most five sentences, from the answer's comparisons."""
    sets = [s for s in families if families[s]]
    if not sets:
        return ("Not answerable yet: the study has no colour-image condition together with the log magnitude, "
                "the grayscale image or the raw magnitude.")
    n = {s: {o: sum(c["outcome"] == o for c in families[s]) for o in ("better", "worse")} for s in sets}
    won = [c for s in sets for c in families[s] if c["outcome"] == "better"]
    counts = "; ".join(f"{SET_TITLES[s]}: {n[s]['better']} better, {n[s]['worse']} worse of {len(families[s])}" for s in sets)
    beaten = sorted({BASES[c["b"]] for c in won}, key=list(BASES.values()).index)
    lead = (f"Yes, but only against {' and '.join(beaten)}" if won else
            f"No: no colour-image input beat {', '.join(BASES.values()).replace(', the raw', ' or the raw')}")
    text = [
        f"**{lead}** on {LABELS[PRIMARY]}, the primary metric, after the most training ({_at(study)}) and a Holm "
        f"correction over the comparisons of each evaluation set ({counts})."
    ]
    decided = [c for s in sets for c in families[s] if c["outcome"] != "undecided"]
    if decided:
        text.append("Decided: " + "; ".join(
            f"{_name(c['a'])} {c['outcome']} than {_name(c['b'])} ({c['capacity']}, {SET_TITLES[c['eval_set']]}: "
            f"Δ {_diff(c, PRIMARY)}, Holm p {_p(c['p_holm'])})" for c in decided[:4]
        ) + (f" and {len(decided) - 4} more" if len(decided) > 4 else "") + ".")
    gains = [c for s in sets for c in families[s] if c["delta"] > 0 and c["p"] < study.alpha and c["outcome"] == "undecided"]
    if gains:
        top = max(gains, key=lambda c: c["delta"])
        text.append(
            f"{len(gains)} gain(s) reached p < {study.alpha:g} only before the correction, the largest "
            f"{_name(top['a'])} over {_name(top['b'])} ({top['capacity']}, {SET_TITLES[top['eval_set']]}: Δ "
            f"{_diff(top, PRIMARY)}, p {_p(top['p'])}, Holm p {_p(top['p_holm'])})."
        )
    text.append(f"{' and '.join(LABELS[m] for m in SECONDARY)} are secondary: shown beside it, uncorrected, they decide nothing.")
    return " ".join(text)


def _set_table(study: Study, eval_set: str, family: Sequence[Mapping[str, Any]]) -> list[str]:
    cap0 = study.capacities[0]
    step0 = study.steps(cap0)[-1]
    ref = next((r for r in summary(study, eval_set, cap0, step0) if r["condition"] == study.reference), None)
    base = baseline_means(study, eval_set)
    context = ", ".join(f"{n} {_num(m[PRIMARY], PRIMARY)}" for n, m in base.items())
    header = ["colour image − plain input", "capacity", f"Δ {LABELS[PRIMARY]} [95% CI]", "p", "Holm p", "outcome",
              *(f"Δ {LABELS[m]} [95% CI]" for m in SECONDARY)]
    rows = [[f"{_name(c['a'])} − {_name(c['b'])}", c["capacity"], _diff(c, PRIMARY), _p(c["p"]), _p(c["p_holm"]),
             f"**{c['outcome']}**" if c["outcome"] != "undecided" else c["outcome"],
             *(_diff(c["secondary"][m], m) for m in SECONDARY)] for c in family]
    lines = [f"## {SET_TITLES[eval_set].capitalize()}", ""]
    if ref is not None:
        lines += [f"{_name(study.reference)} ({cap0}, step {step0}) scores {LABELS[PRIMARY]} "
                  f"{_num(ref[PRIMARY]['mean'], PRIMARY)} [{_num(ref[PRIMARY]['lo'], PRIMARY)}, "
                  f"{_num(ref[PRIMARY]['hi'], PRIMARY)}]" + (f"; baselines: {context}" if context else "") + ".", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return lines


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def _method(study: Study, report_command: str, n_family: Mapping[str, int]) -> list[str]:
    meta = study.meta
    train, ev = meta.get("train", {}), meta.get("evaluation", {})
    data, model, trainer = train.get("data", {}), train.get("model", {}), train.get("trainer", {})
    rt = runtime(study)
    sessions = [s for s in meta.get("sessions", []) if s.get("command")]
    machine = next((s["machine"] for s in reversed(sessions) if s.get("machine")), {})
    caps = "; ".join(
        f"{cap} {', '.join(f'{k} {v}' for k, v in (meta.get('capacities') or {}).get(cap, {}).items())} "
        f"({v['parameters'][0]:,} parameters, {v['runs']} runs, {v['train_seconds_mean']:.0f} s training + "
        f"{v['eval_seconds_mean']:.0f} s evaluation per run)"
        for cap, v in rt["per_capacity"].items()
    )
    n_items = {s: max(len(r["rows"].get(s, [])) for r in study.results) for s in study.eval_sets}
    missing = study.missing()
    seeds = [len(study.runs(c, cap)) for c in study.conditions for cap in study.capacities if study.runs(c, cap)] or [0]
    return [
        "## Method",
        "",
        f"- Conditions: {len(study.conditions)} input representations x output domains (`arm@target`; target "
        "`same`: the network outputs an image in the arm's own representation), the same residual U-Net for "
        f"every arm (only its input / output channels differ), capacities {caps}.",
        f"- Data: speech `{data.get('speech')}` (speaker-disjoint splits), simulated shoebox rooms T60 "
        f"{(data.get('room') or {}).get('t60_range')} s (disjoint RIR banks {data.get('rir_bank_sizes')}), "
        f"{data.get('segment_seconds')}-s segments, batch {data.get('batch_size')}; the data seed is fixed, so every run "
        "sees the same items and the seed varies the initialisation only. The committed runs' items were built "
        "without the dry-speech pre-roll: their reverberant input holds no tail of the speech before the segment, "
        "which pairs built by today's data layer do; these results are kept as they were.",
        f"- Training: {model.get('loss', 'l1')} loss in the target domain, AdamW lr {model.get('lr')}, "
        f"{model.get('scheduler', 'cosine')} schedule over {trainer.get('max_steps')} steps; weights saved and scored "
        f"after steps {', '.join(map(str, study.steps()))} (the curves in notebook 02 and report.json).",
        "- Evaluation: the full inverse path (Griffin-Lim phase) on "
        + ", ".join(f"{n_items[s]} {SET_TITLES[s]} items" for s in study.eval_sets)
        + f" ({ev.get('segment_seconds') or data.get('segment_seconds')} s each); baselines {ev.get('baselines')}.",
        f"- Statistics: one primary metric, {LABELS[PRIMARY]}; the answer's family is every colour-image condition "
        f"minus each of {', '.join(f'`{b}`' for b in BASES)} at each capacity's last step "
        f"({', '.join(f'{n} on {SET_TITLES[s]}' for s, n in n_family.items())}). A difference is tested on the items "
        "(each item's score averaged over seeds, paired t) and on the seeds (Welch on the per-seed means); its p is "
        "the larger of the two, its interval the hull of the two 95 % intervals (uncorrected). Holm's correction over "
        f"the family (per evaluation set) at α = {study.alpha:g} decides **better** / **worse**; otherwise "
        f"**undecided** (not \"equal\"). {' and '.join(LABELS[m] for m in SECONDARY)} are secondary and decide nothing. "
        "This rule is fixed for the runs to come; the committed runs were made before it, when a comparison counted "
        "as better if any of three metrics said so, uncorrected.",
        f"- Runs: {len(study.results)} finished of {len(study.planned())} planned"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f"; {_hms(rt['wall_seconds'])} wall over {rt['sessions']} session(s), {rt['cpu_seconds'] / 60:.0f} CPU-min, on a "
        f"{machine.get('cpu_count')}-core CPU, {machine.get('gpu') or 'no GPU'} ({meta.get('jobs')} run(s) at a time "
        f"x {meta.get('threads')} thread(s)).",
        *(f"- Session: `{s['command']}` ({s.get('id')}, {_hms(s.get('wall_seconds', 0.0))}, "
          f"{len(s.get('trained', []))} trained, {len(s.get('skipped', []))} reused, {len(s.get('failed') or {})} failed)"
          for s in sessions),
        f"- This report: `{report_command or 'python -m dereverb.study --report-only'}`, from `{study.folder}`; "
        "every number and more (each condition at every step, differences to the reference, secondary metrics) "
        "in `report.json`, drawn by `notebooks/02_study_results.ipynb`.",
        "- Limits: networks trained from scratch (no ImageNet-pretrained encoder: the classic argument for RGB "
        "input is transfer from image networks) for a short budget, not to convergence, so the answer holds for this "
        "budget; the scores at earlier steps are checkpoints along one cosine schedule; "
        f"{min(seeds)}{f' to {max(seeds)}' if max(seeds) > min(seeds) else ''} seeds per condition and capacity.",
        "",
    ]


def build_report(study: Study, report_command: str = "") -> tuple[str, dict[str, Any]]:
    """``(REPORT.md text, report.json dict)``; the headline figure is referenced by its file name."""
    families = {s: answer_family(study, s) for s in study.eval_sets}
    text = answer(study, families)
    lines = [
        TITLE,
        "",
        "## The answer",
        "",
        text,
        "",
        f"![the answer's comparisons]({HEADLINE})",
        "",
    ]
    for s in study.eval_sets:
        lines += _set_table(study, s, families[s])
    lines += _method(study, report_command, {s: len(f) for s, f in families.items()})
    data = {
        "question": TITLE.removeprefix("# "),
        "answer": text,
        "primary_metric": PRIMARY,
        "secondary_metrics": list(SECONDARY),
        "alpha": study.alpha,
        "correction": "holm, over the answer's family per evaluation set",
        "folder": str(study.folder),
        "reference": study.reference,
        "conditions": study.conditions,
        "capacities": {c: (study.meta.get("capacities") or {}).get(c) for c in study.capacities},
        "steps": {c: study.steps(c) for c in study.capacities},
        "runs": len(study.results),
        "missing": study.missing(),
        "runtime": runtime(study),
        "sessions": study.meta.get("sessions", []),
        "sets": {
            s: {
                "family": families[s],
                "baselines": baseline_means(study, s),
                "summary": {cap: {str(st): summary(study, s, cap, st) for st in study.steps(cap)} for cap in study.capacities},
                "differences": differences(study, s),
            }
            for s in study.eval_sets
        },
    }
    return "\n".join(lines), data


def write_report(folder: str | os.PathLike, report_dir: str | os.PathLike | None = None, report_command: str = "") -> Path:
    """Write ``REPORT.md``, ``report.json`` and ``headline.png`` into ``report_dir`` (default
    ``<folder>/report``), each atomically; returns the REPORT.md path."""
    study = load_study(folder)
    out = Path(report_dir) if report_dir is not None else Path(folder) / "report"
    out.mkdir(parents=True, exist_ok=True)
    text, data = build_report(study, report_command)
    with atomic_path(out / HEADLINE, suffix=".tmp.png") as tmp:
        fig_headline({s: v["family"] for s, v in data["sets"].items()}).savefig(tmp, dpi=100)
    write_json_atomic(out / "report.json", data)
    return write_atomic(out / "REPORT.md", text + "\n")
