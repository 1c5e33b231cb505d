"""Shared by the package's tests (scripts/test-python runs them in a fresh venv).

The library needs a Level Zero driver: scripts/test-python points
ZE_ENABLE_ALT_DRIVERS at the project's software driver before pytest starts
(the loader reads it at start-up, never later). Tests that need a fresh
allocator (configuration before start, the PrivateUse1 backend, imports
without torch) run in a subprocess of their own; the others share this
process, whose allocator PyTorch uses once ``enabled`` ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("ZE_ENABLE_ALT_DRIVERS") and not os.path.exists("/dev/dri"):
        raise pytest.UsageError(
            "no Level Zero driver: set ZE_ENABLE_ALT_DRIVERS to the software driver "
            "(target/release/libze_software_driver.so) before running pytest, as scripts/test-python does"
        )


def run_python(code: str, *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter of this venv; fails the test on a non-zero exit if ``check``."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"subprocess exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def last_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON object a subprocess printed last."""
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{") or line.startswith("["):
            return json.loads(line)
    pytest.fail(f"no JSON in the subprocess's output\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


@pytest.fixture(scope="session")
def torch():
    import torch as torch_module

    return torch_module


@pytest.fixture(scope="session")
def xha():
    import xpu_caching_host_allocator

    return xpu_caching_host_allocator


@pytest.fixture(scope="session")
def enabled(torch, xha):
    """This process's allocator, registered with PyTorch."""
    xha.enable()
    return xha
