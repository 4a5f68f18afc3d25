"""The one base class of errors caused by the user's input (files, configs, requests).

The CLI prints these as one line naming the file, line or field; anything else is a bug
and keeps its traceback.
"""


class ShouldersError(ValueError):
    """A problem with the user's input; the message says where and what was expected."""


class WindowError(ShouldersError):
    """A soft prefix and target budget that do not fit the backbone's context window."""
