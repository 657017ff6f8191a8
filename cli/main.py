"""The `snn-compress` command line. Each command parses options, calls one library
function and prints its result; all logic lives in the library. One module per
group of commands registers them on the shared Typer app.

Exit codes (the contract of docs/ci.md and docs/safety.md; constants in errors.py):
0 success; 1 a quality gate failed (outputs written); 2 bad input or usage, a
file-system fault or too little memory (one ``error:`` line, nothing written); 3 an
internal error (a bug: one line, or the traceback with SNN_COMPRESS_DEBUG=1); 130
interrupted (Ctrl-C at any moment, start-up imports included).
"""

import os
import signal
import sys


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (see the module's exit codes)."""
    try:
        _start_up()
        # POSIX, and where Ctrl-C raises at all (an inherited ignored SIGINT stays ignored: nohup)
        if hasattr(signal, "setitimer") and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
            signal.signal(signal.SIGALRM, _interrupt)
        code = _run()
    except KeyboardInterrupt:
        code = _interrupted()
    sys.exit(code)


_AGAIN_AFTER = 0.01  # seconds after a destructor's Ctrl-C that it is raised again


def _interrupt(signum, frame) -> None:
    """Ctrl-C while a command runs: KeyboardInterrupt, as Python's default handler raises it,
    except inside a destructor (``__del__``: llvmlite's, run by the garbage collector while Numba
    compiles), where Python prints the exception and drops it; such a Ctrl-C was lost and the run
    went on (a CI run of test_safety's Ctrl-C test). There it is raised again by a timer a moment
    later (SIGALRM, this handler again), once the destructor has returned."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            signal.setitimer(signal.ITIMER_REAL, _AGAIN_AFTER)
            return
        frame = frame.f_back
    if not os.environ.get("SNN_COMPRESS_DEBUG"):
        sys.unraisablehook = _unraisable_after_interrupt
    raise KeyboardInterrupt


def _unraisable_after_interrupt(unraisable) -> None:
    """After a Ctrl-C, the failures of destructors are its echoes, not news: a KeyboardInterrupt
    inside llvmlite's ``ObjectRef.__init__`` (Numba compiling) leaves an object whose ``__del__``
    then fails, and Python printed that as "Exception ignored in ..." with a traceback after the
    one "interrupted" line (a CI run of test_safety's Ctrl-C test). They are dropped; the
    default hook prints them again with SNN_COMPRESS_DEBUG=1."""


def _start_up() -> None:
    """Import what the command needs with Ctrl-C held back, then act on it.

    A KeyboardInterrupt raised inside the initialisation of a native extension
    (onnx's, numba's) can crash the interpreter (SIGSEGV), so an interrupt during
    these imports is only recorded, and raised once they are done.
    """
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupts.append(True))
    try:
        _app()
        if sys.argv[1:2] and sys.argv[1] not in ("--help", "-h", "--version"):  # a command: load the library
            from ..compress import Compression  # noqa: F401
            from ..frontends import load_model  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupts:
        raise KeyboardInterrupt


def _app():
    """The Typer app with every command registered."""
    from . import bench, compress, convert, models, report, schema, train  # noqa: F401  (register their commands)
    from .app import app

    return app


def __getattr__(name: str):
    if name == "app":  # `from onnx_snn_compress.cli.main import app`, as before the imports moved into main()
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _interrupted() -> int:
    from ..errors import EXIT_INTERRUPTED

    try:
        print("interrupted", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # a second Ctrl-C while saying so
        pass
    return EXIT_INTERRUPTED


def _usage_message(error, click_errors) -> str:
    """Click's message, with a misspelled option answered by its closest match only
    (Click lists every option that shares a few letters), without the "Value error, "
    that a value's validator puts before its own message, and in the form of every other
    ``error:`` line: lower case, names quoted, a suggestion after a semicolon, no final stop
    ("No such command 'x'. Did you mean 'y'?" -> "no such command 'x'; did you mean 'y'?")."""
    import difflib
    import re

    if isinstance(error, click_errors.NoSuchOption) and error.ctx is not None:
        names = [name for param in error.ctx.command.params for name in getattr(param, "opts", []) if name.startswith("-")]
        close = difflib.get_close_matches(error.option_name, names, n=1, cutoff=0.6)
        return f"no such option '{error.option_name}'" + (f"; did you mean '{close[0]}'?" if close else "")
    message = error.format_message().replace("Value error, ", "").replace(". Did you mean ", "; did you mean ")
    # the parser's "Input should be a valid integer, unable to parse string as an integer"
    message = re.sub(r"Input should be a valid (integer|number), unable to parse string as an? \w+",
                     lambda kind: "expected an integer" if kind[1] == "integer" else "expected a number", message)
    return message[:1].lower() + message[1:].rstrip(".")


def _run() -> int:
    import typer

    from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, SNNError
    from ..outputs import describe_os_error

    app = _app()

    try:  # recent Typer vendors Click privately; older Typer depends on Click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from click import exceptions as click_errors

    try:
        result = app(standalone_mode=False)  # parse errors reach us instead of a usage box
        return result if isinstance(result, int) else 0
    except click_errors.NoArgsIsHelpError:  # `snn-compress` alone: Typer has printed the help already
        return 0
    except click_errors.UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else "snn-compress"
        typer.echo(f"error: {_usage_message(error, click_errors)} (see {command} --help)", err=True)
        return EXIT_BAD_INPUT
    except typer.Exit as done:  # --help, --version
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except SNNError as error:
        typer.echo(f"error: {error}", err=True)
        return error.exit_code
    except OSError as error:  # the file system's fault (read-only, full, a bad path), not the program's
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        return EXIT_BAD_INPUT
    except MemoryError:
        typer.echo("error: out of memory; lower --batch-size or --time-steps, or use a smaller data set", err=True)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug, not a user error: still one line unless asked for more
        if os.environ.get("SNN_COMPRESS_DEBUG"):
            raise
        typer.echo(f"internal error: {type(error).__name__}: {error} (set SNN_COMPRESS_DEBUG=1 for the traceback)", err=True)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    main()
