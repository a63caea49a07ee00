"""`python -m service [--store DIR] [--host H] [--port P] ...`: serve a model store over HTTP.

Every option is also an environment variable with the prefix ZOOSERVE_ (the command line wins). The
server stops gracefully on SIGTERM / SIGINT: it stops accepting, finishes the requests in flight
(up to --graceful-shutdown-s), drains the batchers, and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import typing
from pathlib import Path

from pydantic import ValidationError

from service.settings import Settings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="ZooServe: serve the models of a store on onnxruntime over HTTP (Open Inference Protocol). "
        "Every option is also an environment variable ZOOSERVE_<OPTION>.",
    )
    for name, field in Settings.model_fields.items():
        env = f"ZOOSERVE_{name.upper()}"
        help_text = f"{(field.description or '').strip()} [env {env}; default {field.default!r}]"
        help_text = help_text.replace("%", "%%")
        annotation = field.annotation
        args = typing.get_args(annotation)
        if annotation is bool:
            parser.add_argument(_flag(name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(annotation) is typing.Literal:
            parser.add_argument(_flag(name), choices=args, default=None, help=help_text)
        else:
            parser.add_argument(_flag(name), default=None, metavar=name.upper(), help=help_text)
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Command-line options over environment variables over defaults."""
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    return Settings(**given)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not Path(settings.store).is_dir():
        logging.getLogger("zooserve").error("the store %s is not a folder", settings.store)
        return 2

    import uvicorn

    from service.rest.app import create_app
    from service.rest.protocol import HttpProtocol

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=HttpProtocol,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=30,
        log_config=None,
    )
    server = uvicorn.Server(config)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handlers found here: make that
    # a clean exit (0 after SIGTERM) rather than death by signal. A failed start-up exits 3 (uvicorn).
    signal.signal(signal.SIGTERM, _exit_with(0))
    signal.signal(signal.SIGINT, _exit_with(130))
    server.run()
    return 0 if server.started else 3


def _exit_with(code: int):
    def handler(signum, frame):
        raise SystemExit(code)

    return handler


if __name__ == "__main__":
    sys.exit(main())
