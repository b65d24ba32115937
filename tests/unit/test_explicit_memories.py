"""Explicit memory requests: where a remembered sentence ends."""

from carmenta.memory.extraction import extract_explicit


def test_a_title_or_abbreviation_does_not_end_the_memory():
    assert [m.content for m in extract_explicit("Remember that my dentist is Dr. Silva")] == [
        "My dentist is Dr. Silva"
    ]
    assert [m.content for m in extract_explicit("I prefer tea, e.g. green tea. Thanks")] == [
        "The user prefers tea, e.g. green tea"
    ]


def test_a_dot_inside_a_word_is_kept_and_a_final_one_dropped():
    assert [m.content for m in extract_explicit("remember that the wifi is abc.def!")] == [
        "The wifi is abc.def"
    ]
