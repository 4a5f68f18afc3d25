"""Closed word lists of the world: professions, industries, product kinds, sentiment.

Kept apart from the generators so that the tasks (sentiment, topic) and the corpus
draw on the same vocabulary: a backbone pre-trained on the corpus has seen every
label word and every sentiment cue that a task later asks about.
"""
from __future__ import annotations

PROFESSIONS = ("engineer", "painter", "chemist", "teacher", "pilot", "architect", "doctor",
               "musician", "lawyer", "chef", "writer", "farmer")

# industry -> (word appended to company names, product categories it makes)
INDUSTRIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "electronics": ("Electronics", ("phone", "laptop", "camera", "headphones")),
    "automotive": ("Motors", ("car", "scooter", "truck")),
    "food": ("Foods", ("cereal", "snack", "juice")),
    "software": ("Systems", ("app", "game", "editor")),
    "energy": ("Energy", ("battery", "solar panel", "heater")),
    "pharmaceuticals": ("Pharma", ("medicine", "vitamin")),
    "sportswear": ("Sports", ("shoe", "jacket", "backpack")),
    "toys": ("Toys", ("puzzle", "doll", "board game")),
}

UNIVERSITY_WORDS = ("University", "Institute", "College", "Academy")

POSITIVE_WORDS = ("great", "excellent", "wonderful", "reliable", "fantastic", "solid", "superb", "pleasant")
NEGATIVE_WORDS = ("terrible", "awful", "flimsy", "disappointing", "useless", "poor", "broken", "annoying")
POSITIVE_VERBS = ("love", "enjoy", "recommend", "adore", "like")
NEGATIVE_VERBS = ("hate", "regret buying", "dislike", "cannot stand", "returned")
ASPECTS = ("the design", "the price", "the quality", "the battery", "the packaging", "the size",
           "the customer service", "the delivery", "the taste", "the finish")
POSITIVE_CLOSERS = ("Five stars.", "Worth every coin.", "Would buy again.", "Highly recommended.")
NEGATIVE_CLOSERS = ("One star.", "A waste of money.", "Never again.", "Avoid it.")
CITY_POSITIVE = ("lovely", "charming", "beautiful", "friendly", "lively")
CITY_NEGATIVE = ("dull", "dirty", "noisy", "crowded", "boring")

# topic classification (AG-news style): label -> cue phrases used to build headlines
TOPICS: dict[str, tuple[str, ...]] = {
    "business": ("shares rose", "profits fell", "announced a merger", "opened a new factory",
                 "hired new staff", "cut prices"),
    "sports": ("won the final", "lost the match", "signed a new coach", "broke the record",
               "scored twice", "trained for the marathon"),
    "science": ("published a study", "discovered a new molecule", "launched a telescope",
                "tested a vaccine", "measured the climate", "built a robot"),
    "travel": ("opened a new airport", "welcomed many tourists", "restored the old harbour",
               "added new train lines", "hosted a festival", "built a new hotel"),
}


def article(word: str) -> str:
    """'a' or 'an' before a word, by its first letter (good enough for this lexicon)."""
    return "an" if word[:1].lower() in "aeiou" else "a"
