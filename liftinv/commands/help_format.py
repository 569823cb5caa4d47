"""The help formatter of the sub-commands: every option's default stated once.

argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every option, also where the help
text already explains the default (``"(default: the model's, else blur) (default: None)"``).
:class:`DefaultsOnceHelpFormatter` appends it only where the help does not mention a default and there is one
worth printing.
"""

from __future__ import annotations

import argparse

__all__ = ["DefaultsOnceHelpFormatter"]


class DefaultsOnceHelpFormatter(argparse.HelpFormatter):
    """Append ``(default: X)`` to an option's help unless the help already states its default, or the default
    is ``None`` / ``False`` (an option that is off, or whose default the help explains).

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="demo", formatter_class=DefaultsOnceHelpFormatter)
    >>> _ = p.add_argument("--size", type=int, default=128, help="image side")
    >>> _ = p.add_argument("--sigma", type=float, default=None, help="kernel width (default 2)")
    >>> text = p.format_help()
    >>> "image side (default: 128)" in text, "(default 2)" in text, "None" in text
    (True, True, False)
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
        ):
            return text
        return text + " (default: %(default)s)"
