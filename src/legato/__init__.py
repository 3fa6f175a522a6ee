"""Legato: a marketer orchestrates autonomous AI marketing agents.

The package follows the marketer's five steps: ``playbook`` (define objectives),
``audience``/``decide``/``guard`` (configure agents), ``monitor`` (monitor and optimize),
``trust`` (escalate exceptions) and ``learn`` (learn and adapt). ``engine`` runs one cycle.
"""

__version__ = "0.1.0"
