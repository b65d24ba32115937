"""The Concierge's choices that need no database: the model, the budget, the title."""

import pytest

from carmenta.chat.concierge import choose_model, describe_summary, estimate_tokens, text_query
from carmenta.chat.llm.types import ModelOption
from carmenta.chat.titles import tidy_model_title, title_from_message


def _option(option_id: str, *, vision: bool = False) -> ModelOption:
    return ModelOption(
        id=option_id,
        label=option_id.split(":")[-1],
        provider="openai",
        model=option_id.split(":")[-1],
        vision=vision,
        tools=True,
        context_tokens=128_000,
        source="environment",
    )


TEXT_ONLY = _option("openai:text-only")
SEEING = _option("openai:seeing", vision=True)


def test_an_explicit_choice_wins_even_without_vision_and_says_so():
    chosen, notices = choose_model(
        options=[TEXT_ONLY, SEEING], chosen_id=TEXT_ONLY.id, default_id=None, needs_vision=True
    )
    assert chosen == TEXT_ONLY
    assert notices and "cannot see images" in notices[0]


def test_images_pick_a_vision_model_over_the_default():
    chosen, notices = choose_model(
        options=[TEXT_ONLY, SEEING], chosen_id=None, default_id=TEXT_ONLY.id, needs_vision=True
    )
    assert chosen == SEEING and notices == []


def test_otherwise_the_default_then_the_first_and_offline_when_none():
    assert (
        choose_model(
            options=[TEXT_ONLY, SEEING], chosen_id=None, default_id=SEEING.id, needs_vision=False
        )[0]
        == SEEING
    )
    assert (
        choose_model(
            options=[TEXT_ONLY, SEEING], chosen_id=None, default_id=None, needs_vision=False
        )[0]
        == TEXT_ONLY
    )
    assert choose_model(options=[], chosen_id=None, default_id=None, needs_vision=False) == (
        None,
        [],
    )
    chosen, notices = choose_model(
        options=[TEXT_ONLY], chosen_id="openai:gone", default_id=None, needs_vision=False
    )
    assert chosen == TEXT_ONLY and "no longer available" in notices[0]
    assert choose_model(
        options=[TEXT_ONLY], chosen_id="offline", default_id=None, needs_vision=False
    ) == (None, [])


def test_what_was_used_reads_naturally():
    assert describe_summary({"document": 3, "memory": 2}) == "3 documents, 2 memories"
    assert describe_summary({"memory": 1, "file": 1}) == "1 memory, 1 file"
    assert describe_summary({}) == ""
    assert estimate_tokens("abcd" * 10) == 10


def test_titles_from_the_first_message_and_from_a_model_answer():
    assert title_from_message("Hi, can you help me plan a picnic by the river?") == (
        "Plan a picnic by the river"
    )
    assert title_from_message("   ") == ""
    long_title = title_from_message("one two three four five six seven eight nine")
    assert long_title == "One two three four five six seven…"
    assert tidy_model_title('"Picnic planning."\nmore') == "Picnic planning"
    assert tidy_model_title("Title: Garden work") == "Garden work"


@pytest.mark.parametrize(
    ("question", "searched"),
    [
        ("What do I know about gardens?", "What do I about gardens?"),
        ("Tell me what you remember about Sarah", "me what you about Sarah"),
        ("when should I plant garlic", "when should I plant garlic"),
        # PostgreSQL drops "me" and "you" itself: only the meaning is searched for.
        ("Tell me everything you know", "me you"),
        # Nothing but asking: the question as it is.
        ("know", "know"),
    ],
)
def test_a_full_text_search_requires_the_words_that_name_the_subject(question, searched):
    assert text_query(question) == searched
