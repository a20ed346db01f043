from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tickercast.errors import UserError
from tickercast.features import sentiment
from tickercast.features.sentiment import get_scorer, register_scorer, score_headlines


def test_vader_reads_tone_and_keeps_the_index() -> None:
    headlines = pd.Series(
        [
            "Company posts record profit and strong growth",
            "Company faces fraud investigation and heavy losses",
            "Company to report earnings on Thursday",
            None,
            "",
            "Company posts record profit and strong growth",
        ],
        index=[10, 11, 12, 13, 14, 15],
    )
    scores = score_headlines(headlines)
    assert scores.index.tolist() == headlines.index.tolist()
    assert scores[10] > 0.5 and scores[11] < -0.5 and scores[12] == 0.0
    assert np.isnan(scores[13]) and scores[14] == 0.0
    assert scores[15] == scores[10]
    assert scores.dropna().between(-1, 1).all()


def test_scores_agree_with_one_at_a_time_scoring() -> None:
    texts = pd.Series(["good news", "terrible crash", "neutral statement", "good news"])
    assert score_headlines(texts).tolist() == [sentiment.score_headline(t) for t in texts]


def test_recent_scores_are_reused_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentiment, "RECENT_LIMIT", 3)
    monkeypatch.setattr(sentiment, "_recent", {})
    texts = [f"ACME results are {word}" for word in ("great", "terrible", "in", "good", "bad")]
    first = score_headlines(pd.Series(texts)).tolist()
    again = score_headlines(pd.Series(texts[::-1])).tolist()[::-1]
    assert first == again == [sentiment.score_headline(t) for t in texts]
    assert first[0] > 0 > first[1]
    assert len(sentiment._recent) <= 3


def test_scorers_are_pluggable() -> None:
    assert get_scorer() is score_headlines
    assert get_scorer("tickercast.features.sentiment:score_headlines") is score_headlines

    def constant(headlines: pd.Series) -> pd.Series:
        return pd.Series(0.25, index=headlines.index)

    register_scorer("constant-test", constant)
    assert get_scorer("constant-test")(pd.Series(["x"])).tolist() == [0.25]
    with pytest.raises(UserError, match="unknown sentiment scorer 'finbert'"):
        get_scorer("finbert")
    with pytest.raises(UserError, match="cannot load"):
        get_scorer("no.such.module:score")


def test_arrow_scores_equal_the_pandas_scores() -> None:
    texts = ["good news", None, "terrible crash", "good news", "", "neutral statement"]
    arrow_scores = sentiment.score_headline_array(pa.array(texts)).to_pylist()
    pandas_scores = score_headlines(pd.Series(texts)).tolist()
    assert arrow_scores[1] is None and np.isnan(pandas_scores[1])
    present = [0, 2, 3, 4, 5]
    assert [arrow_scores[i] for i in present] == [pandas_scores[i] for i in present]
    assert arrow_scores[0] == arrow_scores[3] > 0 > arrow_scores[2]
