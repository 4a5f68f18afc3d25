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


def _model_in(annotation):
    """The pydantic model class inside a field's type (`X`, `X | None`, `list[X]`), if any."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m is not None), None)


def _did_you_mean(model, loc: tuple, prefix: str) -> str:
    """` (did you mean 'train.steps'?)` for an unknown key close to a field of the (nested)
    model it was found in, or nothing."""
    import difflib

    node = model
    for part in loc[:-1]:
        if isinstance(part, int):  # a list item: the same type as the list's
            continue
        field = getattr(node, "model_fields", {}).get(part)
        node = _model_in(field.annotation) if field is not None else None
        if node is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(getattr(node, "model_fields", {})), n=1)
    return f" (did you mean {prefix + '.'.join(str(p) for p in (*loc[:-1], close[0]))!r}?)" if close else ""


def format_validation_error(err, prefix: str = "", model=None) -> str:
    """A pydantic ValidationError on one line: `unknown key 'a.b'; key 'c': <why> (got x)`.
    Given the validated `model` class, an unknown key close to a real one gets a "did you mean"."""
    lines = []
    for e in err.errors():
        key = (prefix + ".".join(str(p) for p in e["loc"])).rstrip(".")  # a whole section's check: 'module', not 'module.'
        if e["type"] == "extra_forbidden":
            hint = _did_you_mean(model, tuple(e["loc"]), prefix) if model is not None and e["loc"] else ""
            lines.append(f"unknown key {key!r}{hint}")
        elif e["type"] == "missing":
            lines.append(f"missing key {key!r}")
        elif e["type"] == "value_error":  # our own validators: the message says what was wrong
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key {key!r}: {msg}" if key else msg)
        else:
            lines.append(f"key {key!r}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)


def one_line(err: BaseException) -> str:
    """An error's message for one line of CLI output: a pydantic ValidationError (a config
    built from flags) through `format_validation_error`, anything else as it is."""
    from pydantic import ValidationError

    return format_validation_error(err) if isinstance(err, ValidationError) else str(err)
