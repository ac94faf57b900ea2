"""The serve benchmark's closed-loop floor (Little's law), which says when its p95 goal is out of reach."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_serve import closed_loop_floor  # noqa: E402


def test_floor_is_clients_over_rate_in_single_client_p50s() -> None:
    # 16 waiting clients at 1,000 answers/s spend 16 ms each on average: 4x a 4 ms single-client p50
    assert closed_loop_floor(16, 1000.0, 4.0) == pytest.approx(4.0)
    # a faster server lowers the floor, a faster single answer raises it
    assert closed_loop_floor(16, 2000.0, 4.0) == pytest.approx(2.0)
    assert closed_loop_floor(16, 1000.0, 2.0) == pytest.approx(8.0)


@pytest.mark.parametrize(("rate", "p50"), [(0.0, 3.0), (100.0, 0.0), (-1.0, 3.0)])
def test_floor_refuses_non_positive_inputs(rate: float, p50: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        closed_loop_floor(16, rate, p50)
