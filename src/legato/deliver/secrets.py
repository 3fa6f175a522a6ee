"""Secrets a transport needs (an SMTP password, a provider's token, a signing key), read from
the environment at the moment a transport is built.

The playbook names where a secret is, never the secret: ``password_env: SMTP_PASSWORD``
(the variable holds it) or ``password_file_env: SMTP_PASSWORD_FILE`` (the variable holds
the path of a file with it, as container secrets are mounted). A missing or empty secret is
a :class:`MissingSecret` that names the setting and the variable, and never a value, so it
can be printed and logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from legato.errors import Invalid


class MissingSecret(Invalid):
    """A secret the playbook points to is not there."""


def secret(
    setting: str,
    *,
    env: str | None = None,
    file_env: str | None = None,
    required: bool = True,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The secret ``setting`` (e.g. ``channels.email.password``) from the variable ``env``, or
    from the file the variable ``file_env`` names; None when neither is configured and it is
    not ``required``. Surrounding whitespace (a file's trailing newline) is dropped."""
    environ = os.environ if environ is None else environ
    if env:
        value = environ.get(env, "").strip()
        if value:
            return value
        if not file_env:
            raise MissingSecret(f"{setting}: the environment variable {env} is not set or empty",
                                hint=f"export {env}=… in the environment of this process (the playbook only names the variable)")
    if file_env:
        path_text = environ.get(file_env, "").strip()
        if not path_text:
            raise MissingSecret(f"{setting}: the environment variable {file_env} is not set",
                                hint=f"set {file_env} to the path of a file holding the secret")
        path = Path(path_text)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MissingSecret(f"{setting}: cannot read the file {file_env} names ({path}): {exc.strerror or type(exc).__name__}",
                                hint="make the file readable by this user, or point the variable at the right file") from None
        if not value:
            raise MissingSecret(f"{setting}: the file {file_env} names ({path}) is empty", hint="write the secret into that file")
        return value
    if required:
        raise MissingSecret(f"{setting}: no secret configured", hint=f"name an environment variable with {setting.rsplit('.', 1)[-1]}_env")
    return None
