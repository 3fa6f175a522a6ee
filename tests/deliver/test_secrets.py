"""Secrets come from the environment or a file it names, and a missing one names the variable, never a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato.deliver.secrets import MissingSecret, secret


def test_a_secret_is_read_from_its_variable() -> None:
    assert secret("channels.email.password", env="SMTP_PASSWORD", environ={"SMTP_PASSWORD": " s3cret\n"}) == "s3cret"


def test_a_secret_is_read_from_the_file_a_variable_names(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    found = secret("channels.sms.auth_token", file_env="TOKEN_FILE", environ={"TOKEN_FILE": str(tmp_path / "token")})
    assert found == "tok-123"


def test_the_variable_wins_and_the_file_is_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    environ = {"TOKEN_FILE": str(tmp_path / "token")}
    assert secret("x.token", env="TOKEN", file_env="TOKEN_FILE", environ=environ) == "from-file"
    assert secret("x.token", env="TOKEN", file_env="TOKEN_FILE", environ={**environ, "TOKEN": "from-env"}) == "from-env"


def test_a_missing_secret_names_the_setting_and_the_variable_only() -> None:
    with pytest.raises(MissingSecret) as caught:
        secret("channels.email.password", env="SMTP_PASSWORD", environ={"OTHER": "hunter2"})
    assert "channels.email.password" in caught.value.message and "SMTP_PASSWORD" in caught.value.message
    assert "hunter2" not in caught.value.message and caught.value.hint


def test_an_unreadable_or_empty_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="cannot read"):
        secret("x.key", file_env="KEY_FILE", environ={"KEY_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(MissingSecret, match="is empty"):
        secret("x.key", file_env="KEY_FILE", environ={"KEY_FILE": str(tmp_path / "empty")})


def test_an_optional_secret_that_is_not_configured_is_none() -> None:
    assert secret("channels.email.password", required=False, environ={}) is None
