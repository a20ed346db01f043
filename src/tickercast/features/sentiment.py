"""Headline sentiment: text -> a score in [-1, 1], pluggable, vectorised for Spark's Arrow UDFs.

The default scorer is VADER's compound score (``vaderSentiment`` ships its lexicon, so nothing is
downloaded), computed by :class:`tickercast.features.vader.CompoundScorer`: the same rules and lexicon,
identical scores, about three times faster.

A scorer is any callable ``pandas.Series[str] -> pandas.Series[float]`` that keeps the input's
index; :func:`get_scorer` looks one up by name (``"vader"``), by ``"module:function"`` path, or
among those added with :func:`register_scorer` -- the hook for a finance lexicon or a local FinBERT.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from tickercast.errors import UserError
from tickercast.features.vader import CompoundScorer

Scorer = Callable[[pd.Series], pd.Series]

_compound: CompoundScorer | None = None
_scorers: dict[str, Scorer] = {}
# Scores of recently seen headlines. A Spark UDF worker scores batch after batch of one
# symbol's news, and a symbol's headlines repeat across the batch boundary; the bound keeps a
# long-lived worker's memory flat (about 10 MB).
_recent: dict[str, float] = {}
RECENT_LIMIT = 50_000


def _vader() -> CompoundScorer:
    """Return the process-wide VADER scorer, built on first use (never at import)."""
    global _compound
    if _compound is None:
        _compound = CompoundScorer()
    return _compound


def score_headlines(headlines: pd.Series) -> pd.Series:
    """Score headlines with VADER's compound score.

    Each distinct headline is scored once, so a batch with repeated headlines (common in news
    feeds and in the simulator's output) costs one lexicon pass per distinct text.

    Args:
        headlines: Headline texts; missing values (None/NaN) are allowed.

    Returns:
        A float Series with the same index: the compound score in [-1, 1], NaN where the headline
        is missing, 0.0 for an empty or wordless headline.

    """
    codes, uniques = pd.factorize(headlines, use_na_sentinel=True)
    unique_scores = _distinct_scores(str(text) for text in uniques)
    scores = np.full(len(codes), np.nan)
    present = codes >= 0
    scores[present] = unique_scores[codes[present]]
    return pd.Series(scores, index=headlines.index, name="sentiment")


def score_headline_array(headlines: pa.Array) -> pa.Array:
    """Score an Arrow array of headlines as :func:`score_headlines` scores a Series.

    Only the distinct texts become Python strings (a dictionary encoding finds them), so a batch
    of millions of rows costs one lexicon pass and one string per distinct headline: this is
    what the Spark job's Arrow UDF calls.

    Args:
        headlines: A string array; nulls are allowed.

    Returns:
        A float64 array of the same length: the compound score, null where the headline is null.

    """
    encoded = headlines.dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    return pa.array(_distinct_scores(texts)).take(encoded.indices)


def _distinct_scores(texts: Iterable[str]) -> np.ndarray:
    """Score each text, in order, into a float64 array (recently seen texts are looked up)."""
    return np.fromiter((_remembered_score(text) for text in texts), dtype="float64")


def _remembered_score(text: str) -> float:
    """Score one headline, from the recent scores when it was seen lately."""
    score = _recent.get(text)
    if score is None:
        if len(_recent) >= RECENT_LIMIT:
            _recent.clear()
        score = _recent[text] = _vader()(text)
    return score


def score_headline(headline: str) -> float:
    """Score one headline with VADER (compound score in [-1, 1])."""
    return _vader()(headline)


def register_scorer(name: str, scorer: Scorer) -> None:
    """Make a scorer available to :func:`get_scorer` under ``name``.

    Args:
        name: Lookup name, e.g. ``"finbert"``.
        scorer: Callable mapping a Series of headlines to a Series of scores in [-1, 1].

    """
    _scorers[name] = scorer


def get_scorer(name: str = "vader") -> Scorer:
    """Return a headline scorer by name.

    Args:
        name: ``"vader"`` (the default), a name added with :func:`register_scorer`, or a
            ``"package.module:function"`` path to any importable scorer.

    Returns:
        A callable ``Series[str] -> Series[float]`` keeping the input's index.

    Raises:
        UserError: The name is unknown or the path cannot be imported.

    """
    if name == "vader":
        return score_headlines
    if name in _scorers:
        return _scorers[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            scorer = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"cannot load sentiment scorer {name!r}: {exc}") from None
        if not callable(scorer):
            raise UserError(f"sentiment scorer {name!r} is not callable")
        return scorer
    known = ", ".join(["vader", *sorted(_scorers)])
    raise UserError(f"unknown sentiment scorer {name!r}; known: {known}, or give module:function")
