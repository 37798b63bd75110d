"""The schema target (``BYODB_SCHEMA_TARGET``) and the DDL of every version: what an
operator types, what they get, and the one-line error for a version that cannot be."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from byodb.content import (
    CONTENT_SCHEMA_VERSION,
    MIN_SUPPORTED_SCHEMA_VERSION,
    content_schema_sql,
    resolve_schema_target,
)
from byodb.content.package import build_package, full_schema_script
from byodb.errors import ConfigurationError
from byodb.settings import Settings
from tests.cli_support import CliResult, run_cli

FROZEN_V1 = Path(__file__).parent.parent / "src" / "byodb" / "content" / "frozen" / "v1.sql"
OUTSIDE = [MIN_SUPPORTED_SCHEMA_VERSION - 1, CONTENT_SCHEMA_VERSION + 1, 99]


def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli(*args, env={"BYODB_SCHEMA_TARGET": None, **(env or {})})


def test_schema_sql_prints_the_frozen_ddl_of_version_1() -> None:
    result = run("schema", "sql", "--version", "1")
    assert result.exit_code == 0, result.stderr
    # The frozen DDL, byte for byte, inside the script that applies it (one transaction,
    # pgvector found first, the byodb_meta record last).
    assert FROZEN_V1.read_text(encoding="utf-8") in result.stdout
    assert result.stdout == full_schema_script(1)
    assert "embedding_model" not in result.stdout


def test_schema_sql_prints_the_latest_by_default_and_on_request() -> None:
    latest = run("schema", "sql", "--version", str(CONTENT_SCHEMA_VERSION))
    assert latest.exit_code == 0, latest.stderr
    assert latest.stdout == full_schema_script() == run("schema", "sql").stdout
    assert content_schema_sql() in latest.stdout
    assert "uq_tags_user_lower_name" in latest.stdout


def test_schema_sql_follows_the_target_when_no_version_is_given() -> None:
    held = run("schema", "sql", env={"BYODB_SCHEMA_TARGET": "1"})
    assert held.exit_code == 0, held.stderr
    assert held.stdout == full_schema_script(1)


@pytest.mark.parametrize("version", ["99", "0"])
def test_schema_sql_of_an_unknown_version_is_a_one_line_error(version: str) -> None:
    result = run("schema", "sql", "--version", version)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: unknown content schema version")
    assert f"versions 1 to {CONTENT_SCHEMA_VERSION}" in result.stderr


@pytest.mark.parametrize("target", OUTSIDE)
def test_a_target_outside_the_supported_versions_is_a_clear_configuration_error(
        target: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_schema_target(target)
    assert "BYODB_SCHEMA_TARGET" in raised.value.message
    assert f"between {MIN_SUPPORTED_SCHEMA_VERSION}" in raised.value.message
    # The check every entry point runs before serving refuses it too.
    with pytest.raises(ConfigurationError, match="BYODB_SCHEMA_TARGET"):
        Settings(BYODB_DATA_DIR=tmp_path, BYODB_SCHEMA_TARGET=target).check_production()


def test_a_command_refuses_a_target_outside_the_supported_versions(tmp_path: Path) -> None:
    # One line, and nothing written.
    out = tmp_path / "package.zip"
    env = {"BYODB_SCHEMA_TARGET": str(CONTENT_SCHEMA_VERSION + 1),
           "BYODB_DATA_DIR": str(tmp_path)}
    exported = run("project", "export", str(out), env=env)
    assert exported.exit_code == 2 and not out.exists()
    assert exported.stderr.startswith("error: BYODB_SCHEMA_TARGET=")
    assert exported.stderr.count("\n") == 1
    printed = run("schema", "sql", env=env)
    assert printed.exit_code == 2 and printed.stdout == ""


def test_the_target_defaults_to_the_latest_and_may_hold_any_supported_version() -> None:
    assert resolve_schema_target(None) == CONTENT_SCHEMA_VERSION
    for version in range(MIN_SUPPORTED_SCHEMA_VERSION, CONTENT_SCHEMA_VERSION + 1):
        assert resolve_schema_target(version) == version


def test_the_package_of_a_held_target_creates_that_version_and_has_no_later_step() -> None:
    archive = zipfile.ZipFile(io.BytesIO(build_package(1)))
    files = {name.split("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()}
    assert json.loads(files["manifest.json"])["schema_version"] == 1
    assert not any(name.startswith("steps/") for name in files)
    assert content_schema_sql(version=1) in files["schema.sql"]
    assert "VALUES (1, 1, gen_random_uuid())" in files["schema.sql"]

    latest = zipfile.ZipFile(io.BytesIO(build_package(CONTENT_SCHEMA_VERSION)))
    names = latest.namelist()
    assert f"byodb-schema-v{CONTENT_SCHEMA_VERSION}/steps/v0002.sql" in names
