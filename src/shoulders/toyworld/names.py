"""Pronounceable, collision-free names for the synthetic world.

Names are built from syllables so that a byte-level BPE splits them into a few pieces
the way it splits rare real names. Two rules keep evaluation honest: no name stem is a
substring of another (so a string-containment check for "Velbrook" never fires on
"Velbrookton"), and person name parts never coincide with place or brand stems.
Person first and last names come from small pools, so people share first or last names
on purpose: that is what makes retrieval and recall hard in the real world too.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable

_VOWEL_RUN = re.compile(r"[aeiouy]+")
_DIPHTHONGS = {"ai", "ou", "ei", "ia", "io"}

# Single consonants dominate so that names stay short and easy to say (and to tokenise).
ONSETS = tuple("bdfgklmnprstvz") * 3 + ("br", "dr", "gr", "kr", "tr", "st", "sh", "th", "pl", "fl", "j", "h")
VOWELS = ("a", "e", "i", "o", "u") * 3 + ("ai", "ou", "ei")
CODAS = ("",) * 8 + ("n", "r", "l", "s", "m", "nd", "rk", "x")

SUFFIXES = {
    "first": ("a", "o", "an", "en", "in", "is", "el", ""),
    "last": ("son", "ez", "ov", "ini", "berg", "wood", "er", "ley", "ard", ""),
    "city": ("ton", "burg", "ford", "mouth", "vale", "port", "holm", "grad", "wick", "dale"),
    "country": ("ia", "land", "ova", "ara", "istan", "onia"),
    "brand": ("", "ex", "o", "ix", "a", "on"),
}


class NameMaker:
    """Draws unique names; remembers every stem handed out so far."""

    def __init__(self, rng: random.Random, used: Iterable[str] = ()):
        self.rng = rng
        self.used: set[str] = set()  # lower-cased stems handed out or reserved
        self._parts: set[str] = set()  # every substring of a used stem: clash checks in O(len)
        self.reserve(used)

    def reserve(self, stems: Iterable[str]) -> None:
        """Mark stems as taken (e.g. the world's), so no new word contains or is inside one."""
        for stem in stems:
            w = stem.lower()
            self.used.add(w)
            self._parts.update(w[i:j] for i in range(len(w)) for j in range(i + 1, len(w) + 1))

    def _syllables(self, n: int) -> str:
        parts = []
        for i in range(n):
            coda = self.rng.choice(CODAS) if i == n - 1 or self.rng.random() < 0.2 else ""
            parts.append(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + coda)
        return "".join(parts)

    @staticmethod
    def _pronounceable(stem: str) -> bool:
        """No doubled letters, no vowel clusters other than a few familiar diphthongs."""
        if re.search(r"(.)\1", stem):
            return False
        return all(len(v) == 1 or v in _DIPHTHONGS for v in _VOWEL_RUN.findall(stem))

    def _clashes(self, word: str) -> bool:
        """True if `word` is inside a used stem or holds one."""
        w = word.lower()
        return w in self._parts or any(w[i:j] in self.used for i in range(len(w)) for j in range(i + 1, len(w) + 1))

    def word(self, style: str, syllables: tuple[int, int] = (2, 2), tries: int = 2000) -> str:
        """A new capitalised word of the given style, unique and substring-free."""
        for _ in range(tries):
            stem = self._syllables(self.rng.randint(*syllables)) + self.rng.choice(SUFFIXES[style])
            if not 4 <= len(stem) <= 10 or not self._pronounceable(stem) or self._clashes(stem):
                continue
            self.reserve([stem])
            return stem.capitalize()
        raise RuntimeError(f"could not draw a fresh {style} name after {tries} tries; use a smaller world")

    def pool(self, style: str, n: int, syllables: tuple[int, int] = (1, 2)) -> list[str]:
        return [self.word(style, syllables) for _ in range(n)]


def person_names(maker: NameMaker, n: int) -> list[str]:
    """n distinct "First Last" names drawn from pools of about n/3 first and n/2.5 last names."""
    firsts = maker.pool("first", max(6, n // 3))
    lasts = maker.pool("last", max(6, int(n / 2.5)))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{maker.rng.choice(firsts)} {maker.rng.choice(lasts)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
