"""Silence the known, harmless noise of the libraries, so the lines left in a log are the run's own.

* Lightning's "💡 Tip: ... litlogger" advertisement, logged once per trainer;
* torch's ``FutureWarning`` about ``isinstance(treespec, LeafSpec)``, raised from Lightning's own
  ``_pytree`` helper (nothing the project calls);
* every Lightning line printed twice: ``lightning.pytorch`` adds its own console handler when it is
  imported before logging is configured, and Hydra's root handlers then print the line again;
* the eight "setup plugin alembic" / "Context impl" INFO lines of Optuna's SQL storage.

Each filter matches one message or logger, so anything else still gets through.
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
_QUIET_LOGGERS = ("alembic", "alembic.runtime.migration")


class _DropMessages(logging.Filter):
    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


_TIP_FILTER = _DropMessages("litlogger")


def quiet_known_noise() -> None:
    """Install the filters (idempotent); call at the start of an entry point, after logging is set up."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    root = logging.getLogger()
    # a logger's filters see only the records logged to it, so the tip is filtered where it is logged
    for name in (*_LIGHTNING_LOGGERS, *(f"{n}.utilities.rank_zero" for n in _LIGHTNING_LOGGERS)):
        lg = logging.getLogger(name)
        if _TIP_FILTER not in lg.filters:
            lg.addFilter(_TIP_FILTER)
    for name in _LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        if root.handlers:
            # the root's handlers (Hydra's console and file) print Lightning's lines once
            for handler in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
                lg.removeHandler(handler)
            lg.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
