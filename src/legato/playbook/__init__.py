"""Step 1, define objectives: the playbook file that holds the marketer's strategy."""

from legato.playbook.loader import PlaybookError, load_playbook
from legato.playbook.models import Playbook

__all__ = ["Playbook", "PlaybookError", "load_playbook"]
