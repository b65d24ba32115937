"""Splitting a file's text into documents no larger than a document may be."""

from __future__ import annotations

from carmenta.knowledge.file_documents import split_for_documents


def test_text_that_fits_stays_one_part():
    assert split_for_documents("One paragraph.\n\nAnother.", limit=100) == [
        "One paragraph.\n\nAnother."
    ]


def test_parts_are_cut_between_paragraphs_and_lose_nothing():
    paragraphs = [f"Paragraph {number} " + "x" * 30 for number in range(10)]
    text = "\n\n".join(paragraphs)

    parts = split_for_documents(text, limit=100)

    assert len(parts) > 1
    assert all(len(part.encode()) <= 100 for part in parts)
    assert all(part.startswith("Paragraph ") for part in parts)
    assert "\n\n".join(parts) == text


def test_a_paragraph_larger_than_a_part_is_cut_between_characters():
    text = "é" * 150  # two bytes each in UTF-8

    parts = split_for_documents(text, limit=101)

    assert [len(part.encode()) for part in parts] == [100, 100, 100]
    assert "".join(parts) == text


def test_blank_text_longer_than_a_part_makes_no_parts():
    assert split_for_documents("   ", limit=1) == []
