"""What each role of a process builds (``runtime.open_process``): an operator command opens
main, the key ring and the job queue, and no model, so a model setting that stops the app
does not stop the operator's commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from byodb.cli.main import app
from byodb.errors import ByodbError
from byodb.runtime import build_runtime
from byodb.settings import Settings, get_settings


@pytest.fixture
def deployment(tmp_path: Path, main_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("BYODB_DATABASE_URL", main_url)
    monkeypatch.setenv("BYODB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BYOD_ENCRYPTION_KEY", "ab" * 32)
    for name in ("BYODB_LLM_BASE_URL", "BYODB_EMBEDDING_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    yield main_url
    get_settings.cache_clear()


def test_operator_commands_run_with_a_model_setting_that_stops_the_app(
        deployment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYODB_EMBEDDING_PROVIDER", "openai")  # and no BYODB_LLM_BASE_URL
    settings = Settings()
    with pytest.raises(ByodbError, match="needs BYODB_LLM_BASE_URL"):
        build_runtime(settings, deployment)  # what serve and worker build
    for args in (["migrations", "status", "--json"], ["instances", "list", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert json.loads(result.stdout.splitlines()[-1])

