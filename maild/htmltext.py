"""HTML to readable plain text, for mail that has no text part. Stdlib only.

Good enough for reading a customer's message in a terminal or a plain-text notification: block
elements become line breaks, list items get a dash, links keep their target, scripts and styles
vanish, entities are decoded.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
          "blockquote", "pre", "hr", "section", "article", "header", "footer", "li"}
_SKIP = {"script", "style", "head", "title", "template", "noscript"}
_CELL = {"td", "th"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.skipping = 0  # an unclosed <head> or <title> must not swallow the whole page
        elif tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.out.append("\n")
            if tag == "li":
                self.out.append("- ")
        elif tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in ("br", "li"):
            pass  # one line break each, made by the start tag (`<br/>` calls both)
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag in _CELL:
            self.out.append(" ")
        elif tag == "a" and self.href:
            if self.href.startswith(("http:", "https:", "mailto:")):
                self.out.append(f" <{self.href}>")
            self.href = None

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but never let a broken page stop ingest
        return re.sub(r"<[^>]*>", " ", html)
    lines = [line.strip() for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
