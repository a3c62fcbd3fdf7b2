"""The failure policy of the ``rnn-sweep`` command, in one place: exception -> one line + exit code.

Exit codes (documented in docs/reliability.md):

* ``2`` -- bad input of any kind, ours or Hydra's: an invalid value, an unknown
  key, bad override syntax, a missing config-group option, a run or sweep
  directory that holds files rnn-sweep did not write, a directory another run
  or sweep is using, a finished run of another config in the way. Nothing was
  trained and nothing was written.
* ``1`` -- a run failed (training raised, the output could not be written) or
  a single run diverged; a sweep with any failed job (after the others
  trained and the sweep was aggregated).
* ``130`` -- interrupted (Ctrl-C); ``143`` -- terminated (SIGTERM). One line says
  what was stopped; a rerun resumes it (finished runs are kept).
* ``0`` -- otherwise.

Every message is one line on stderr starting ``rnn-sweep: error:``; a run's
traceback, if any, is in its log. Hydra prints its own errors with a traceback
and exits 1; :func:`rnn_sweep.launch.cli.main` asks Hydra to raise instead
(``HYDRA_FULL_ERROR``) and reports them here, unless the user set that
variable to see the full trace.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

OK, RUN_FAILED, BAD_INPUT = 0, 1, 2
PREFIX = "rnn-sweep: error: "
# Set once the command got past composing its config (a callback ran): an unexpected
# exception after that point is a failure of the run, before it one of the input.
STARTED = False
# (exit code, message) of every sweep job that failed or was refused, as the sweep process
# learnt it: from the outcomes on its launcher's JobReturns, or rnn_sweep.launch.hydra_glue.record_failure.
JOB_FAILURES: list[tuple[int, str]] = []
_SIGNAL = {"number": signal.SIGINT}  # the signal that stopped the command


def _terminated(signum: int, frame) -> None:
    _SIGNAL["number"] = signum
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Make SIGTERM stop the command the way Ctrl-C does: unwinding, so launchers end their workers.

    Killed by SIGTERM's default action, a ``cores`` sweep left its joblib
    workers' semaphores to the resource tracker ("leaked semaphore objects")
    and its lock and worker entries behind; unwinding runs every cleanup.
    """
    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:
        pass  # not the main thread (rnn-sweep embedded in another program): leave its handler


def interrupted(kind: str | None, path: str | None) -> int:
    """Print the one line for an interrupted command; return its exit status (130 Ctrl-C, 143 SIGTERM).

    A second Ctrl-C while the command tidies up (locks, worker entries) is
    ignored: it would end the cleanup with a traceback.
    """
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(number, signal.SIG_IGN)
        except ValueError:
            pass  # not the main thread
    how = "terminated (SIGTERM)" if _SIGNAL["number"] == signal.SIGTERM else "interrupted"
    if kind == "sweep":
        text = (f"{how}: the sweep in {path} was stopped; rerunning the same command resumes it "
                "(finished runs are kept, unfinished ones train again)")
    elif kind == "run":
        text = (f"{how}: the run in {path} was stopped before it finished; rerunning the same command "
                "(same hydra.run.dir) trains it again")
    else:
        text = f"{how} before anything was trained; nothing was written"
    print(f"rnn-sweep: {text}", file=sys.stderr)
    sys.stderr.flush()
    return 128 + int(_SIGNAL["number"])


def _bad_input_types() -> tuple[type, ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rnn_sweep.task.config import ConfigError
    from rnn_sweep.run.locks import Locked
    from rnn_sweep.run.records import UnsafeDirectory
    from rnn_sweep.run.job import ConfigMismatch

    return ConfigError, UnsafeDirectory, Locked, ConfigMismatch, HydraException, OmegaConfBaseException


def exit_code(err: BaseException) -> int:
    """The exit status for an exception that ends the command (see the module docstring)."""
    if isinstance(err, _bad_input_types()):
        return BAD_INPUT
    if isinstance(err, OSError):
        return RUN_FAILED
    return RUN_FAILED if STARTED else BAD_INPUT


def one_line(text: str) -> str:
    """Collapse a (Hydra) multi-line message to one line, without Hydra's search-path dump."""
    text = text.split("\nConfig search path:")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("See https://hydra.cc", "Set the environment variable"))]
    out, options = [], []
    for ln in lines:  # "Available options in 'model':" followed by one option per line
        if out and out[-1].startswith("Available options"):
            options.append(ln)
            continue
        out.append(ln)
    if options:
        out[-1] += " " + ", ".join(options)
    return "; ".join(out)


def message(err: BaseException) -> str:
    """The one-line message for ``err`` (a Hydra error's cause included)."""
    text = one_line(str(err)) or type(err).__name__
    if getattr(err, "override", None):  # Hydra's OverrideParseException: say which override
        text = f"cannot parse the override {err.override!r}: {text}"
    cause = err.__cause__  # Hydra wraps OmegaConf's error (which names the key) in its own
    if type(err).__module__.startswith("hydra.") and cause is not None and str(cause) \
            and one_line(str(cause)) not in text:
        text += f" ({one_line(str(cause))})"
    if "Interpolation key" in text and "--cfg" in sys.argv and "hydra" in sys.argv:
        text += ("; --cfg hydra cannot resolve hydra.run.dir, which names values of the run's config: "
                 "use --cfg all --resolve")
    if "Config group override must be a string" in text:
        text += "; a config group takes an option name (e.g. truncation=true_bptt, not truncation=true)"
    return text


def fail(err: BaseException) -> NoReturn:
    """Print ``err`` as one line and exit with its code (see :func:`exit_code`)."""
    print(PREFIX + message(err), file=sys.stderr)
    raise SystemExit(exit_code(err))


def refuse(text: str, code: int = BAD_INPUT) -> NoReturn:
    """Print one line and exit with ``code`` (a refusal found by our own checks)."""
    print(PREFIX + text, file=sys.stderr)
    raise SystemExit(code)
