"""The offline default embedding model: WordLlama's ``l2_supercat`` 256-dimension weights,
shipped inside the ``wordllama`` wheel (16 MB of token embeddings and a Llama-2 tokenizer).

A text's vector is the mean of its tokens' embeddings, L2-normalised and zero-padded to the
schema's ``vector(1536)`` (the padding leaves cosine similarity unchanged). That is exactly
what ``WordLlamaInference.embed(norm=True)`` computes; byodb reads the two files itself
instead of calling ``WordLlama.load`` because:

- ``WordLlama.load`` looks for the tokenizer in ``wordllama/tokenizer/`` while the wheel
  ships it in ``wordllama/tokenizers/``, then tries ``~/.cache/wordllama`` and then
  downloads it from Hugging Face (and, failing that, asks Hugging Face for Llama-2's
  tokenizer). A server must never fetch code or data at run time.
- importing ``wordllama`` calls ``logging.basicConfig(level=INFO)`` on the root logger.

The files are located through the import system (``importlib.util.find_spec``), which finds
the package wherever it is installed (site-packages, a user site, ``--target``, a
``PYTHONPATH`` entry) without importing it. Loading reads only those two local files:
nothing here opens a socket. The model is loaded once per process, on first use, on the
embedding executor (:mod:`byodb.assistant.cpu`), never on the event loop.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from byodb.assistant.cpu import run_embedding_work
from byodb.content.tables._base import EMBEDDING_DIMENSIONS
from byodb.errors import ByodbError

PACKAGE = "wordllama"
WEIGHTS_FILE = ("weights", "l2_supercat_256.safetensors")
TOKENIZER_FILE = ("tokenizers", "l2_supercat_tokenizer_config.json")
TENSOR = "embedding.weight"
MODEL_DIMENSIONS = 256
MODEL_NAME = "wordllama-l2-supercat-256"
"""Recorded in ``embedding_model`` next to every vector this model made."""


class ModelFilesMissing(ByodbError):
    """The ``wordllama`` package or one of its model files is not installed."""

    code = "embedding_model_missing"
    status = 503


@dataclass(frozen=True)
class ModelFiles:
    weights: Path
    tokenizer: Path


def model_files() -> ModelFiles:
    """Where the installed ``wordllama`` package keeps the weights and the tokenizer."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = ModelFiles(Path(location).joinpath(*WEIGHTS_FILE),
                           Path(location).joinpath(*TOKENIZER_FILE))
        if found.weights.is_file() and found.tokenizer.is_file():
            return found
    raise ModelFilesMissing(
        "the offline embedding model's files were not found in the installed wordllama "
        "package", hint="Install byodb's dependencies (pip install wordllama), or set "
        "BYODB_EMBEDDING_PROVIDER=hashing or an embedding endpoint.")


class WordLlamaWeights:
    """The loaded token embeddings and tokenizer; :meth:`embed` is synchronous CPU work."""

    def __init__(self, files: ModelFiles):
        matrix = load_file(str(files.weights))[TENSOR]
        if matrix.ndim != 2 or matrix.shape[1] != MODEL_DIMENSIONS:
            raise ModelFilesMissing(f"the offline embedding model's weights have shape "
                                    f"{tuple(matrix.shape)}, not (*, {MODEL_DIMENSIONS})")
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        # Tokenizer.from_file reads the local JSON only (from_pretrained would download).
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def embed(self, texts: Sequence[str], dimensions: int = EMBEDDING_DIMENSIONS
              ) -> np.ndarray:
        """Unit vectors, zero-padded to ``dimensions``; all zeros for a text without tokens."""
        out = np.zeros((len(texts), dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        last = self._matrix.shape[0] - 1
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                ids = np.clip(np.asarray(encoding.ids, dtype=np.int64), 0, last)
                out[row, :MODEL_DIMENSIONS] = self._matrix[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


_load_lock = threading.Lock()
_weights: WordLlamaWeights | None = None


def shared_weights() -> WordLlamaWeights:
    """The process's one copy of the model, loaded on the first call (blocking: call it on
    the embedding executor)."""
    global _weights
    with _load_lock:
        if _weights is None:
            _weights = WordLlamaWeights(model_files())
        return _weights


class WordLlamaEmbeddingModel:
    """Semantic embeddings from the shipped WordLlama model (see the module docstring)."""

    name = MODEL_NAME

    def __init__(self, dimensions: int = EMBEDDING_DIMENSIONS):
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        batch = list(texts)
        vectors = await run_embedding_work(
            lambda: shared_weights().embed(batch, self.dimensions))
        rows: list[list[float]] = vectors.tolist()
        return rows
