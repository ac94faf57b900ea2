"""Long loops: a bar only on a terminal, one summary line in the log."""

from __future__ import annotations

import logging

import pandas as pd
from PIL import Image

from imgsearch.data.images import verify_images
from imgsearch.utils import progress as progress_module
from imgsearch.utils.progress import progress


def test_no_bar_off_a_terminal_and_one_summary_line(caplog, capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "is_terminal", lambda: False)
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        assert list(progress(range(5), total=5, desc="counting", logger=log, unit="item")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""  # no bar in a log file
    lines = [r.getMessage() for r in caplog.records if r.name == "test.progress"]
    assert len(lines) == 1 and lines[0].startswith("counting: 5 items in ")


def test_bar_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "is_terminal", lambda: True)
    list(progress(range(3), total=3, desc="drawing", logger=logging.getLogger("test.progress")))
    assert "drawing" in capsys.readouterr().err


def test_image_verification_logs_its_summary(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress_module, "is_terminal", lambda: False)
    paths = []
    for i in range(3):
        Image.new("RGB", (8, 8), (i, i, i)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    df = pd.DataFrame({"item_id": ["a", "b", "c"], "image_path": paths})
    with caplog.at_level(logging.INFO, logger="imgsearch.data.images"):
        verify_images(df, workers=1)
    assert any(r.getMessage().startswith("verifying images: 3 images in ") for r in caplog.records)
