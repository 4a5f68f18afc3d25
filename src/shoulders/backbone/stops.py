"""Stop strings: the one scanner of `generate` and the server.

A sample ends where one of its stop strings first appears in its text (the string is not
included). Checking after every token decodes only the tail a stop string could span (at
most one token per byte, plus a few for a string that starts mid-token), so the check
costs the same at token 5 and at token 500; the final text is cut on the whole decode.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence


def stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string in `text` starts (None: none is in it)."""
    cut = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(cut) if cut else None


def tail_tokens(stops: Sequence[str]) -> int:
    """How many of the last tokens a stop string can span."""
    return max((len(s.encode()) for s in stops), default=0) + 4


def hits_stop(decode: Callable[[list[int]], str], tokens: list[int], stops: Sequence[str]) -> bool:
    """Whether the text of `tokens` now contains a stop string (its tail decoded only)."""
    return bool(stops) and stop_at(decode(tokens[-tail_tokens(stops):]), stops) is not None


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop string, and whether there was one."""
    cut = stop_at(text, stops) if stops else None
    return (text, False) if cut is None else (text[:cut], True)


def streamable_prefix(text: str, stops: Sequence[str]) -> str:
    """The part of `text` that can be sent now and never retracted: hold back an
    unfinished UTF-8 character, trailing whitespace (tokenizers may fold it into the next
    token) and a tail that could still grow into a stop string."""
    end, before = len(text), -1
    while end != before:
        before = end
        while end and (text[end - 1] == "\ufffd" or text[end - 1].isspace()):
            end -= 1
        for s in stops:
            for k in range(min(len(s) - 1, end), 0, -1):
                if text[:end].endswith(s[:k]):
                    end -= k
                    break
    return text[:end]
