"""The knowledge tree as rows a page can draw: sections, folders, nesting, expansion.

Pure functions over the documents' paths and titles; no database, no UI library.
A path prefix that has no document of its own (a namespace root, or the parent of an
orphaned document) still appears, as a folder that cannot be opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from carmenta.knowledge.paths import NAMESPACES, last_label

SECTION_TITLES = {"profile": "Profile", "knowledge": "Knowledge"}


@dataclass(frozen=True)
class TreeDocument:
    """What the tree needs to know of one document."""

    id: str
    path: str
    title: str
    # An empty document is shown as a folder: that is what "New folder" creates.
    empty: bool = False


@dataclass
class TreeRow:
    path: str = ""
    document_id: str = ""  # "" for a path prefix with no document of its own
    title: str = ""
    section: str = ""
    depth: int = 0  # 0 for the namespace's direct children
    is_folder: bool = False
    has_children: bool = False
    expanded: bool = False


@dataclass
class _Node:
    path: str
    document: TreeDocument | None = None
    children: dict[str, _Node] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.document.title if self.document else last_label(self.path).replace("_", " ")


def _insert(roots: dict[str, _Node], document: TreeDocument) -> None:
    labels = document.path.split(".")
    if labels[0] not in roots:
        return
    node = roots[labels[0]]
    for depth in range(1, len(labels)):
        label = labels[depth]
        prefix = ".".join(labels[: depth + 1])
        node = node.children.setdefault(label, _Node(path=prefix))
    if len(labels) == 1:
        return  # a document at the namespace root itself is not drawn as a child
    node.document = document


def _walk(
    node: _Node, *, section: str, depth: int, expanded: Collection[str], rows: list[TreeRow]
) -> None:
    for child in sorted(
        node.children.values(), key=lambda item: (item.title.casefold(), item.path)
    ):
        has_children = bool(child.children)
        is_open = has_children and child.path in expanded
        rows.append(
            TreeRow(
                path=child.path,
                document_id=child.document.id if child.document else "",
                title=child.title,
                section=section,
                depth=depth,
                is_folder=has_children or child.document is None or child.document.empty,
                has_children=has_children,
                expanded=is_open,
            )
        )
        if is_open:
            _walk(child, section=section, depth=depth + 1, expanded=expanded, rows=rows)


def build_tree_rows(
    documents: Sequence[TreeDocument], *, expanded: Collection[str]
) -> dict[str, list[TreeRow]]:
    """Visible rows per namespace, siblings by title; children only of expanded paths."""
    roots = {namespace: _Node(path=namespace) for namespace in NAMESPACES}
    for document in sorted(documents, key=lambda item: item.path.count(".")):
        _insert(roots, document)
    result: dict[str, list[TreeRow]] = {}
    for namespace, root in roots.items():
        rows: list[TreeRow] = []
        _walk(root, section=namespace, depth=0, expanded=set(expanded), rows=rows)
        result[namespace] = rows
    return result


def ancestors(path: str) -> list[str]:
    """The prefixes that must be expanded for `path` to be visible, outermost first."""
    labels = path.split(".")
    return [".".join(labels[:end]) for end in range(2, len(labels))]


def breadcrumb(path: str, documents: Sequence[TreeDocument]) -> str:
    """`Knowledge / People / Sarah O'Neil`: titles where documents exist, labels elsewhere."""
    titles = {document.path: document.title for document in documents}
    labels = path.split(".")
    parts = []
    for end in range(1, len(labels) + 1):
        prefix = ".".join(labels[:end])
        if end == 1:
            parts.append(SECTION_TITLES.get(prefix, prefix))
        else:
            parts.append(titles.get(prefix) or labels[end - 1].replace("_", " "))
    return " / ".join(parts)


def parent_choices(
    documents: Sequence[TreeDocument], *, excluding: str | None = None
) -> list[tuple[str, str]]:
    """(path, breadcrumb) of every place a document can go, minus `excluding`'s subtree."""
    paths = set(NAMESPACES) | {document.path for document in documents}
    if excluding:
        paths = {
            path for path in paths if path != excluding and not path.startswith(excluding + ".")
        }
    ordered = sorted(paths, key=lambda path: breadcrumb(path, documents).casefold())
    # The namespaces first, in their own order.
    ordered.sort(key=lambda path: NAMESPACES.index(path.split(".")[0]))
    return [(path, breadcrumb(path, documents)) for path in ordered]


def parse_document_id(value: object) -> uuid.UUID | None:
    """A document id from a URL or an event, or None when it is not one."""
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None
