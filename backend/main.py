"""ASGI entry point: `uvicorn backend.main:app`."""

from backend.app import create_app
from settings import get_settings
from settings.logs import configure_logging

configure_logging(get_settings().log_format)
app = create_app()
