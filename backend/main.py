"""ASGI entry point: `uvicorn backend.main:app`."""

import logging

from backend.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per image fetch is noise
app = create_app()
