"""The Knowledge page's pure helpers: the tree, search snippets, wiki links as Markdown."""

from __future__ import annotations

from carmenta.knowledge.display import (
    SnippetSegment,
    render_wiki_links,
    resolve_link,
    snippet_segments,
)
from carmenta.knowledge.tree import (
    TreeDocument,
    ancestors,
    breadcrumb,
    build_tree_rows,
    parent_choices,
    parse_document_id,
)

DOCUMENTS = [
    TreeDocument(id="1", path="profile.identity", title="Identity"),
    TreeDocument(id="2", path="knowledge.people", title="People", empty=True),
    TreeDocument(id="3", path="knowledge.people.sarah_o_neil", title="Sarah O'Neil"),
    TreeDocument(id="4", path="knowledge.people.bob", title="bob"),
    TreeDocument(id="5", path="knowledge.atlas", title="Project Atlas"),
    # Its parent has no document of its own.
    TreeDocument(id="6", path="knowledge.lost.note", title="Note"),
]


def _titles(rows) -> list[tuple[str, int]]:
    return [(row.title, row.depth) for row in rows]


def test_collapsed_tree_shows_top_level_sorted_by_title_with_folders_marked():
    rows = build_tree_rows(DOCUMENTS, expanded=[])
    assert _titles(rows["profile"]) == [("Identity", 0)]
    assert _titles(rows["knowledge"]) == [("lost", 0), ("People", 0), ("Project Atlas", 0)]
    lost, people, atlas = rows["knowledge"]
    assert (lost.document_id, lost.is_folder, lost.has_children) == ("", True, True)
    assert (people.is_folder, people.has_children, people.expanded) == (True, True, False)
    assert (atlas.is_folder, atlas.has_children) == (False, False)


def test_expanding_a_folder_shows_its_children_one_level_deeper():
    rows = build_tree_rows(DOCUMENTS, expanded=["knowledge.people"])["knowledge"]
    assert _titles(rows) == [
        ("lost", 0),
        ("People", 0),
        ("bob", 1),
        ("Sarah O'Neil", 1),
        ("Project Atlas", 0),
    ]
    assert rows[1].expanded is True
    # Expanding a path with no children changes nothing.
    assert (
        build_tree_rows(DOCUMENTS, expanded=["knowledge.atlas"])["knowledge"][2].expanded is False
    )


def test_an_empty_document_without_children_is_shown_as_a_folder():
    rows = build_tree_rows(
        [TreeDocument(id="9", path="knowledge.new", title="New", empty=True)], expanded=[]
    )
    assert rows["knowledge"][0].is_folder is True
    assert rows["profile"] == []


def test_ancestors_and_breadcrumbs_use_titles_where_documents_exist():
    assert ancestors("knowledge.people.sarah_o_neil") == ["knowledge.people"]
    assert ancestors("knowledge.a.b.c") == ["knowledge.a", "knowledge.a.b"]
    assert ancestors("knowledge") == []
    assert breadcrumb("knowledge.people.sarah_o_neil", DOCUMENTS) == (
        "Knowledge / People / Sarah O'Neil"
    )
    assert breadcrumb("knowledge.lost.note", DOCUMENTS) == "Knowledge / lost / Note"
    assert breadcrumb("profile", DOCUMENTS) == "Profile"


def test_parent_choices_exclude_the_moved_subtree():
    choices = dict(parent_choices(DOCUMENTS, excluding="knowledge.people"))
    assert "knowledge.people" not in choices
    assert "knowledge.people.bob" not in choices
    assert choices["knowledge"] == "Knowledge"
    assert choices["knowledge.atlas"] == "Knowledge / Project Atlas"
    ordered = [path for path, _ in parent_choices(DOCUMENTS)]
    assert ordered[0] == "profile"
    assert ordered.index("knowledge") < ordered.index("knowledge.atlas")


def test_document_ids_from_the_browser_are_parsed_or_refused():
    assert str(parse_document_id("6f1c1a0e-4f4f-4b8e-9a53-0d7c9b6f1f11")).startswith("6f1c")
    for bad in ("", "not-an-id", None, "1; drop table documents"):
        assert parse_document_id(bad) is None


def test_snippet_markers_become_flagged_text_segments_and_entities_are_decoded():
    segments = snippet_segments(
        "Met at the <mark>lighthouse</mark> &lt;b&gt;bold&lt;/b&gt; &amp;amp; <mark>sail</mark>"
    )
    assert segments == [
        SnippetSegment("Met at the ", False),
        SnippetSegment("lighthouse", True),
        SnippetSegment(" <b>bold</b> &amp; ", False),
        SnippetSegment("sail", True),
    ]


def test_snippet_without_markers_or_empty_is_plain_text():
    assert snippet_segments("just text") == [SnippetSegment("just text", False)]
    assert snippet_segments("") == []
    # An escaped marker in the content stays text, never a highlight.
    assert snippet_segments("&lt;mark&gt;x&lt;/mark&gt;") == [
        SnippetSegment("<mark>x</mark>", False)
    ]
    # Adjacent highlighted words are merged into one segment.
    assert snippet_segments("<mark>a</mark><mark>b</mark>") == [SnippetSegment("ab", True)]


def test_links_resolve_by_exact_path_first_then_title_then_shallowest():
    docs = [
        TreeDocument(id="deep", path="knowledge.x.atlas", title="Atlas"),
        TreeDocument(id="shallow", path="knowledge.atlas", title="atlas"),
        TreeDocument(id="path", path="knowledge.x", title="Something"),
    ]
    assert resolve_link("ATLAS", docs).id == "shallow"
    assert resolve_link("knowledge.x", docs).id == "path"
    assert resolve_link("  Atlas ", docs).id == "shallow"
    assert resolve_link("Nothing", docs) is None


def test_wiki_links_become_markdown_links_and_unknown_ones_plain_emphasis():
    lookup = {"sarah o'neil": "3"}

    def resolve(target):
        found = lookup.get(target.lower())
        return TreeDocument(id=found, path="knowledge.x", title=target) if found else None

    rendered = render_wiki_links(
        "See [[Sarah O'Neil]] and [[Sarah O'Neil|her]], not [[Nobody]].", resolve
    )
    assert rendered == (
        "See [Sarah O'Neil](/knowledge?doc=3) and [her](/knowledge?doc=3), not *Nobody*."
    )


def test_wiki_link_labels_are_escaped_and_code_is_left_alone():
    def resolve(_target):
        return TreeDocument(id="7", path="knowledge.x", title="x")

    assert render_wiki_links("[[a*b_c <img>]]", resolve) == (r"[a\*b\_c \<img\>](/knowledge?doc=7)")
    code = "Inline `[[x]]` and\n```\n[[y]]\n```\nthen [[z]]"
    assert render_wiki_links(code, resolve) == (
        "Inline `[[x]]` and\n```\n[[y]]\n```\nthen [z](/knowledge?doc=7)"
    )
