"""Text shown on the Knowledge page: search snippets as plain segments, and wiki links
turned into ordinary Markdown links to the documents they name.

Pure functions; nothing here produces HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from carmenta.knowledge.tree import TreeDocument

# The search service escapes the content (&, <, >) and marks matches with <mark>.
_MARKER = re.compile(r"(<mark>|</mark>)")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


@dataclass
class SnippetSegment:
    text: str = ""
    highlighted: bool = False


def _unescape(text: str) -> str:
    for entity, character in _ENTITIES:
        text = text.replace(entity, character)
    return text


def snippet_segments(snippet: str) -> list[SnippetSegment]:
    """The snippet as text pieces, the matched ones flagged; adjacent pieces merged."""
    segments: list[SnippetSegment] = []
    highlighted = False
    for piece in _MARKER.split(snippet or ""):
        if piece == "<mark>":
            highlighted = True
            continue
        if piece == "</mark>":
            highlighted = False
            continue
        if not piece:
            continue
        text = _unescape(piece)
        if segments and segments[-1].highlighted == highlighted:
            segments[-1].text += text
        else:
            segments.append(SnippetSegment(text=text, highlighted=highlighted))
    return segments


# `[[Target]]` or `[[Target|label]]`, as the link service reads them.
_WIKI_LINK = re.compile(r"\[\[([^\[\]|\n]+)(?:\|([^\[\]\n]*))?\]\]")
# Fenced blocks and inline code are left as they are: a link there is an example.
_CODE = re.compile(r"(^```.*?^```[^\n]*$|^~~~.*?^~~~[^\n]*$|`[^`\n]+`)", re.M | re.S)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>!#|~])")


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def resolve_link(target: str, documents: Sequence[TreeDocument]) -> TreeDocument | None:
    """The document a link names, by the link service's rule: an exact path first, then
    a title (case-insensitive), the shallowest and then the first path among equals."""
    wanted = " ".join(target.split())
    for document in documents:
        if document.path == wanted:
            return document
    matches = [document for document in documents if document.title.lower() == wanted.lower()]
    if not matches:
        return None
    return min(matches, key=lambda document: (document.path.count("."), document.path))


def document_href(document_id: str) -> str:
    return f"/knowledge?doc={document_id}"


def render_wiki_links(markdown: str, resolve: Callable[[str], TreeDocument | None]) -> str:
    """Markdown with each `[[link]]` as a link to its document, or as plain emphasised
    text when no document of that name exists yet."""

    def replace(match: re.Match[str]) -> str:
        target = match.group(1)
        label = " ".join((match.group(2) or target).split()) or target
        document = resolve(target)
        if document is None:
            return f"*{_escape(label)}*"
        return f"[{_escape(label)}]({document_href(document.id)})"

    parts = _CODE.split(markdown or "")
    # split() with one group: the odd items are the code spans and blocks.
    return "".join(
        part if index % 2 else _WIKI_LINK.sub(replace, part) for index, part in enumerate(parts)
    )
