"""The HTTP API (``legato serve``): a thin face over :mod:`legato.service`, like the CLI.

Modules: ``app`` (the FastAPI app and what every request goes through), ``settings``,
``context`` (the store, clock and playbook a request works with), ``security`` (keys, roles
and what each route admits), ``errors`` (one error body for every failure), ``limits`` (body
sizes and the per-key rate limit), ``routes/`` (one module per resource).
"""

from legato.api.app import create_app
from legato.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
