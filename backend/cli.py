"""The `lensguard` command."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from backend.settings import get_settings

    settings = get_settings()
    uvicorn.run("backend.main:app", host=args.host or settings.host, port=args.port or settings.port)


def _up(args: argparse.Namespace) -> None:
    from backend.quickstart import QuickstartOptions, run

    run(
        QuickstartOptions(
            state_dir=args.state_dir,
            label_studio_port=args.label_studio_port,
            backend_port=args.port,
            project_title=args.project,
            frames_dir=args.frames,
            allow_random_weights=not args.strict_weights,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensguard", description="Lens-soiling ML backend for Label Studio")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ML backend HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    up = commands.add_parser("up", help="start Label Studio and the backend with a demo project")
    up.add_argument("--state-dir", type=Path, default=Path(".lensguard"))
    up.add_argument("--label-studio-port", type=int, default=8080)
    up.add_argument("--port", type=int, default=9090, help="backend port")
    up.add_argument("--project", default="lensguard demo", help="Label Studio project title")
    up.add_argument("--frames", type=Path, help="folder of frames to import (default: real dev set or synthetic)")
    up.add_argument(
        "--strict-weights", action="store_true", help="fail instead of serving random weights when none load"
    )
    up.set_defaults(func=_up)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
