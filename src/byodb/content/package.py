"""The manual-deployment package (the seeds' fallback): everything a user needs to create or
upgrade the content schema on their database by hand with ``psql``, then press verify.

Contents of the zip (all plain text, reproducible for a given version):

- ``README.md`` — what it is and the exact commands;
- ``schema.sql`` — the full schema of the package's version (the operator's target,
  ``BYODB_SCHEMA_TARGET``, by default the latest), in one transaction, recording the
  version in ``byodb.byodb_meta`` (so the app recognises the database as deployed);
- ``steps/v000N.sql`` — one file per version step up to the package's version, each in one
  transaction, for a database already at N-1;
- ``manifest.json`` — version, changelog and SHA-256 of every file.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from byodb.content.ddl import content_schema_sql, meta_insert_sql
from byodb.content.steps import VERSION_STEPS
from byodb.content.tables import CONTENT_SCHEMA
from byodb.content.version import CONTENT_SCHEMA_VERSION, SCHEMA_CHANGELOG

# A fixed timestamp keeps the archive byte-for-byte reproducible.
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


# Run first by every script (the full schema and each step), as the user who applies it:
# pgvector is used where an administrator enabled it (``public`` on Neon and RDS,
# ``extensions`` on Supabase) or, when it is missing, created where those providers put it;
# then the script's search path is the one byodb pins on every transaction
# (``byodb.instances.connection.session.SEARCH_PATH_SQL``: built-ins first, the content
# schema, pgvector's schema), so ``vector``, its operators and operator classes resolve.
# A DO block, not psql variables, so any SQL client can run the script.
PGVECTOR_PREAMBLE = f"""\
-- pgvector where your provider enabled it (or, missing, created where providers put it),
-- then byodb's search path for this session: pg_catalog, {CONTENT_SCHEMA}, pgvector's schema.
DO $byodb$
DECLARE
  vector_schema name;
BEGIN
  SELECT n.nspname INTO vector_schema FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
    WHERE e.extname OPERATOR(pg_catalog.=) 'vector'::pg_catalog.name;
  IF vector_schema IS NULL THEN
    vector_schema := CASE WHEN pg_catalog.to_regnamespace('extensions') IS NOT NULL
                          THEN 'extensions' ELSE 'public' END;
    EXECUTE pg_catalog.format('CREATE EXTENSION vector SCHEMA %I', vector_schema);
  END IF;
  PERFORM pg_catalog.set_config('search_path', 'pg_catalog, {CONTENT_SCHEMA}, '
    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(vector_schema), false);
END
$byodb$;

"""


def full_schema_script(version: int = CONTENT_SCHEMA_VERSION) -> str:
    """The script that creates ``version`` on an empty database, applied by its owner with
    psql: pgvector found (or created), the DDL, and the ``byodb_meta`` record with an
    instance id the database makes itself — after it the connection test says ``ok``."""
    return (
        f"-- byodb content schema, version {version}. Apply once to an empty database:\n"
        "--   psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -f schema.sql\n"
        "-- Everything runs in one transaction: it completes or changes nothing.\n\n"
        "BEGIN;\n\n" + PGVECTOR_PREAMBLE + content_schema_sql(version=version)
        + meta_insert_sql(version) + "\nCOMMIT;\n"
    )


def step_script(version: int, statements: tuple[str, ...]) -> str:
    body = "".join(f"{statement.rstrip().rstrip(';')};\n\n" for statement in statements)
    return (
        f"-- byodb content schema step: version {version - 1} -> {version}.\n"
        f"-- {SCHEMA_CHANGELOG.get(version, '')}\n"
        "-- Apply only to a database at the previous version; one transaction.\n\n"
        "BEGIN;\n\n" + PGVECTOR_PREAMBLE +
        f"DO $$ BEGIN IF (SELECT schema_version FROM {CONTENT_SCHEMA}.byodb_meta WHERE id = 1)"
        f" <> {version - 1} THEN RAISE EXCEPTION 'this step needs schema version "
        f"{version - 1}'; END IF; END $$;\n\n"
        + body
        + f"UPDATE {CONTENT_SCHEMA}.byodb_meta SET schema_version = {version}, "
        "updated_at = now() WHERE id = 1;\n\nCOMMIT;\n"
    )


def _steps_up_to(version: int) -> list[int]:
    return sorted(v for v in VERSION_STEPS if v <= version)


def _readme(version: int) -> str:
    steps = _steps_up_to(version)
    step_lines = "\n".join(f"- `steps/v{v:04d}.sql`: version {v - 1} → {v}. "
                           f"{SCHEMA_CHANGELOG.get(v, '')}" for v in steps) or \
        "- (none yet: version 1 is the first version)"
    return f"""# byodb manual deployment package — schema version {version}

Use this when the app cannot deploy to your database itself (for example, your database only
accepts connections from your own network during setup). It creates the same schema the
automatic deployment creates, in a schema named `byodb`, next to anything else your
database holds.

## Requirements

- PostgreSQL 14 or newer, with the pgvector extension available
  (`CREATE EXTENSION vector` must work for the user you run this as).
- `psql` installed on your computer.

## A new database

```sh
psql "postgresql://USER:PASSWORD@HOST:5432/DATABASE" -v ON_ERROR_STOP=1 -f schema.sql
```

The script runs in one transaction: it either completes or leaves the database unchanged.

## A database already at an older version

Apply each step file after the version your database has, in order:

{step_lines}

```sh
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f steps/v0002.sql
```

Your version is in `SELECT schema_version FROM byodb.byodb_meta;`.

## Then

Go back to **Settings → Database**, paste the same URL and press **Test connection**: it
reports the deployed version. **Save & deploy** then connects without creating anything.

Do not edit the `byodb` schema by hand afterwards: updates are applied by the app.
`manifest.json` lists the SHA-256 of every file in this package.
"""


def build_package(version: int = CONTENT_SCHEMA_VERSION) -> bytes:
    """The zip archive for schema ``version`` as bytes (deterministic for a given code
    version); ``ValueError`` for a version this code cannot create."""
    files: dict[str, str] = {"schema.sql": full_schema_script(version)}
    for step_version in _steps_up_to(version):
        files[f"steps/v{step_version:04d}.sql"] = step_script(step_version,
                                                              VERSION_STEPS[step_version])
    files["README.md"] = _readme(version)
    manifest = {
        "package": "byodb-content-schema",
        "schema_version": version,
        "changelog": {str(k): v for k, v in sorted(SCHEMA_CHANGELOG.items()) if k <= version},
        "files": {name: hashlib.sha256(text.encode()).hexdigest()
                  for name, text in sorted(files.items())},
    }
    files["manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"byodb-schema-v{version}/{name}", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
