"""The console's pages, one module each, each an ``APIRouter`` named ``router``
(:data:`legato.console.app.PAGES` lists them): ``sign_in`` (sign in and out), ``live`` (the
event stream the pages listen to), ``overview`` (``/``), ``agents``, ``review``, ``decisions``
(decisions and the audit log), ``playbook``."""
