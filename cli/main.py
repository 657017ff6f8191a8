"""The `snn-compress` command line. Each command parses options, calls one library
function and prints its result; all logic lives in the library. One module per
group of commands registers them on the shared Typer app.

Exit codes (the contract of docs/ci.md; constants in errors.py): 0 success; 1 a
quality gate failed (outputs written); 2 bad input or usage (one ``error:`` line,
nothing written); 3 an internal error (a bug: one line, or the traceback with
SNN_COMPRESS_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import difflib
import os
import sys

import typer

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, SNNError
from . import compress, models, report, train  # noqa: F401  (register their commands)
from . import bench, convert, schema  # noqa: F401
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


def _usage_message(error) -> str:
    """Click's message, with a misspelled option answered by its closest match only
    (Click lists every option that shares a few letters)."""
    if isinstance(error, click_errors.NoSuchOption) and error.ctx is not None:
        names = [name for param in error.ctx.command.params for name in getattr(param, "opts", []) if name.startswith("-")]
        close = difflib.get_close_matches(error.option_name, names, n=1, cutoff=0.6)
        return f"no such option {error.option_name}" + (f"; did you mean {close[0]}?" if close else "")
    return error.format_message()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (see the module's exit codes)."""
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
        typer.echo(f"error: {_usage_message(error)} (see {command} --help)", err=True)
        return EXIT_BAD_INPUT
    except typer.Exit as done:  # --help, --version
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        return error.exit_code
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    main()
