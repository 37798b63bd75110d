"""The offline default embedding model: WordLlama's shipped weights, found in the installed
wheel and loaded with the network refused; it finds memories by meaning where the lexical
model cannot, on main and on a user's own database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from byodb.assistant.embeddings import (
    HashingEmbeddingModel,
    embedding_model_from_settings,
)
from byodb.assistant.wordllama_model import (
    MODEL_DIMENSIONS,
    MODEL_NAME,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    WordLlamaEmbeddingModel,
    model_files,
    shared_weights,
)
from byodb.settings import Settings
from tests.conftest import Api, count_rows
from tests.placement import PLACEMENTS, Placed, place_user

# Memories and questions that share no content word: only meaning links them.
PARAPHRASES = (
    ("I have a cat named Miso", "what is my pet called"),
    ("I am allergic to peanuts", "which foods make me sick"),
    ("I work as a nurse at the hospital", "what is my job"),
    ("My sister lives in Lisbon", "where does my sibling stay"),
    ("I am training for a marathon in April", "what race am I preparing for"),
    ("My favourite drink is green tea", "what beverage do I like best"),
)

# Run in a fresh interpreter: every outside name lookup and connection raises, the home
# directory (and so any ~/.cache/wordllama) is empty, then the model is loaded and used.
_NO_NETWORK_LOAD = r"""
import asyncio, ipaddress, json, logging, socket, sys

def _loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect
def getaddrinfo(host, *args, **kwargs):
    if not _loopback(str(host)):
        raise OSError(f"network refused: resolve {host}")
    return _getaddrinfo(host, *args, **kwargs)
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise OSError(f"network refused: connect {address[0]}")
    return _connect(self, address)
socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect

from byodb.assistant.wordllama_model import WordLlamaEmbeddingModel, model_files
vectors = asyncio.run(WordLlamaEmbeddingModel().embed([
    "I have a cat named Miso", "what is my pet called", "the quarterly tax filing deadline"]))
def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))
print(json.dumps({"files": str(model_files().weights), "width": len(vectors[0]),
                  "norm": sum(v * v for v in vectors[0]),
                  "paraphrase": cosine(vectors[0], vectors[1]),
                  "unrelated": cosine(vectors[0], vectors[2]),
                  "wordllama_imported": "wordllama" in sys.modules,
                  "root_handlers": len(logging.getLogger().handlers)}))
"""


def _run_isolated(tmp_path: Path, *, pythonpath: Path | None = None) -> dict[str, object]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, "-c", _NO_NETWORK_LOAD], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_model_loads_and_embeds_with_every_outside_connection_refused(
        tmp_path: Path) -> None:
    result = _run_isolated(tmp_path)
    assert result["width"] == 1536
    assert abs(float(str(result["norm"])) - 1.0) < 1e-5
    # A question about the memory is nearer to it than an unrelated text.
    assert float(str(result["paraphrase"])) > float(str(result["unrelated"])) + 0.1
    # The files come from the installed package, not a cache or a download.
    assert Path(str(result["files"])) == model_files().weights
    # byodb reads the two files itself: the wordllama module (whose import configures the
    # root logger, and whose loader downloads) is never imported.
    assert result["wordllama_imported"] is False
    assert result["root_handlers"] == 0


def test_the_files_are_found_wherever_the_package_is_installed(tmp_path: Path) -> None:
    """A copy of the package elsewhere on the path (as ``pip install --target`` makes) is
    the one loaded; a package without its model files is a clear error."""
    source = model_files()
    elsewhere = tmp_path / "target"
    package = elsewhere / "wordllama"
    for parts, original in ((WEIGHTS_FILE, source.weights), (TOKENIZER_FILE,
                                                             source.tokenizer)):
        (package / parts[0]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, package.joinpath(*parts))
    (package / "__init__.py").write_text("")
    result = _run_isolated(tmp_path, pythonpath=elsewhere)
    assert Path(str(result["files"])) == package.joinpath(*WEIGHTS_FILE)
    assert result["width"] == 1536

    package.joinpath(*WEIGHTS_FILE).unlink()
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-c", "from byodb.assistant.wordllama_model import model_files\n"
         "model_files()"], env={"HOME": str(home), "PYTHONPATH": str(elsewhere),
                                "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "ModelFilesMissing" in done.stderr
    assert "files were not found in the installed wordllama package" in done.stderr


def test_vectors_are_wordllamas_own_unit_vectors_padded_with_zeros() -> None:
    """The same numbers ``WordLlamaInference.embed(norm=True)`` gives, then zeros: cosine
    similarity is the model's own."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    files = model_files()
    reference = WordLlamaInference(load_file(str(files.weights))["embedding.weight"],
                                   Tokenizer.from_file(str(files.tokenizer)))
    texts = [memory for memory, _ in PARAPHRASES] + ["Ünïcödé, emoji 🎉 and 1234"]
    expected = reference.embed(texts, norm=True)
    ours = shared_weights().embed(texts)
    assert ours.shape == (len(texts), 1536)
    assert np.allclose(ours[:, :MODEL_DIMENSIONS], expected, atol=1e-6)
    assert not ours[:, MODEL_DIMENSIONS:].any()
    assert not shared_weights().embed([""]).any()  # nothing to embed: zeros, stored as NULL


async def test_the_default_is_the_semantic_model_and_hashing_stays_available() -> None:
    assert isinstance(embedding_model_from_settings(Settings()), WordLlamaEmbeddingModel)
    assert isinstance(embedding_model_from_settings(Settings(BYODB_EMBEDDING_PROVIDER="offline")),
                      WordLlamaEmbeddingModel)
    assert isinstance(embedding_model_from_settings(Settings(BYODB_EMBEDDING_PROVIDER="hashing")),
                      HashingEmbeddingModel)
    assert WordLlamaEmbeddingModel.name == MODEL_NAME != HashingEmbeddingModel.name
    # The offline model answers each paraphrase with its memory; the lexical one cannot.
    memories = [m for m, _ in PARAPHRASES]
    questions = [q for _, q in PARAPHRASES]
    for model, at_least, at_most in ((WordLlamaEmbeddingModel(), len(PARAPHRASES), None),
                                     (HashingEmbeddingModel(), 0, len(PARAPHRASES) // 2)):
        m = np.array(await model.embed(memories))
        q = np.array(await model.embed(questions))
        right = int(((q @ m.T).argmax(axis=1) == np.arange(len(PARAPHRASES))).sum())
        assert right >= at_least
        if at_most is not None:
            assert right <= at_most


@pytest.fixture(params=PLACEMENTS)
async def ivy(request: pytest.FixtureRequest, api: Api, main_url: str,
              user_db_url: str) -> Placed:
    return await place_user(api, f"ivy-{uuid.uuid4().hex[:6]}", request.param, main_url,
                            user_db_url)


async def test_with_default_settings_a_paraphrased_question_finds_its_memory(
        api: Api, ivy: Placed) -> None:
    ids = {}
    for memory, _ in PARAPHRASES:
        created = await api.post("/api/memories", ivy.user, json={"content": memory})
        assert created.status_code == 201, created.text
        ids[memory] = created.json()["id"]
    assert count_rows(ivy.url, "select count(*) from byodb.memories where user_id = %s and "
                      "embedding_model = %s", ivy.user, MODEL_NAME) == len(PARAPHRASES)
    for memory, question in PARAPHRASES:
        found = await api.get("/api/search", ivy.user,
                              params={"q": question, "mode": "semantic", "limit": 3})
        assert found.status_code == 200, found.text
        items = found.json()["items"]
        assert items and items[0]["id"] == ids[memory], (question, items)
