"""The `anchor` command's global options."""

from __future__ import annotations

import logging
import subprocess
import sys

from anchor.cli import configure_logging


def test_verbosity_levels() -> None:
    try:
        assert configure_logging(0) == logging.INFO
        assert logging.getLogger("aiortc").level == logging.WARNING
        assert configure_logging(1) == logging.DEBUG
        assert logging.getLogger("anchor.stream").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("aioice").level == logging.WARNING  # packet logs only with -vv
        configure_logging(2)
        assert logging.getLogger("aioice").level == logging.DEBUG
        assert configure_logging(0, quiet=True) == logging.WARNING
    finally:
        configure_logging(0)


def test_python_dash_m_anchor_is_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "anchor", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "serve" in out.stdout and "--verbose" in out.stdout
