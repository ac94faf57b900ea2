"""imgsearch-serve keeps PyTorch's idle OpenMP threads from spinning on the cores the HTTP threads need."""

import os
import subprocess
import sys

import pytest

_PROBE = "import os, imgsearch.serve.app, torch; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_serve_sets_a_passive_wait_policy_before_torch_loads_unless_one_is_given(
    given: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == expected
