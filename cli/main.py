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
from . import bench, convert  # noqa: F401
from .app import app

try:  # recent Typer vendors Click privately; older Typer depends on Click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click import exceptions as click_errors


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(f"snn-compress {__version__}")
        raise typer.Exit()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    sys.exit(_run())


def _run() -> int:
    try:
        result = app(standalone_mode=False)  # parse errors reach us instead of a usage box
        return result if isinstance(result, int) else 0
    except click_errors.NoArgsIsHelpError as error:  # `snn-compress` alone shows the help
        typer.echo(error.ctx.get_help())
        return 0
    except click_errors.UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else "snn-compress"
        typer.echo(f"error: {error.format_message()} (see {command} --help)", err=True)
        return 2
    except typer.Exit as done:  # --help, --version
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        return error.exit_code
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        return 1


if __name__ == "__main__":
    main()
