"""The fast VADER port gives exactly vaderSentiment's compound score, rule by rule."""

from __future__ import annotations

import random

import pytest
from vaderSentiment import vaderSentiment as vader

from tickercast.data import headlines
from tickercast.features.vader import CompoundScorer

# VADER's own demonstration sentences (vaderSentiment.__main__): every rule it advertises.
VADER_EXAMPLES = [
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "Other sentiment analysis tools can be quite bad.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is one of the most compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Not such a badass after all.",
    "Without a doubt, an excellent idea.",
]
EDGE_CASES = [
    "",
    "   ",
    "!!!",
    "?? ??",
    "no",
    "No good",
    "no no no",
    "good",
    "GOOD",
    "GOOD news",
    "but",
    "😁",
]
# The special-case idioms, each with its lexicon word three or more words in (where VADER checks them).
IDIOMS = [
    "they all said it was the kiss of death",
    "the new phone from them is to die for",
    "honestly that new album is the bomb",
    "what a really bad ass move",
    "yeah right that went great",
    "my poor beating heart was happy",
    "we waited at the bus stop happily",
    "he said it was just enough good",
    "the plan was sort of good",
]

# Words that switch on each rule: negations, "no ... or/nor", "never so/this", "without doubt",
# "least", "kind of", boosters, the special-case idioms, and contrast ("but").
RULE_WORDS = [
    *("no", "or", "nor", "not", "never", "isn't", "can't", "without", "doubt", "so", "this"),
    *("least", "at", "very", "kind", "of", "sort", "but", "the", "shit", "bomb", "bad", "ass"),
    *("badass", "kiss", "death", "yeah", "right", "to", "die", "for", "beating", "heart", "bus"),
    *("stop", "just", "enough", "hardly", "extremely", "barely", "slightly", "totally", "utterly"),
    *("kinda", "sorta"),
]


def _fuzzed_sentences(analyzer: vader.SentimentIntensityAnalyzer, count: int, seed: int) -> list[str]:
    """Random sentences of rule words, lexicon words, emoticons and emojis in mixed case and punctuation."""
    rng = random.Random(seed)
    lexicon = sorted(analyzer.lexicon)
    emojis = sorted(analyzer.emojis)[:200]
    plain = ["company", "shares", "report", "quarter", "ABCD", "résumé", "q3", "2024"]
    sentences = []
    for _ in range(count):
        words = []
        for _ in range(rng.randint(1, 14)):
            pool = rng.choices([RULE_WORDS, lexicon, plain, emojis], weights=[5, 4, 2, 1])[0]
            word = rng.choice(pool)
            shape = rng.random()
            if shape < 0.15:
                word = word.upper()
            elif shape < 0.25:
                word = word.capitalize()
            if rng.random() < 0.15:
                word += rng.choice(["!", "?", ",", ".", "...", "!!", "??", "'s"])
            if rng.random() < 0.05:
                word = rng.choice(['"', "(", "'"]) + word
            words.append(word)
        sentences.append(" ".join(words))
    return sentences


@pytest.fixture(scope="module")
def scorers() -> tuple[CompoundScorer, vader.SentimentIntensityAnalyzer]:
    return CompoundScorer(), vader.SentimentIntensityAnalyzer()


def _mismatches(texts: list[str], scorers) -> list[tuple[str, float, float]]:
    fast, reference = scorers
    pairs = [(text, fast(text), reference.polarity_scores(text)["compound"]) for text in texts]
    return [pair for pair in pairs if pair[1] != pair[2]]


def test_equals_vader_on_its_own_examples_and_edge_cases(scorers) -> None:
    texts = VADER_EXAMPLES + EDGE_CASES + IDIOMS
    assert _mismatches(texts, scorers) == []
    fast, _ = scorers
    assert (
        fast("VADER is VERY SMART, handsome, and FUNNY!!!") > fast("VADER is smart, handsome, and funny.") > 0
    )


def test_equals_vader_on_every_simulator_headline(scorers) -> None:
    texts = [template.format(s=headlines.PLACEHOLDER) for _, template in headlines._candidates()]
    assert len(texts) > 200
    assert _mismatches(texts, scorers) == []


def test_equals_vader_on_a_fuzzed_corpus_that_hits_every_rule(scorers) -> None:
    fast, reference = scorers
    texts = _fuzzed_sentences(reference, 20_000, seed=11)
    scores = [fast(text) for text in texts]
    # The corpus reaches both signs, the clamp region and the rare paths ("but", emojis).
    assert min(scores) < -0.9 and max(scores) > 0.9
    assert sum(" but " in f" {t.lower()} " for t in texts) > 1000
    assert sum(not t.isascii() for t in texts) > 1000
    assert _mismatches(texts, scorers) == []
