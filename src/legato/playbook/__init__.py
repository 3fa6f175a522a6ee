"""Step 1, define objectives: the playbook file that holds the marketer's strategy.

This package describes a playbook and checks its own shape and references; it imports none
of the packages a playbook configures. Load a playbook with every check through
:func:`legato.validation.load_playbook`.
"""

from legato.playbook.loader import PlaybookError
from legato.playbook.models import Playbook

__all__ = ["Playbook", "PlaybookError"]
