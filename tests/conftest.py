"""Shared pytest setup: no network, and ``reference`` importable in every import mode."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

NETWORK_MESSAGE = "network access attempted in tests"

# Hub clients must not even try: set before any test imports transformers/huggingface_hub.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# The "which adapters ran here" record (matalign.adapters._status) goes to a throw-away folder.
os.environ["MATALIGN_CACHE_DIR"] = tempfile.mkdtemp(prefix="matalign-test-cache-")


def _refuse_network(*args, **kwargs):
    raise RuntimeError(NETWORK_MESSAGE)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Make every outgoing connection fail for the whole session.

    Tests (and anything they import) must never reach the network: models and
    data come from installed packages or are generated. A connection attempt
    raises ``RuntimeError("network access attempted in tests")`` instead of
    hanging or silently succeeding.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse_network)
        mp.setattr(socket.socket, "connect_ex", _refuse_network)
        mp.setattr(socket, "create_connection", _refuse_network)
        mp.setattr(socket, "getaddrinfo", _refuse_network)
        yield


# --- GPU canary -----------------------------------------------------------
# Tests marked `cuda` skip with a reason where CUDA is unavailable. On a machine where
# matalign sees a CUDA device, a session in which every such test skipped is a failure (a
# broken build or driver must not pass as "all GPU tests skipped").
_cuda_outcomes = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report):
    if "cuda" not in report.keywords:
        return
    if report.when == "call" and report.passed:
        _cuda_outcomes["passed"] += 1
    elif report.skipped:
        _cuda_outcomes["skipped"] += 1
    elif report.failed:
        _cuda_outcomes["failed"] += 1


def pytest_sessionfinish(session, exitstatus):
    if _cuda_outcomes["skipped"] == 0 or _cuda_outcomes["passed"] > 0:
        return
    try:
        import matalign
        devices = matalign.cuda_device_count()
    except Exception:  # noqa: BLE001 - an import failure is reported by the tests themselves
        return
    if devices > 0 and session.exitstatus == 0:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"GPU canary: {devices} CUDA device(s) visible but all {_cuda_outcomes['skipped']} "
                "cuda tests skipped; failing the session", red=True)
