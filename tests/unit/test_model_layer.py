"""The model layer's pure parts: capabilities, labels, settings, tolerant extraction."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from carmenta.chat.llm import ChatTurn, ImageInput, ToolCall, ToolResult, anthropic_api, openai_api
from carmenta.chat.llm.capabilities import capabilities_for, default_label
from carmenta.memory.model_extraction import MAX_PROPOSALS, parse_extraction
from carmenta.settings import Settings


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("model", "vision", "tools", "context"),
    [
        ("claude-sonnet-5-5", True, True, 200_000),
        ("gpt-4.1-mini", True, True, 1_047_576),
        ("openai/gpt-4o", True, True, 128_000),
        ("llama3.1:8b", False, True, 128_000),
        ("some-new-model", False, False, 8_192),
    ],
)
def test_known_families_have_defaults_and_unknown_models_are_modest(model, vision, tools, context):
    found = capabilities_for(model, settings())
    assert (found.vision, found.tools, found.context_tokens) == (vision, tools, context)


def test_overrides_prefer_the_exact_name_then_the_first_glob():
    configured = settings(
        model_capabilities=json.dumps(
            {"llama*": {"vision": True}, "llama3.1:8b": {"context_tokens": 4096}}
        )
    )
    exact = capabilities_for("llama3.1:8b", configured)
    assert (exact.vision, exact.tools, exact.context_tokens) == (False, True, 4096)
    assert capabilities_for("llama3.2", configured).vision is True


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "MODEL_CAPABILITIES is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"m": {"vision": "yes"}}', "['vision'] must be a bool"),
        ('{"m": {"context_tokens": true}}', "must be a int"),
        ('{"m": {"speed": 3}}', "unknown key 'speed'"),
        ('{"m": {"context_tokens": 0}}', "must be positive"),
    ],
)
def test_bad_capability_settings_are_refused_with_the_reason(raw, message):
    with pytest.raises(ValidationError) as refused:
        settings(model_capabilities=raw)
    assert message in str(refused.value)


def test_model_settings_read_lists_and_keep_keys_secret():
    configured = settings(
        anthropic_api_key="sk-ant-secret",
        anthropic_models=" claude-a , claude-b,,claude-a",
        openai_base_url="http://localhost:11434/v1/",
    )
    assert configured.anthropic_model_names == ["claude-a", "claude-b"]
    assert configured.openai_base_url == "http://localhost:11434/v1"
    assert configured.openai_model_names is None and configured.uses_environment_openai
    assert "sk-ant-secret" not in repr(configured)
    assert settings(anthropic_api_key="  ").anthropic_api_key is None
    with pytest.raises(ValidationError, match="must look like https://"):
        settings(openai_base_url="localhost:11434")


@pytest.mark.parametrize(
    ("model", "label"),
    [
        ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
        ("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet"),
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
        ("gpt-4.1-mini", "GPT-4.1 mini"),
        ("mistral-small", "mistral-small"),
    ],
)
def test_model_names_read_as_people_say_them(model, label):
    assert default_label(model) == label


def test_empty_turns_are_left_out_of_both_formats():
    turns = [ChatTurn("user", "  "), ChatTurn("assistant", ""), ChatTurn("user", "hi")]
    assert anthropic_api.messages(turns) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]
    assert openai_api.messages("", turns) == [{"role": "user", "content": "hi"}]


def test_tool_errors_are_flagged_in_each_format():
    turn = ChatTurn("user", tool_results=[ToolResult("c1", "boom", is_error=True)])
    assert anthropic_api.messages([turn])[0]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "boom", "is_error": True}
    ]
    assert openai_api.messages("", [turn]) == [
        {"role": "tool", "tool_call_id": "c1", "content": "Error: boom"}
    ]


def test_openai_itself_gets_max_completion_tokens():
    turns = [
        ChatTurn("user", "x", images=[ImageInput("image/jpeg", b"\xff\xd8")]),
        ChatTurn("assistant", tool_calls=[ToolCall("c", "f", {})]),
    ]
    official = openai_api.request(
        model="gpt-4.1",
        system="",
        turns=turns,
        tools=[],
        max_tokens=5,
        base_url="https://api.openai.com/v1",
    )
    assert official["max_completion_tokens"] == 5 and "max_tokens" not in official


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "nothing to remember",
        "```json\n[\n```",
        '{"content": "not in a list"}',
        "[1, 2, 3]",
        '[{"content": "   ", "kind": "fact"}]',
        '[{"content": "The user likes jazz", "confidence": true}]',
        '[{"content": "The user likes jazz", "confidence": "very"}]',
        '[{"content": "The user likes jazz", "confidence": NaN}]',
    ],
)
def test_unreadable_model_answers_give_nothing_and_never_raise(answer):
    assert parse_extraction(answer) == []


def test_model_answers_are_capped_and_tidied():
    items = [
        {"content": f"  The user  owns   boat {index} ", "kind": "FACT", "confidence": "90%"}
        for index in range(12)
    ]
    found = parse_extraction(json.dumps({"memories": items}))
    assert len(found) == MAX_PROPOSALS
    assert found[0].proposal.content == "The user owns boat 0"
    assert found[0].proposal.kind == "fact" and found[0].confidence == 0.9
