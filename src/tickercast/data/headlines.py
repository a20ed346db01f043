"""Headline templates for the market simulator, calibrated against the sentiment scorer.

Each template is written with an intended tone. :func:`build_bank` scores every template with the
scorer the preprocessing job uses and keeps only those whose score agrees with the intended tone, so
the sentiment a reader (or VADER) sees in a headline is the sentiment the simulator plants. The
symbol is always a token the scorer ignores (see :func:`is_neutral_symbol`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from tickercast.features.sentiment import Scorer, get_scorer

PLACEHOLDER = "ABCD"

POSITIVE = (
    "{s} stock rises after solid quarterly results",
    "{s} stock surges on record profit",
    "{s} wins major government contract",
    "{s} reports strong revenue growth",
    "{s} announces generous dividend increase",
    "{s} gains after successful product launch",
    "{s} posts better than expected sales",
    "{s} secures approval for new drug",
    "{s} expands into fast-growing markets",
    "{s} rallies on takeover interest",
    "{s} reports healthy cash flow",
    "{s} praised for excellent execution",
    "{s} delivers impressive margin gains",
    "{s} sees robust demand for its products",
    "{s} wins praise from investors",
    "{s} boosts buyback program",
    "Analysts cheer {s} after upbeat forecast",
    "Investors celebrate as {s} doubles profit",
    "{s} named top pick by confident analysts",
    "{s} enjoys strong holiday sales",
    "{s} stock jumps on favorable ruling",
    "{s} improves outlook on solid demand",
    "{s} signs promising partnership deal",
    "{s} hailed for innovative new platform",
)
NEGATIVE = (
    "{s} reports disappointing revenue decline",
    "{s} faces fraud investigation",
    "{s} hit with costly lawsuit",
    "{s} sinks after failed merger talks",
    "{s} struggles with rising debt",
    "{s} crashes after accounting scandal",
    "{s} criticized for poor management",
    "{s} battles supply chain problems",
    "{s} reports painful write-down",
    "{s} stock tumbles on weak outlook",
    "Investors worry as {s} loses market share",
    "{s} warns of weak sales and falling margins",
    "Analysts fear trouble ahead for {s}",
    "{s} stock slumps after damaging report",
    "{s} under pressure after product failure",
    "{s} hurt by bad weather and weak demand",
    "{s} faces angry shareholders over losses",
    "{s} blamed for data breach",
    "{s} cuts jobs amid falling profit",
    "{s} stock drops after CEO resigns in crisis",
    "{s} delays launch after serious defects",
    "{s} warns of risk to earnings",
)
NEUTRAL = (
    "{s} to report earnings on Thursday",
    "{s} schedules annual shareholder meeting",
    "{s} names new chief financial officer",
    "{s} files quarterly report",
    "{s} to present at industry conference",
    "{s} completes previously announced reorganization",
    "{s} sets date for investor day",
    "{s} moves headquarters to Texas",
    "{s} updates board composition",
    "{s} stock unchanged in early trading",
    "{s} releases annual sustainability report",
    "{s} lists new bonds in Europe",
)
POSITIVE_TAILS = (
    "",
    ", analysts say",
    " as outlook brightens",
    " amid strong optimism",
    ", boosting confidence",
)
NEGATIVE_TAILS = ("", ", analysts say", " as outlook darkens", " amid growing fears", ", raising concerns")
NEUTRAL_TAILS = ("", ", analysts say", " in a regulatory filing", " according to a statement")

TONES = ("positive", "negative", "neutral")
# A headline counts as neutral below this absolute score, and as toned above it.
NEUTRAL_BAND = 0.05


@dataclass(frozen=True)
class HeadlineBank:
    """Calibrated headline templates, split around the symbol.

    Attributes:
        prefix: Text before the symbol.
        suffix: Text after the symbol.
        score: The scorer's reading of each template (with a neutral symbol).
        tone: 0 positive, 1 negative, 2 neutral.

    """

    prefix: np.ndarray
    suffix: np.ndarray
    score: np.ndarray
    tone: np.ndarray

    def by_tone(self, tone: int) -> np.ndarray:
        """Return the indices of the templates with one tone."""
        return np.flatnonzero(self.tone == tone)


def _candidates() -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    for tone, clauses, tails in (
        (0, POSITIVE, POSITIVE_TAILS),
        (1, NEGATIVE, NEGATIVE_TAILS),
        (2, NEUTRAL, NEUTRAL_TAILS),
    ):
        rows.extend((tone, clause + tail) for clause in clauses for tail in tails)
    return rows


@lru_cache(maxsize=4)
def build_bank(scorer_name: str = "vader") -> HeadlineBank:
    """Score every template and keep those whose score agrees with the intended tone.

    Args:
        scorer_name: The scorer to calibrate against (see :func:`tickercast.features.sentiment.get_scorer`).

    Returns:
        The calibrated bank.

    """
    scorer: Scorer = get_scorer(scorer_name)
    candidates = _candidates()
    texts = pd.Series([template.format(s=PLACEHOLDER) for _, template in candidates])
    scores = scorer(texts).to_numpy()
    keep = []
    for (tone, _), score in zip(candidates, scores, strict=True):
        agrees = (
            (tone == 0 and score >= NEUTRAL_BAND)
            or (tone == 1 and score <= -NEUTRAL_BAND)
            or (tone == 2 and abs(score) < NEUTRAL_BAND)
        )
        keep.append(agrees)
    kept = [c for c, k in zip(candidates, keep, strict=True) if k]
    parts = [template.split("{s}") for _, template in kept]
    return HeadlineBank(
        prefix=np.array([p[0] for p in parts], dtype=object),
        suffix=np.array([p[1] for p in parts], dtype=object),
        score=scores[np.array(keep)].astype("float64"),
        tone=np.array([tone for tone, _ in kept], dtype="int8"),
    )


_PROBES = ("stock rises on record profit", "faces fraud investigation", "files quarterly report")


def is_neutral_symbol(symbol: str, scorer_name: str = "vader") -> bool:
    """Tell whether a symbol leaves headline scores exactly as the placeholder does.

    A ticker such as ``GOOD`` or ``NO`` would itself move VADER's score; the simulator skips those.
    """
    scorer = get_scorer(scorer_name)
    texts = pd.Series([symbol, *(f"{symbol} {p}" for p in _PROBES), *(f"{PLACEHOLDER} {p}" for p in _PROBES)])
    scores = scorer(texts).to_numpy()
    n = len(_PROBES)
    return bool(scores[0] == 0.0 and np.array_equal(scores[1 : 1 + n], scores[1 + n :]))
