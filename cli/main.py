"""The `snn-compress` command line. Each command parses options, calls one library
function and prints its result; all logic lives in the library. One module per
group of commands registers them on the shared Typer app."""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
from ..errors import SNNError
from . import compress, models, train  # noqa: F401  (register their commands)
from . import convert  # noqa: F401
from .app import app


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"snn-compress {__version__}")
        raise typer.Exit()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
