"""The one base class of errors caused by the user's input (files, configs, requests).

The CLI prints these as one line naming the file, line or field; anything else is a bug
and keeps its traceback.
"""


class ShouldersError(ValueError):
    """A problem with the user's input; the message says where and what was expected."""


class WindowError(ShouldersError):
    """A soft prefix and target budget that do not fit the backbone's context window."""


class BackboneError(ShouldersError):
    """A backbone that cannot be found or loaded as named."""


def format_validation_error(err, prefix: str = "") -> str:
    """A pydantic ValidationError on one line: `unknown key 'a.b'; key 'c': <why> (got x)`."""
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        elif e["type"] == "missing":
            lines.append(f"missing key {key!r}")
        elif e["type"] == "value_error":  # our own validators: the message says what was wrong
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key {key!r}: {msg}" if key else msg)
        else:
            lines.append(f"key {key!r}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)
