"""Knowledge-tree paths: slugs from any title, and refusals that say what is wrong."""

from __future__ import annotations

import pytest

from carmenta.knowledge.paths import (
    MAX_DEPTH,
    MAX_LABEL_LENGTH,
    InvalidPath,
    path_from_titles,
    slugify_label,
    validate_path,
)


def test_titles_become_a_path():
    assert path_from_titles(["Knowledge", "People", "Sarah O'Neil"]) == (
        "knowledge.people.sarah_o_neil"
    )


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Café Zürich", "cafe_zurich"),
        ("  Hello,   World!! ", "hello_world"),
        ("Ærøskøbing 2024", "aeroskobing_2024"),
        ("Straße", "strasse"),
        ("a.b.c", "a_b_c"),
        ("___x___", "x"),
        ("ÉCOLE", "ecole"),
        ("C++ & Rust", "c_rust"),
    ],
)
def test_slugify_label_folds_accents_and_collapses_separators(title, slug):
    assert slugify_label(title) == slug


def test_a_long_title_is_cut_to_the_label_limit():
    slug = slugify_label("word " * 40)
    assert len(slug) <= MAX_LABEL_LENGTH
    assert not slug.endswith("_")


@pytest.mark.parametrize("title", ["", "   ", "!!!", "日本語", "🙂"])
def test_a_title_without_letters_or_digits_is_refused_clearly(title):
    with pytest.raises(InvalidPath, match="no letters or digits"):
        slugify_label(title)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "cannot be empty"),
        ("notes.x", "must start with one of: profile, knowledge"),
        ("knowledge..x", "empty label"),
        ("knowledge.x.", "empty label"),
        ("knowledge.Bad", "lowercase letters, digits and underscores"),
        ("knowledge.bad label", "lowercase letters, digits and underscores"),
        ("knowledge." + "a" * (MAX_LABEL_LENGTH + 1), "longer than 64"),
        ("knowledge" + ".a" * MAX_DEPTH, "at most 16"),
    ],
)
def test_invalid_paths_are_refused_with_a_reason(path, message):
    with pytest.raises(InvalidPath, match=message):
        validate_path(path)


def test_valid_paths_pass():
    assert validate_path("profile.identity") == "profile.identity"
    assert validate_path("knowledge") == "knowledge"
    assert validate_path("knowledge" + ".a" * (MAX_DEPTH - 1))
