"""Text into HTML: escaping and the number formats every page uses."""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    """Any value as HTML text: data (paths, labels, reason codes) never becomes markup."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and abs(value) < 5e-4:
            return "<0.001" if value > 0 else "-<0.001"  # scores are probabilities: 1e-26 reads as noise
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def plural(n: int, noun: str) -> str:
    return f"{fmt(n)} {noun}{'' if n == 1 else 's'}"

