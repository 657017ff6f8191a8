"""The `snn-compress` command line. Each command parses options, calls one library
function and prints its result; all logic lives in the library. One module per
group of commands registers them on the shared Typer app.

Exit codes (docs/safety.md): 0 done, 2 bad input or usage (one line on stderr),
130 interrupted (Ctrl-C at any moment, start-up imports included), 1 internal error.
"""

import os
import signal
import sys


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; Ctrl-C exits 130."""
    try:
        _start_up()
        code = _run()
    except KeyboardInterrupt:
        code = _interrupted()
    sys.exit(code)


def _start_up() -> None:
    """Import what the command needs with Ctrl-C held back, then act on it.

    A KeyboardInterrupt raised inside the initialisation of a native extension
    (onnx's, numba's) can crash the interpreter (SIGSEGV), so an interrupt during
    these imports is only recorded, and raised once they are done.
    """
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupts.append(True))
    try:
        import typer  # noqa: F401

        from . import compress, convert, models, train  # noqa: F401  (register their commands)

        if sys.argv[1:2] and sys.argv[1] not in ("--help", "-h", "--version"):  # a command: load the library
            from .. import compress as _compression, frontends as _frontends  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupts:
        raise KeyboardInterrupt


def _interrupted() -> int:
    try:
        print("interrupted", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # a second Ctrl-C while saying so
        pass
    return 130


def _run() -> int:
    import typer

    from ..errors import SNNError
    from ..outputs import describe_os_error
    from .app import app

    try:  # recent Typer vendors Click privately; older Typer depends on Click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from click import exceptions as click_errors

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
        return _interrupted()
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        return error.exit_code
    except OSError as error:  # the file system's fault (read-only, full, a bad path), not the program's
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        return 2
    except MemoryError:
        typer.echo("error: out of memory; lower --batch-size or --time-steps, or use a smaller data set", err=True)
        return 2
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        return 1


if __name__ == "__main__":
    main()
