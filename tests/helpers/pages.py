"""A report's pages as a browser follows them, and names that are also markup."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HOSTILE_FILE = "x<img src=y onerror=alert(1)>.png"  # a file name that is also markup
HOSTILE_LABEL = "<b>&quot;lbl'"  # a class folder name that is also markup
HOSTILE_REASON = "<i>odd/../reason"  # a reason code from some other tool's manifest


class _Page(HTMLParser):
    """What a page offers: its links, the samples it lists, each listed sample's own thumbnail."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.thumbs: dict[str, str] = {}
        self.group: tuple[str, str] | None = None
        self._card: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if a.get("data-sample-id") is not None:
            self.ids.add(a["data-sample-id"])
            self._card = a["data-sample-id"] if tag in ("article", "tr") else None
        if tag == "img" and self._card and "small" not in a.get("class", "").split():
            self.thumbs.setdefault(self._card, a.get("src", ""))
        if tag == "main" and a.get("data-group"):
            self.group = (a["data-group"], a.get("data-key", ""))

    def handle_endtag(self, tag):
        if tag in ("article", "tr"):
            self._card = None


def crawl(start: Path) -> dict[Path, _Page]:
    """Every page reachable from `start` through relative links (as a browser opens them)."""
    root = Path(os.path.normpath(start.parent))
    pages: dict[Path, _Page] = {}
    todo = [Path(os.path.normpath(start))]
    while todo:
        page = todo.pop()
        if page in pages:
            continue
        parsed = _Page()
        parsed.feed(page.read_text(encoding="utf-8"))
        pages[page] = parsed
        for href in parsed.links:
            target = urlsplit(href)
            if target.scheme or target.netloc or not target.path:
                continue
            nxt = Path(os.path.normpath(page.parent / unquote(target.path)))
            assert nxt.is_relative_to(root) and nxt.is_file(), f"{page.name} links to {href!r}: no such page"
            if nxt.suffix == ".html":
                todo.append(nxt)
    return pages
