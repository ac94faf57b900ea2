"""The libraries' known noise is filtered, and only it."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import pytest

from imgsearch.utils.quiet import quiet_known_noise


@pytest.fixture()
def restore_lightning_logging():
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero")]
    saved = [(lg, list(lg.handlers), list(lg.filters), lg.propagate) for lg in loggers]
    yield
    for lg, handlers, filters, propagate in saved:
        lg.handlers[:], lg.filters[:], lg.propagate = handlers, filters, propagate


def test_litlogger_tip_is_dropped_and_other_lightning_lines_kept(caplog, restore_lightning_logging):
    quiet_known_noise()
    with caplog.at_level(logging.INFO):
        L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    assert "litlogger" not in caplog.text
    assert "GPU available" in caplog.text  # Lightning's own facts still reach the log


def test_lightning_lines_print_once_through_the_root_handlers(restore_lightning_logging):
    lg = logging.getLogger("lightning.pytorch")
    lg.addHandler(logging.StreamHandler())  # what Lightning adds when imported before logging is set up
    lg.propagate = False
    root = logging.getLogger()
    added = not root.handlers
    if added:
        root.addHandler(logging.NullHandler())
    try:
        quiet_known_noise()
        assert not [h for h in lg.handlers if type(h) is logging.StreamHandler] and lg.propagate
    finally:
        if added:
            root.handlers.clear()


def test_pytree_deprecation_is_ignored_but_other_warnings_are_not():
    quiet_known_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_known_noise()  # re-installs the filter after simplefilter reset the list's front
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
