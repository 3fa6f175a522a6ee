"""The legal floor that applies even when a playbook says nothing about it.

For text messages to US numbers the TCPA forbids marketing before 8:00 and after 21:00 in the
recipient's local time, and Florida's telemarketing law (Fla. Stat. § 501.616, as amended in
2023) narrows that to 20:00 and allows at most 3 messages on the same subject in 24 hours.
When a playbook declares the SMS channel but no SMS quiet hours of its own, these rules are
added; a playbook that writes its own SMS quiet hours takes responsibility for them.
"""

from __future__ import annotations

from datetime import time

from legato.playbook.models import ChannelKind, FrequencyCap, Guardrails, Playbook, QuietHours

TCPA = QuietHours(id="tcpa_quiet_hours", channel=ChannelKind.sms, start=time(21, 0), end=time(8, 0), on_block="delay", region="US")
FLORIDA_HOURS = QuietHours(id="florida_quiet_hours", channel=ChannelKind.sms, start=time(20, 0), end=time(8, 0), on_block="delay", region="US-FL")
FLORIDA_CAP = FrequencyCap(id="florida_3_texts_a_day", channel=ChannelKind.sms, max=3, days=1, on_block="drop", region="US-FL")


def guardrails_in_force(playbook: Playbook) -> Guardrails:
    """The playbook's guardrails plus the legal defaults it did not state itself."""
    rules = playbook.guardrails
    texts = ChannelKind.sms in playbook.channels
    if not texts or any(q.channel == ChannelKind.sms for q in rules.quiet_hours):
        return rules
    return rules.model_copy(
        update={
            "quiet_hours": [*rules.quiet_hours, TCPA, FLORIDA_HOURS],
            "frequency_caps": [*rules.frequency_caps, FLORIDA_CAP],
        }
    )
