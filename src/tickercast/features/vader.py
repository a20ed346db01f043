"""VADER's compound score, computed exactly as ``vaderSentiment`` 3.3 computes it, several times faster.

``SentimentIntensityAnalyzer.polarity_scores`` re-lowercases the whole sentence and scans its
60-word negation list for every (word, look-back) pair it checks, and rebuilds the text one
character at a time to find emojis. This module lowercases once, looks words up in sets and skips
the emoji pass for ASCII text. Every rule, constant and lexicon comes from ``vaderSentiment``
itself, and every floating-point operation happens in the same order, so the scores are identical
to the last bit: ``tests/features/test_vader.py`` compares the two on the simulator's headlines,
VADER's own examples and a fuzzed corpus built to hit every rule. The one rare rule with
order-dependent list surgery ("but") calls ``vaderSentiment``'s own code.
"""

from __future__ import annotations

import string
from typing import Any

_PUNCTUATION = string.punctuation


class CompoundScorer:
    """Callable ``text -> VADER compound score`` (rounded to 4 places, as VADER rounds it)."""

    def __init__(self) -> None:
        """Load VADER's lexicons (shipped with ``vaderSentiment``; nothing is downloaded)."""
        from vaderSentiment import vaderSentiment as vader

        self._vader = vader
        self._analyzer: Any = vader.SentimentIntensityAnalyzer()
        self._lexicon: dict[str, float] = self._analyzer.lexicon
        self._emojis: dict[str, str] = self._analyzer.emojis
        self._ascii_emojis = any(key.isascii() for key in self._emojis)
        self._negate = frozenset(vader.NEGATE)
        self._booster: dict[str, float] = vader.BOOSTER_DICT
        self._special: dict[str, float] = vader.SPECIAL_CASES

    def __call__(self, text: str) -> float:
        """Return the compound score of ``text`` in [-1, 1]; 0.0 when it has no words."""
        if self._ascii_emojis or not text.isascii():
            text = self._replace_emojis(text)
        text = text.strip()
        # A token keeps its punctuation when stripping it leaves two characters or fewer (":)").
        words = [token if len(bare := token.strip(_PUNCTUATION)) <= 2 else bare for token in text.split()]
        lower = [word.lower() for word in words]
        caps = sum(map(str.isupper, words))
        is_cap_diff = 0 < len(words) - caps < len(words)
        booster, lexicon = self._booster, self._lexicon
        sentiments: list[float] = []
        last = len(words) - 1
        for i, low in enumerate(lower):
            if low in booster or (i < last and low == "kind" and lower[i + 1] == "of"):
                sentiments.append(0)
            elif low in lexicon:
                sentiments.append(self._valence(words, lower, i, is_cap_diff))
            else:
                sentiments.append(0)
        if "but" in lower:
            sentiments = self._vader.SentimentIntensityAnalyzer._but_check(words, sentiments)
        if not sentiments:
            return 0.0
        sum_s = float(sum(sentiments))
        emphasis = self._analyzer._punctuation_emphasis(text)
        if sum_s > 0:
            sum_s += emphasis
        elif sum_s < 0:
            sum_s -= emphasis
        return round(self._vader.normalize(sum_s), 4)

    def _replace_emojis(self, text: str) -> str:
        """Splice in each emoji's description, as ``polarity_scores`` does."""
        out: list[str] = []
        prev_space = True
        for char in text:
            description = self._emojis.get(char)
            if description is not None:
                if not prev_space:
                    out.append(" ")
                out.append(description)
                prev_space = False
            else:
                out.append(char)
                prev_space = char == " "
        return "".join(out)

    def _valence(self, words: list[str], lower: list[str], i: int, is_cap_diff: bool) -> float:
        """``sentiment_valence`` for a lexicon word, with the sentence lowercased once."""
        lexicon, n_scalar = self._lexicon, self._vader.N_SCALAR
        low = lower[i]
        valence = lexicon[low]
        if low == "no" and i != len(words) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = lexicon[low] * n_scalar
        if words[i].isupper() and is_cap_diff:
            if valence > 0:
                valence += self._vader.C_INCR
            else:
                valence -= self._vader.C_INCR
        for start_i in range(3):
            if i > start_i and lower[i - (start_i + 1)] not in lexicon:
                s = self._scalar_inc_dec(
                    words[i - (start_i + 1)], lower[i - (start_i + 1)], valence, is_cap_diff
                )
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = self._negation_check(valence, lower, start_i, i)
                if start_i == 2:
                    valence = self._special_idioms_check(valence, lower, i)
        return self._least_check(valence, lower, i)

    def _scalar_inc_dec(self, word: str, low: str, valence: float, is_cap_diff: bool) -> float:
        scalar = 0.0
        if low in self._booster:
            scalar = self._booster[low]
            if valence < 0:
                scalar *= -1
            if word.isupper() and is_cap_diff:
                if valence > 0:
                    scalar += self._vader.C_INCR
                else:
                    scalar -= self._vader.C_INCR
        return scalar

    def _negated(self, low: str) -> bool:
        return low in self._negate or "n't" in low

    def _negation_check(self, valence: float, lower: list[str], start_i: int, i: int) -> float:
        n_scalar = self._vader.N_SCALAR
        if start_i == 0 and self._negated(lower[i - 1]):
            valence = valence * n_scalar
        if start_i == 1:
            if lower[i - 2] == "never" and (lower[i - 1] == "so" or lower[i - 1] == "this"):
                valence = valence * 1.25
            elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
                pass
            elif self._negated(lower[i - 2]):
                valence = valence * n_scalar
        if start_i == 2:
            # VADER's precedence, kept: (never and (so or this)) or (previous word is so or this).
            if (lower[i - 3] == "never" and (lower[i - 2] == "so" or lower[i - 2] == "this")) or (
                lower[i - 1] == "so" or lower[i - 1] == "this"
            ):
                valence = valence * 1.25
            elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
                pass
            elif self._negated(lower[i - 3]):
                valence = valence * n_scalar
        return valence

    def _special_idioms_check(self, valence: float, lower: list[str], i: int) -> float:
        special = self._special
        onezero = f"{lower[i - 1]} {lower[i]}"
        twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
        twoone = f"{lower[i - 2]} {lower[i - 1]}"
        threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
        threetwo = f"{lower[i - 3]} {lower[i - 2]}"
        for sequence in (onezero, twoonezero, twoone, threetwoone, threetwo):
            if sequence in special:
                valence = special[sequence]
                break
        if len(lower) - 1 > i:
            zeroone = f"{lower[i]} {lower[i + 1]}"
            if zeroone in special:
                valence = special[zeroone]
        if len(lower) - 1 > i + 1:
            zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
            if zeroonetwo in special:
                valence = special[zeroonetwo]
        for n_gram in (threetwoone, threetwo, twoone):
            if n_gram in self._booster:
                valence = valence + self._booster[n_gram]
        return valence

    def _least_check(self, valence: float, lower: list[str], i: int) -> float:
        n_scalar = self._vader.N_SCALAR
        if i > 1 and lower[i - 1] not in self._lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * n_scalar
        elif i > 0 and lower[i - 1] not in self._lexicon and lower[i - 1] == "least":
            valence = valence * n_scalar
        return valence
