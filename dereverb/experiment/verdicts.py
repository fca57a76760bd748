"""The study's answers, computed from the numbers: the four mechanism questions and the title
question (does a colour image beat the raw magnitude?), each comparison judged "beyond seed
noise" or not by :func:`dereverb.experiment.analysis.compare`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dereverb.experiment.analysis import PRIMARY, Study, compare
from dereverb.experiment.tables import fmt_signed
from dereverb.signals.metrics import LABELS

LM = "log_magnitude"
#: The fixed 1 -> 3 channel colour expansions (colormaps).
FIXED_RGB: tuple[str, ...] = ("gray_rgb", "rgb_turbo", "rgb_viridis", "rgb_jet")


def _cond(arm: str, target: str) -> str:
    return f"{arm}@{target}"


def _mechanism_pairs() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """``(key, title, [(a, b), ...])`` of the four mechanism questions."""
    fixed = FIXED_RGB
    return [
        (
            "a",
            "Hidden preprocessing: magnitude vs log_magnitude vs grayscale (target log_magnitude)",
            [
                (_cond("magnitude", LM), _cond("log_magnitude", LM)),
                (_cond("grayscale", LM), _cond("log_magnitude", LM)),
                (_cond("magnitude", LM), _cond("grayscale", LM)),
            ],
        ),
        (
            "b",
            "Fixed 1->3 expansion vs learned 1x1 (target log_magnitude)",
            [(_cond(f, LM), _cond("grayscale", LM)) for f in fixed]
            + [(_cond("grayscale_learned_expansion", LM), _cond("grayscale", LM))]
            + [(_cond(f, LM), _cond("grayscale_learned_expansion", LM)) for f in fixed]
            + [(_cond(f, LM), _cond("gray_rgb", LM)) for f in fixed[1:]],
        ),
        (
            "c",
            "RGB output (target same): long-arc colormaps (jet, turbo) vs gray / viridis",
            [
                (_cond(x, "same"), _cond(y, "same"))
                for x in ("rgb_jet", "rgb_turbo")
                for y in ("gray_rgb", "rgb_viridis")
            ]
            + [(_cond(x, "same"), _cond(x, LM)) for x in fixed],
        ),
        (
            "d",
            "Lossy saving: JPEG q75 and 128x128 resize vs lossless turbo",
            [
                (_cond(x, t), _cond("rgb_turbo", t))
                for t in (LM, "same")
                for x in ("rgb_turbo_jpeg", "rgb_turbo_resized")
            ],
        ),
    ]


def mechanisms(study: Study) -> list[dict[str, Any]]:
    """The four mechanism questions as lists of (a, b) comparisons (only conditions the study has)."""
    have = set(study.conditions)
    out = []
    for key, title, pairs in _mechanism_pairs():
        kept = [(a, b) for a, b in pairs if a in have and b in have]
        out.append(
            {
                "key": key,
                "title": title,
                "pairs": kept,
                "missing": [(a, b) for a, b in pairs if (a, b) not in kept],
            }
        )
    return out


def _deltas(comps: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{LABELS[c['metric']]} {fmt_signed(c['delta'], c['metric'])}" for c in comps)


def _describe(comps: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(outcome word, sentence) for one pair's comparisons over the primary metrics."""
    better = [c for c in comps if c["beyond_noise"] and c["delta"] > 0]
    worse = [c for c in comps if c["beyond_noise"] and c["delta"] < 0]
    a, b = comps[0]["a"], comps[0]["b"]
    if all(c["beyond_noise"] is None for c in comps):
        return "unknown", f"`{a}` vs `{b}`: seed noise unknown (fewer than 2 seeds)"

    def listed(cs: Sequence[Mapping[str, Any]]) -> str:
        return ", ".join(
            f"{LABELS[c['metric']]} ({fmt_signed(c['delta'], c['metric'])})" for c in cs
        )

    parts = ([f"better on {listed(better)}"] if better else []) + (
        [f"worse on {listed(worse)}"] if worse else []
    )
    if not parts:
        return "none", f"`{a}` vs `{b}`: no difference beyond seed noise"
    word = "better" if better and not worse else "worse" if worse and not better else "mixed"
    return word, f"`{a}` is {' and '.join(parts)} than `{b}` beyond seed noise"


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


def _primary(study: Study, eval_set: str, a: str, b: str, n_boot: int) -> list[dict[str, Any]]:
    comps = [compare(study, eval_set, a, b, m, n_boot=n_boot) for m in PRIMARY]
    return [c for c in comps if c is not None]


def answer(study: Study, eval_set: str, n_boot: int = 2000) -> list[str]:
    """The title question in numbers: which colour-image conditions beat the raw magnitude and
    the reference beyond seed noise (any primary metric), and which are worse."""
    lines = []
    rgb = rgb_conditions(study)
    for base, label in (
        ("magnitude@log_magnitude", "the raw magnitude array"),
        (study.reference, "the reference"),
    ):
        if base not in study.conditions or not rgb:
            continue
        better, worse, tied = [], [], []
        for c in rgb:
            comps = _primary(study, eval_set, c, base, n_boot)
            up = [x for x in comps if x["beyond_noise"] and x["delta"] > 0]
            down = [x for x in comps if x["beyond_noise"] and x["delta"] < 0]
            if up:
                better.append(f"`{c}` ({_deltas(up)})")
            if down:
                worse.append(f"`{c}` ({_deltas(down)})")
            if not up and not down:
                tied.append(f"`{c}`")
        lines.append(
            f"- vs `{base}` ({label}): {len(better)} of {len(rgb)} colour-image conditions better beyond seed "
            f"noise on at least one of {', '.join(LABELS[m] for m in PRIMARY)}"
            + (f": {'; '.join(better)}" if better else "")
            + f"; {len(worse)} worse"
            + (f": {'; '.join(worse)}" if worse else "")
            + f"; {len(tied)} within noise"
            + (f": {', '.join(tied)}" if tied else "")
            + "."
        )
    return lines


def _headline(pairs: Sequence[Mapping[str, Any]]) -> str:
    beyond = [p for p in pairs if p["outcome"] in ("better", "worse", "mixed")]
    if not pairs:
        return "not tested: the conditions it needs have no finished runs"
    if all(p["outcome"] == "unknown" for p in pairs):
        return "undecided: fewer than 2 seeds, so seed noise is unknown"
    if not beyond:
        return (
            f"no effect detected: none of the {len(pairs)} comparisons differs beyond seed noise "
            f"on {', '.join(LABELS[m] for m in PRIMARY)}"
        )
    return f"{len(beyond)} of {len(pairs)} comparisons differ beyond seed noise: " + "; ".join(
        p["sentence"] for p in beyond
    )


def verdicts(study: Study, eval_set: str, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per mechanism: its comparisons (primary metrics), one sentence per pair and a headline."""
    out = []
    for mech in mechanisms(study):
        pairs = []
        for a, b in mech["pairs"]:
            comps = _primary(study, eval_set, a, b, n_boot)
            if not comps:
                continue
            word, sentence = _describe(comps)
            pairs.append(
                {"a": a, "b": b, "comparisons": comps, "outcome": word, "sentence": sentence}
            )
        out.append({**mech, "eval_set": eval_set, "results": pairs, "headline": _headline(pairs)})
    return out
