"""The study's answers, computed from the numbers.

Every comparison is judged by :func:`dereverb.experiment.analysis.compare` (or its
step / capacity change variants) as ``better``, ``worse``, ``equivalent`` (within ``±margin``)
or ``inconclusive``, and cites its interval (:func:`cite`).

- :func:`mechanisms` / :func:`verdicts`: each mechanism the study tests states a prediction
  and a few *claims*; a claim is one comparison (a difference at one capacity and training
  length, or the change of a difference with training or with capacity) with the outcomes that
  support it and those that contradict it. Claims are judged per metric; a mechanism is
  ``supported`` when all its testable claims hold, ``contradicted`` when some are contradicted
  and none holds, ``partly supported`` / ``mixed`` / ``inconclusive`` in between.
- :func:`answer`: the title question (does a colour image ever beat the log magnitude, the
  grayscale image or the raw magnitude?) over every capacity and training length, as one
  paragraph.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dereverb.experiment.analysis import (
    PRIMARY,
    SET_TITLES,
    Study,
    change_with_capacity,
    change_with_steps,
    combine,
    compare,
)
from dereverb.experiment.tables import fmt, fmt_signed, pairs_markdown
from dereverb.signals.metrics import LABELS

LM = "log_magnitude"
#: The fixed 1 -> 3 channel colour expansions (colormaps).
FIXED_RGB: tuple[str, ...] = ("gray_rgb", "rgb_turbo", "rgb_viridis", "rgb_jet")
#: The inputs a colour image is measured against in :func:`answer` (target log_magnitude).
BASES: tuple[tuple[str, str], ...] = (
    (f"log_magnitude@{LM}", "the log magnitude"),
    (f"grayscale@{LM}", "the grayscale image"),
    (f"magnitude@{LM}", "the raw magnitude"),
)


def _cond(arm: str, target: str = LM) -> str:
    return f"{arm}@{target}"


# ============================================================================ citing one comparison
def cite(c: Mapping[str, Any]) -> str:
    """One comparison's outcome with the interval that decided it, e.g. ``PESQ-WB +0.012
    (90 % CI -0.021, +0.040 inside ±0.05; TOST p 0.012): equivalent within ±0.05``."""
    m = c["metric"]
    label = LABELS.get(m, m)
    conf = round(100 * (1 - c["alpha"]))
    conf2 = round(100 * (1 - 2 * c["alpha"]))
    d = fmt_signed(c["delta"], m)
    ci95 = f"{conf} % CI {fmt_signed(c['lo95'], m)}, {fmt_signed(c['hi95'], m)}"
    margin = f"±{_margin(c)}"
    o = c["outcome"]
    if o == "equivalent":
        extra = "; a difference is detected, smaller than the margin" if c.get("detected") else ""
        return (
            f"{label} {d} ({conf2} % CI {fmt_signed(c['lo90'], m)}, {fmt_signed(c['hi90'], m)} inside "
            f"{margin}; TOST p {_p(c['p_tost'])}{extra}): equivalent within {margin}"
        )
    if o in ("better", "worse"):
        return f"{label} {d} ({ci95}): {o}"
    if not math.isfinite(c["lo95"]):
        return f"{label} {d} (no interval: fewer than 2 seeds or items): inconclusive"
    eq = (
        f"; {conf2} % CI {fmt_signed(c['lo90'], m)}, {fmt_signed(c['hi90'], m)} not inside {margin}"
        if math.isfinite(c.get("lo90", math.nan))
        else ""
    )
    return f"{label} {d} ({ci95}{eq}): inconclusive"


def _margin(c: Mapping[str, Any]) -> str:
    return fmt(c["margin"], c["metric"]).rstrip("0").rstrip(".") or "0"


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def pair_outcomes(
    study: Study, eval_set: str, a: str, b: str, capacity: str, step: int, n_boot: int
) -> dict[str, Any] | None:
    """``a`` vs ``b`` at ``capacity`` and ``step`` on the primary metrics: ``{a, b, capacity,
    step, comparisons, outcome}`` (None when either has no runs there)."""
    view = study.view(capacity, step)
    comps = [compare(view, eval_set, a, b, m, n_boot=n_boot) for m in PRIMARY]
    comps = [c for c in comps if c is not None]
    if not comps:
        return None
    return {
        "a": a,
        "b": b,
        "capacity": capacity,
        "step": step,
        "comparisons": comps,
        "outcome": combine([c["outcome"] for c in comps]),
    }


# ============================================================================ mechanisms
@dataclass(frozen=True)
class Claim:
    """One testable consequence of a mechanism.

    ``kind``: ``diff`` (``a - b`` at ``capacity`` and ``step``), ``steps`` (how ``a - b``
    changes from the first to the last step at ``capacity``) or ``capacity`` (how ``a - b``
    changes from the first to the last capacity at ``step``). ``capacity`` / ``step``:
    ``first`` or ``last`` (of the study's, in order). ``expect``: outcomes that support the
    claim; ``contra``: outcomes that contradict it (others leave it open)."""

    text: str
    kind: str
    a: str
    b: str
    expect: tuple[str, ...]
    contra: tuple[str, ...]
    capacity: str = "first"
    step: str = "last"


@dataclass(frozen=True)
class Mechanism:
    """A mechanism the study tests: ``key`` (a letter, as in the first study's report),
    ``name``, ``title``, its ``prediction`` and ``test`` in words, its :class:`Claim` s and the
    ``pairs`` of conditions tabled for it."""

    key: str
    name: str
    title: str
    prediction: str
    test: str
    claims: tuple[Claim, ...]
    #: Comparisons tabled for the mechanism (at each capacity's last step).
    pairs: tuple[tuple[str, str], ...]


def _mechanisms() -> tuple[Mechanism, ...]:
    turbo, gray, grgb = _cond("rgb_turbo"), _cond("grayscale"), _cond("gray_rgb")
    log, mag, jpeg = _cond("log_magnitude"), _cond("magnitude"), _cond("rgb_turbo_jpeg")
    return (
        Mechanism(
            "a",
            "scaling",
            "Hidden preprocessing: the raw magnitude is badly scaled",
            "The raw magnitude spans ~80 dB in one linear channel, so the network sees little "
            "but the loudest bins; the log magnitude and the grayscale image (dB in [0, 1]) "
            "compress it. magnitude should fall behind, and magnitude, log_magnitude and "
            "grayscale should separate more with training (the compressed inputs keep improving "
            "where the raw one stalls).",
            "`magnitude` − `log_magnitude` at the last step; the change with training of "
            "`magnitude` − `log_magnitude`, `magnitude` − `grayscale` and `grayscale` − "
            "`log_magnitude` (tiny network).",
            (
                Claim("magnitude is worse than log_magnitude after the most steps", "diff",
                      mag, log, ("worse",), ("better", "equivalent")),
                Claim("the magnitude - log_magnitude gap grows with training", "steps",
                      mag, log, ("worse",), ("better",)),
                Claim("the magnitude - grayscale gap grows with training", "steps",
                      mag, gray, ("worse",), ("better",)),
                Claim("grayscale and log_magnitude separate with training", "steps",
                      gray, log, ("worse", "better"), ("equivalent",)),
            ),
            ((mag, log), (gray, log), (mag, gray)),
        ),
        Mechanism(
            "b",
            "colormap",
            "Colormap as a free extra layer",
            "A colormap is a fixed, non-linear 1 -> 3 channel expansion of the grayscale image: a "
            "free extra layer. It should help the small network early in training, and matter "
            "less with training and with a larger network, which can learn such a layer itself.",
            "`rgb_turbo` − `grayscale` (target log_magnitude) at the tiny network after the "
            "fewest steps; the change of that difference from the fewest to the most steps; its "
            "change from the tiny to the large network (after the fewest steps). `gray_rgb` (R = G "
            "= B) separates three channels from colour.",
            (
                Claim("turbo beats grayscale for the tiny net after the fewest steps", "diff",
                      turbo, gray, ("better",), ("worse", "equivalent"), "first", "first"),
                Claim("the difference shrinks with training (tiny net)", "steps",
                      turbo, gray, ("worse",), ("better",), "first"),
                Claim("the difference is smaller for the large net (fewest steps)", "capacity",
                      turbo, gray, ("worse",), ("better",), step="first"),
            ),
            (
                (turbo, gray),
                (grgb, gray),
                (turbo, grgb),
                (_cond("rgb_viridis"), gray),
                (_cond("rgb_jet"), gray),
                (_cond("grayscale_learned_expansion"), gray),
            ),
        ),
        Mechanism(
            "c",
            "output",
            "RGB output (target same): a colour must be decoded back to a level",
            "Decoding a predicted colour back to a level needs the right colour: an RGB error "
            "lands on a wrong level, far away for long-arc maps such as turbo. Predicting the "
            "image should cost against predicting the log magnitude from the same input.",
            "`rgb_turbo@same` − `rgb_turbo@log_magnitude`, `gray_rgb@same` − "
            "`gray_rgb@log_magnitude` and `rgb_turbo@same` − `gray_rgb@same` at the last step.",
            (
                Claim("turbo as the output costs", "diff", _cond("rgb_turbo", "same"), turbo,
                      ("worse",), ("better", "equivalent")),
                Claim("gray_rgb as the output costs", "diff", _cond("gray_rgb", "same"), grgb,
                      ("worse",), ("better", "equivalent")),
                Claim("the long-arc turbo output is worse than the gray one", "diff",
                      _cond("rgb_turbo", "same"), _cond("gray_rgb", "same"),
                      ("worse",), ("better", "equivalent")),
            ),
            (
                (_cond("rgb_turbo", "same"), turbo),
                (_cond("gray_rgb", "same"), grgb),
                (_cond("rgb_turbo", "same"), _cond("gray_rgb", "same")),
                (_cond("rgb_viridis", "same"), _cond("rgb_viridis")),
                (_cond("rgb_jet", "same"), _cond("rgb_jet")),
            ),
        ),
        Mechanism(
            "d",
            "compression",
            "Lossy saving (JPEG) loses what no network can recover",
            "Saving the image as a JPEG (quality 75, 4:2:0 chroma) throws away detail before the "
            "network sees it. Its cost should stay or grow with training: a better-trained "
            "network would have used the lost detail.",
            "`rgb_turbo_jpeg` − `rgb_turbo` (target log_magnitude) at the last step, and the "
            "change of that difference from the fewest to the most steps (tiny network).",
            (
                Claim("JPEG costs after the most steps", "diff",
                      jpeg, turbo, ("worse",), ("better", "equivalent")),
                Claim("the cost does not shrink with training", "steps",
                      jpeg, turbo, ("worse", "equivalent"), ("better",)),
            ),
            (
                (jpeg, turbo),
                (_cond("rgb_turbo_jpeg", "same"), _cond("rgb_turbo", "same")),
                (_cond("rgb_turbo_resized"), turbo),
            ),
        ),
        Mechanism(
            "e",
            "learned",
            "Learned frontends vs fixed ones",
            "A frontend trained with the network (a per-band compression exponent; per-band "
            "PCEN) can adapt its scaling to the task, so it should match or beat the fixed log "
            "magnitude, the more so with training (its parameters need steps to move).",
            "`learned_power` and `learned_pcen` − `log_magnitude` at the last step, and the "
            "change of those differences with training (tiny network).",
            (
                Claim("learned_power matches or beats log_magnitude after the most steps", "diff",
                      _cond("learned_power"), log, ("better", "equivalent"), ("worse",)),
                Claim("learned_pcen matches or beats log_magnitude after the most steps", "diff",
                      _cond("learned_pcen"), log, ("better", "equivalent"), ("worse",)),
                Claim("learned_power gains on log_magnitude with training", "steps",
                      _cond("learned_power"), log, ("better",), ("worse",)),
                Claim("learned_pcen gains on log_magnitude with training", "steps",
                      _cond("learned_pcen"), log, ("better",), ("worse",)),
            ),
            (
                (_cond("learned_power"), log),
                (_cond("learned_pcen"), log),
                (_cond("learned_power"), mag),
                (_cond("learned_pcen"), _cond("learned_power")),
                (_cond("stacked"), log),
            ),
        ),
    )


MECHANISMS: tuple[Mechanism, ...] = _mechanisms()


def _pick(options: Sequence[Any], which: str) -> Any:
    if not options:
        return None
    return options[0] if which == "first" else options[-1] if which == "last" else which


def _capacities_with(study: Study, conds: Sequence[str]) -> list[str]:
    """Capacities at which every one of ``conds`` has runs."""
    return [
        cap
        for cap in study.capacities
        if all(any(r["condition"] == c and r["capacity"] == cap for r in study.results) for c in conds)
    ]


def judge_claim(study: Study, eval_set: str, claim: Claim, n_boot: int = 2000) -> dict[str, Any]:
    """``{claim, where, comparisons, status, reason}``: the claim's comparison per primary
    metric, each ``holds`` / ``contradicted`` / ``open``, and the claim's ``status``:
    ``holds``, ``contradicted``, ``mixed``, ``open`` (no metric decides) or ``untested``."""
    caps = _capacities_with(study, (claim.a, claim.b))
    out: dict[str, Any] = {"claim": claim.text, "kind": claim.kind, "a": claim.a, "b": claim.b,
                           "expect": list(claim.expect), "contra": list(claim.contra)}
    comps: list[dict[str, Any]] = []
    if claim.kind == "capacity":
        if len(caps) < 2:
            return {**out, "status": "untested", "reason": "needs both conditions at two capacities",
                    "comparisons": []}
        pair = (caps[0], caps[-1])
        step = _pick(sorted(set(study.steps(pair[0])) & set(study.steps(pair[1]))), claim.step)
        out["where"] = f"{pair[0]} -> {pair[1]}" + (f", step {step}" if step is not None else "")
        for m in PRIMARY:
            c = change_with_capacity(study, eval_set, claim.a, claim.b, m, pair, step, n_boot=n_boot)
            if c is not None:
                comps.append(c)
    else:
        cap = _pick(caps, claim.capacity) if claim.capacity in ("first", "last") else claim.capacity
        if cap is None or cap not in caps:
            return {**out, "status": "untested", "reason": "conditions without runs", "comparisons": []}
        steps = study.steps(cap)
        if claim.kind == "steps":
            if len(steps) < 2:
                return {**out, "status": "untested", "reason": "one training length only",
                        "comparisons": []}
            out["where"] = f"{cap}, step {steps[0]} -> {steps[-1]}"
            for m in PRIMARY:
                c = change_with_steps(study, eval_set, claim.a, claim.b, m, cap, (steps[0], steps[-1]),
                                      n_boot=n_boot)
                if c is not None:
                    comps.append(c)
        else:
            step = _pick(steps, claim.step)
            out["where"] = f"{cap}, step {step}"
            view = study.view(cap, step)
            comps = [c for m in PRIMARY if (c := compare(view, eval_set, claim.a, claim.b, m, n_boot=n_boot))]
    if not comps:
        return {**out, "status": "untested", "reason": "no scores on this set", "comparisons": []}
    for c in comps:
        c["status"] = (
            "holds" if c["outcome"] in claim.expect else "contradicted" if c["outcome"] in claim.contra else "open"
        )
    st = [c["status"] for c in comps]
    status = (
        "mixed" if "holds" in st and "contradicted" in st
        else "holds" if "holds" in st
        else "contradicted" if "contradicted" in st
        else "open"
    )
    return {**out, "comparisons": comps, "status": status, "reason": ""}


def mechanism_verdict(claims: Sequence[Mapping[str, Any]]) -> str:
    """One word for a mechanism from its judged claims: ``supported`` (every claim holds),
    ``mixed`` (evidence both ways: a ``mixed`` claim is both), ``partly supported`` (some hold,
    the rest open), ``contradicted`` (evidence against only), else ``inconclusive``."""
    st = [c["status"] for c in claims if c["status"] != "untested"]
    if not st:
        return "untested"
    holds = st.count("holds")
    pro = holds + st.count("mixed")
    contra = st.count("contradicted") + st.count("mixed")
    if holds == len(st):
        return "supported"
    if pro and contra:
        return "mixed"
    if pro:
        return "partly supported"
    if contra:
        return "contradicted"
    return "inconclusive"


def mechanisms(study: Study) -> list[Mechanism]:
    """The mechanisms with at least one pair of conditions the study has (at some capacity)."""
    have = set(study.conditions)
    return [m for m in MECHANISMS if any(a in have and b in have for a, b in m.pairs)]


def _testable(study: Study, mech: Mechanism) -> bool:
    have = set(study.conditions)
    return any(a in have and b in have for a, b in mech.pairs)


def verdicts(study: Study, eval_set: str, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per mechanism (all of :data:`MECHANISMS`; ``untested`` when the study lacks its
    conditions): ``key, name, title, prediction, test``, its judged ``claims``
    (:func:`judge_claim`), its ``verdict`` word and the ``pairs`` tabled for it at each
    capacity's last step (:func:`pair_outcomes`)."""
    out = []
    for mech in MECHANISMS:
        if not _testable(study, mech):
            out.append(
                {"key": mech.key, "name": mech.name, "title": mech.title, "prediction": mech.prediction,
                 "test": mech.test, "eval_set": eval_set, "claims": [], "verdict": "untested",
                 "pairs": []}
            )
            continue
        claims = [judge_claim(study, eval_set, c, n_boot) for c in mech.claims]
        pairs = []
        for cap in study.capacities:
            steps = study.steps(cap)
            for a, b in mech.pairs:
                p = pair_outcomes(study, eval_set, a, b, cap, steps[-1], n_boot) if steps else None
                if p is not None:
                    pairs.append(p)
        out.append(
            {
                "key": mech.key,
                "name": mech.name,
                "title": mech.title,
                "prediction": mech.prediction,
                "test": mech.test,
                "eval_set": eval_set,
                "claims": claims,
                "verdict": mechanism_verdict(claims),
                "pairs": pairs,
            }
        )
    return out


def mechanism_markdown(by_set: Mapping[str, Mapping[str, Any]], heading: str = "###") -> str:
    """One mechanism (its :func:`verdicts` entry per evaluation set): heading, prediction,
    test, the verdict and judged claims per set, and its comparisons at each capacity's last
    step (first set)."""
    sets = list(by_set)
    v0 = by_set[sets[0]]
    lines = [f"{heading} ({v0['key']}) {v0['title']}", ""]
    if v0["verdict"] == "untested" and not v0["claims"]:
        return "\n".join(lines + ["Untested: the study has none of its pairs of conditions.", ""])
    lines += [f"**Prediction.** {v0['prediction']}", "", f"**Test.** {v0['test']}", ""]
    for s in sets:
        v = by_set[s]
        lines += [f"**Verdict ({SET_TITLES.get(s, s)}): {v['verdict']}.**", ""]
        lines += [f"- {claim_sentence(j)}" for j in v["claims"]] + [""]
    if v0["pairs"]:
        lines += [
            f"Its comparisons at each capacity's last step ({SET_TITLES.get(sets[0], sets[0])}; "
            "▲ better, ▼ worse, ≈ equivalent, ? inconclusive):",
            "",
            pairs_markdown(v0["pairs"]),
            "",
        ]
    return "\n".join(lines)


def verdict_markdown(vs: Sequence[Mapping[str, Any]], heading: str = "###") -> str:
    """Every mechanism of one evaluation set's :func:`verdicts` as Markdown."""
    return "\n".join(mechanism_markdown({v["eval_set"]: v}, heading) for v in vs)


def claim_sentence(j: Mapping[str, Any]) -> str:
    """``<claim> (<where>): <status> — <metric citations>``."""
    if j["status"] == "untested":
        return f"{j['claim']}: untested ({j['reason']})"
    cites = "; ".join(cite(c) for c in j["comparisons"])
    return f"{j['claim']} ({j['where']}): **{j['status']}** — {cites}"


# ============================================================================ the title question
def rgb_conditions(study: Study) -> list[str]:
    """Conditions whose input is a colour image (colormap, or an image codec on a colormap)."""
    arms = study.meta.get("arms", {})
    out = []
    for c in study.conditions:
        spec = arms.get(c.split("@")[0], {})
        rep, kw = spec.get("representation"), spec.get("representation_kwargs") or {}
        if rep == "colormap" or (rep == "image_codec" and kw.get("base") == "colormap"):
            out.append(c)
    return out


def question_table(study: Study, eval_set: str, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Every colour-image condition against each of :data:`BASES` at every capacity and
    evaluated step: :func:`pair_outcomes` dicts (with ``base``)."""
    rows = []
    for base, _ in BASES:
        for c in rgb_conditions(study):
            for cap in study.capacities:
                for st in study.steps(cap):
                    p = pair_outcomes(study, eval_set, c, base, cap, st, n_boot)
                    if p is not None:
                        rows.append({**p, "base": base})
    return rows


def _count(rows: Sequence[Mapping[str, Any]]) -> str:
    words = ("better", "worse", "mixed", "equivalent", "inconclusive")
    n = {w: sum(r["outcome"] == w for r in rows) for w in words}
    return ", ".join(f"{n[w]} {w}" for w in words if n[w] or w in ("better", "equivalent"))


def _yes_lead(final_rows: Sequence[Mapping[str, Any]], n_better: int, n_rows: int, at: str) -> str:
    """The answer's lead when some colour image beat a plain input after the most training:
    which plain inputs it beat and which it did not, since "beat the raw array" and "beat the
    log magnitude" are different answers."""
    tally = {base: Counter(r["outcome"] for r in final_rows if r["base"] == base) for base, _ in BASES}
    won = [(base, label) for base, label in BASES if tally[base]["better"]]
    lost = [(base, label) for base, label in BASES if tally[base] and not tally[base]["better"]]
    beaten = " and ".join(f"{label} ({tally[b]['better']} of {tally[b].total()} comparisons)" for b, label in won)
    lead = f"yes, after the most training ({at}), a colour image beat {beaten}"
    if lost:
        n = sum(tally[b].total() for b, _ in lost)
        worse = sum(tally[b]["worse"] for b, _ in lost)
        equiv = sum(tally[b]["equivalent"] for b, _ in lost)
        labels = " or ".join(label for _, label in lost)
        lead += f", but never {labels} (0 of {n} comparisons better, {worse} worse, {equiv} equivalent)"
    lead += f"; at any length {n_better} of {n_rows} comparisons were better"
    if {b for b, _ in won} == {f"magnitude@{LM}"} and f"log_magnitude@{LM}" in {b for b, _ in lost}:
        lead += (
            ". What the image has over the raw array is the dB scale it is drawn in, which the log "
            "magnitude has too (mechanism a)"
        )
    return lead


def answer(
    study: Study,
    eval_set: str,
    n_boot: int = 2000,
    vs: Sequence[Mapping[str, Any]] | None = None,
    brief: bool = False,
) -> str:
    """The title question in one paragraph, from the numbers: whether any colour-image
    condition beat a plain input (:data:`BASES`), after the most training and at any
    capacity and length; the counts per base input (a condition counts as better when it is
    better on at least one of the primary metrics and worse on none), the better cases with
    their intervals, and the mechanisms' verdicts (``vs``: :func:`verdicts`, computed if
    None). ``brief``: without the definitions and the mechanisms (a second evaluation set)."""
    rows = question_table(study, eval_set, n_boot)
    metrics = ", ".join(LABELS[m] for m in PRIMARY)
    title = SET_TITLES.get(eval_set, eval_set)
    if not rows:
        return (
            f"**{title.capitalize()}:** not answerable yet: the study has no colour-image condition "
            "together with log_magnitude, grayscale or magnitude (target log_magnitude)."
        )
    last = {cap: (study.steps(cap) or [-1])[-1] for cap in study.capacities}
    final_rows = [r for r in rows if r["step"] == last[r["capacity"]]]
    better = [r for r in rows if r["outcome"] == "better"]
    better_final = [r for r in final_rows if r["outcome"] == "better"]
    at = ", ".join(f"{cap} {st} steps" for cap, st in last.items())
    if not better and all(r["outcome"] == "inconclusive" for r in rows):
        lead = (
            f"not decided yet: none of the {len(rows)} comparisons of a colour-image input with the log "
            f"magnitude, the grayscale image or the raw magnitude is conclusive (too few seeds or items "
            f"so far)"
        )
    elif not better:
        lead = (
            f"no colour-image input beat the log magnitude, the grayscale image or the raw magnitude, "
            f"at any capacity or training length ({len(rows)} comparisons)"
        )
    elif not better_final:
        lead = (
            f"a colour image beat a plain input only before the most training: in {len(better)} of "
            f"{len(rows)} comparisons, none of them after {at}"
        )
    else:
        lead = _yes_lead(final_rows, len(better), len(rows), at)
    parts = []
    for base, label in BASES:
        mine = [r for r in rows if r["base"] == base]
        if mine:
            final = [r for r in mine if r["step"] == last[r["capacity"]]]
            parts.append(
                f"against {label} (`{base}`), after the most training: {_count(final)}; "
                f"at any length: {_count(mine)}"
            )
    counts = ". ".join(p[:1].upper() + p[1:] for p in parts)
    text = f"**{title.capitalize()}: {lead}.** " + counts + "."
    if better:
        shown = "; ".join(
            f"`{r['a']}` vs `{r['b']}` ({r['capacity']}, {r['step']} steps, "
            + next(cite(c) for c in r["comparisons"] if c["outcome"] == "better")
            + ")"
            for r in (better_final or better)[:4]
        )
        more = len(better) - min(4, len(better_final or better))
        text += f" Better: {shown}" + (f" (and {more} more in report.json)." if more else ".")
    if brief:
        return text
    vs = verdicts(study, eval_set, n_boot) if vs is None else vs
    mech = "; ".join(f"({v['key']}) {v['name']}: {v['verdict']}" for v in vs if v["verdict"] != "untested")
    return (
        text
        + (f" Mechanisms — {mech}." if mech else "")
        + f" (A comparison is one colour-image condition against one plain input at one capacity "
        f"and training length on {metrics}: better / worse when the 95 % intervals over items and "
        "over seeds exclude 0 on at least one metric and none goes the other way, equivalent when "
        "all three lie within their margins by TOST, otherwise inconclusive.)"
    )
