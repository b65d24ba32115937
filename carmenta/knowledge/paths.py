"""Knowledge-tree paths: `ltree` labels made from titles, and checks with clear messages.

A path is dot-separated slugs (`knowledge.people.sarah_o_neil`); the display title is
kept apart on the document, so any title can have a valid path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from carmenta.errors import CarmentaError

NAMESPACES = ("profile", "knowledge")
MAX_LABEL_LENGTH = 64
MAX_DEPTH = 16

_NON_LABEL = re.compile(r"[^a-z0-9]+")
_LABEL = re.compile(r"^[a-z0-9_]+$")
# Letters that Unicode does not decompose into an ASCII base letter.
_EXTRA_FOLDS = str.maketrans(
    {
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "ß": "ss",
        "œ": "oe",
        "Œ": "oe",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "þ": "th",
        "Þ": "th",
        "ð": "d",
        "Ð": "d",
    }
)


class InvalidPath(CarmentaError, ValueError):
    """A path or title that cannot become a knowledge-tree path."""


def slugify_label(text: str) -> str:
    """One `ltree` label from free text: lowercase ASCII, `_` between words."""
    # NFKD splits accented letters into base letter plus mark; the marks are dropped.
    folded = (
        unicodedata.normalize("NFKD", text.translate(_EXTRA_FOLDS))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    slug = _NON_LABEL.sub("_", folded.lower()).strip("_")
    slug = slug[:MAX_LABEL_LENGTH].rstrip("_")
    if not slug:
        raise InvalidPath(
            f"{text!r} has no letters or digits to make a path from; "
            "use a title with at least one letter or digit."
        )
    return slug


def path_from_titles(titles: Sequence[str]) -> str:
    """`["Knowledge", "People", "Sarah O'Neil"]` -> `knowledge.people.sarah_o_neil`."""
    path = ".".join(slugify_label(title) for title in titles)
    validate_path(path)
    return path


def validate_path(path: str) -> str:
    """The path itself when it is a valid knowledge-tree path; InvalidPath otherwise."""
    if not path:
        raise InvalidPath("A path cannot be empty.")
    labels = path.split(".")
    if labels[0] not in NAMESPACES:
        raise InvalidPath(f"Path {path!r} must start with one of: {', '.join(NAMESPACES)}.")
    if len(labels) > MAX_DEPTH:
        raise InvalidPath(
            f"Path {path!r} is {len(labels)} levels deep; at most {MAX_DEPTH} are allowed."
        )
    for label in labels:
        if not label:
            raise InvalidPath(f"Path {path!r} has an empty label (two dots or a dot at an end).")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidPath(
                f"Label {label[:20]!r}… in path is longer than {MAX_LABEL_LENGTH} characters."
            )
        if not _LABEL.match(label):
            raise InvalidPath(
                f"Label {label!r} may only hold lowercase letters, digits and underscores."
            )
    return path


def parent_of(path: str) -> str | None:
    head, _, _ = path.rpartition(".")
    return head or None


def last_label(path: str) -> str:
    return path.rpartition(".")[2]
