"""Where the monitors' alerts go: the playbook's ``alerts:`` section.

::

    alerts:
      destinations:
        - {kind: slack, url_env: SLACK_ALERTS_URL}            # a Slack-compatible incoming webhook
        - {kind: email, to: [ops@shop.example], kinds: [stop_loss]}  # through channels.email (kind smtp)
      give_up_after: 24h

Every alert is also written to the log (``legato.alerts``), configured or not. The webhook's
URL is a secret (whoever has it can post to the channel): the playbook names the variable
that holds it, never the URL. ``kinds`` chooses the kinds of alert a destination takes (all by
default). ``name`` tells two destinations of one kind apart in the delivery records
(``legato alerts list``); by default it is the kind.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from legato.playbook.channels import EnvName
from legato.playbook.schedule import parse_duration

_ADDRESS = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="lower_snake_case name")]


class AlertOn(str, Enum):
    """The kinds of alert (legato.store.status.AlertKind spells the same values)."""

    stop_loss = "stop_loss"
    anomaly = "anomaly"


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Name | None = Field(None, description="Tells two destinations of one kind apart; the kind by default.")
    # Not ``on:``: YAML 1.1 reads a bare ``on`` as the boolean true.
    kinds: list[AlertOn] = Field(default_factory=lambda: list(AlertOn), min_length=1, description="The kinds of alert it takes (all by default).")

    @property
    def key(self) -> str:
        return self.name or str(getattr(self, "kind"))

    def takes(self, kind: str) -> bool:
        return kind in {k.value for k in self.kinds}


class SlackDestination(_Destination):
    """A POST of Slack's incoming-webhook JSON (``text`` and ``blocks``) to the URL the variable holds."""

    kind: Literal["slack"] = "slack"
    url_env: EnvName = Field(description="The variable holding the webhook's URL (a secret: never in the playbook).")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for the receiver's answer.")


class EmailDestination(_Destination):
    """An e-mail to each address, through the playbook's SMTP channel ``channel``."""

    kind: Literal["email"] = "email"
    to: list[str] = Field(min_length=1, description="The addresses.")
    channel: str = Field("email", description="The playbook's channel (of kind smtp) that carries the e-mail.")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _ADDRESS.match(address):
                raise ValueError(f"'{address}' is not an e-mail address (name@domain)")
        return value


Destination = Annotated[Union[SlackDestination, EmailDestination], Field(discriminator="kind")]


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    destinations: list[Destination] = Field(default_factory=list, description="Where alerts go besides the log.")
    give_up_after: str = Field("24h", description="Retry a failing delivery until the alert is this old: 90m, 24h, 2d.")

    @field_validator("give_up_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _unique(self) -> AlertSettings:
        seen: set[str] = {"log"}  # the log is always a destination, under that name
        for destination in self.destinations:
            if destination.key in seen:
                raise ValueError(f"two destinations are called '{destination.key}': give each a name (other than log)")
            seen.add(destination.key)
        return self

    @property
    def give_up(self) -> timedelta:
        return parse_duration(self.give_up_after)
