"""LENSGUARD_LOG_FORMAT=json: one JSON object per log line."""

import json
import logging

import pytest

from settings.logs import configure_logging


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_log_lines(capsys, restore_root_logger):
    configure_logging("json")
    logging.getLogger("lensguard.test").warning("task %s: %s", 7, 'no "image" field')
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("lensguard.test").exception("failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.strip().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "lensguard.test"
    assert first["message"] == 'task 7: no "image" field' and first["time"].endswith("+00:00")
    assert second["message"] == "failed" and "ValueError: bad frame" in second["exception"]


def test_text_log_lines(capsys, restore_root_logger):
    configure_logging("text")
    logging.getLogger("lensguard.test").info("hello")
    assert capsys.readouterr().err.strip().endswith("INFO lensguard.test: hello")
