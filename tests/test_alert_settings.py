"""Alert email settings: a malformed ``BYODB_SMTP_URL`` is refused with a sentence that
never repeats the URL (it may hold the password), before anything is sent or written; a
parsed one never shows its password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from byodb.alerts import parse_smtp_url
from byodb.errors import ConfigurationError
from tests.conftest import count_rows

SECRET = "pw-that-must-not-show"


@pytest.mark.parametrize("raw", [f"http://ops:{SECRET}@mail.test:25",
                                 f"smtp://ops:{SECRET}@:25",
                                 f"smtp://ops:{SECRET}@mail.test:port"])
def test_malformed_smtp_url_is_refused_without_repeating_it(raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_smtp_url(raw)
    assert "BYODB_SMTP_URL" in refused.value.message
    assert SECRET not in str(refused.value)


def test_parsed_smtp_url_never_shows_its_password() -> None:
    config = parse_smtp_url(f"smtp://ops%40corp:{SECRET}@mail.test:2525")
    assert (config.host, config.port, config.username) == ("mail.test", 2525, "ops@corp")
    assert config.password is not None and config.password.reveal() == SECRET
    assert SECRET not in repr(config) and SECRET not in config.redacted()
    assert parse_smtp_url("smtps://mail.test").port == 465


def test_operator_command_with_a_malformed_smtp_url_says_so_and_sweeps_nothing(
        main_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(tmp_path),
           "BYOD_ENCRYPTION_KEY": "ab" * 32,  # the deployment's key (operator commands
           "BYODB_SMTP_URL": f"smtp://ops:{SECRET}@mail.test:nope"}  # never make one)
    result = subprocess.run([sys.executable, "-m", "byodb.cli.main", "health-check"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "error: BYODB_SMTP_URL is malformed" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert count_rows(main_url, "select count(*) from health_sweeps") == 0
