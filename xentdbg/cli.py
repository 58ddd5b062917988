"""Command line: ``xentdbg compare``. Thin: parse, call the library, render, exit.

Exit codes: 0 no divergence, 1 divergence found, 2 usage or input error, 3 a setup failed.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from xentdbg import __version__
from xentdbg.compare.metrics import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from xentdbg.data import DataSpec
from xentdbg.errors import EXIT_USAGE, UsageError, XentdbgError

app = typer.Typer(
    help="Find the first tensor where two training setups diverge.\n\n"
         "Exit codes: 0 no divergence, 1 divergence found, 2 usage or input error, 3 a setup failed.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

# Shared options, defined once.
Steps = Annotated[int, typer.Option(min=1, help="Training steps to replay.")]
Data = Annotated[str, typer.Option(help="'mnist' (bundled 5000 real samples) or a path to a Keras mnist.npz.")]
Subset = Annotated[int, typer.Option(min=1, help="Use the first N samples.")]
Task = Annotated[str, typer.Option(help="'binary' (label = digit >= 5, y shape (N,1)) or 'digits' (one-hot, 10 classes).")]
Pixels = Annotated[str, typer.Option(help="'raw' (0..255) or 'unit' (/255).")]
BatchSize = Annotated[Optional[int], typer.Option(min=1, help="Batch size. Defaults to the full subset (one batch per step).")]
Rtol = Annotated[float, typer.Option(min=0.0, help=f"Relative tolerance: a tensor matches when max|A-B| <= atol + rtol*max(|A|,|B|). Default {DEFAULT_RTOL:g}.")]
Atol = Annotated[float, typer.Option(min=0.0, help=f"Absolute tolerance, see --rtol. Default {DEFAULT_ATOL:g}.")]
Env = Annotated[Optional[list[str]], typer.Option(metavar="KEY=VAL", help="Environment variable for that side's worker (repeatable), e.g. KERAS_BACKEND=jax.")]


def _env(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} is not KEY=VAL.", hint=f"Example: {flag} KERAS_BACKEND=jax")
        out[key] = value
    return out


def _choice(value: str, allowed: tuple[str, ...], flag: str) -> str:
    if value not in allowed:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}.")
    return value


def _data_spec(data: str, subset: int, task: str, pixels: str, batch_size: int | None) -> DataSpec:
    return DataSpec(source=data, subset=subset, task=_choice(task, ("binary", "digits"), "--task"),
                    pixels=_choice(pixels, ("raw", "unit"), "--pixels"), batch_size=batch_size or subset)


def _progress(console: Console, steps: int):
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task("starting workers", total=steps)
    return progress, task


@app.command()
def compare(
    setup_a: Annotated[str, typer.Argument(help="Setup A: path/to/file.py[:function] (function defaults to 'setup').")],
    setup_b: Annotated[str, typer.Argument(help="Setup B, same form.")],
    steps: Steps = 10,
    data: Data = "mnist",
    subset: Subset = 1000,
    task: Task = "binary",
    pixels: Pixels = "raw",
    batch_size: BatchSize = None,
    init: Annotated[str, typer.Option(help="Initial weights: 'a' (B starts from A's), 'b', or 'own'.")] = "a",
    env_a: Env = None,
    env_b: Env = None,
    rtol: Rtol = DEFAULT_RTOL,
    atol: Atol = DEFAULT_ATOL,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Also write the report as JSON to this path.")] = None,
    step_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Stop a side that takes longer than this many seconds for one step (exit 3).")] = None,
) -> None:
    """Replay two setups in lockstep on identical weights and batches; report the first divergent tensor."""
    from xentdbg.replay.engine import CompareConfig
    from xentdbg.replay.engine import compare as run_compare
    from xentdbg.report import console as report
    from xentdbg.report import json_report

    out, err = Console(), Console(stderr=True)
    try:
        config = CompareConfig(
            setup_a, setup_b, data=_data_spec(data, subset, task, pixels, batch_size), steps=steps,
            init=_choice(init, ("a", "b", "own"), "--init"), env_a=_env(env_a, "--env-a"), env_b=_env(env_b, "--env-b"),
            tolerance=Tolerance(rtol=rtol, atol=atol), step_timeout=step_timeout)
        progress, bar = _progress(err, steps)
        with progress:
            result = run_compare(
                config,
                on_status=lambda s: progress.update(bar, description=s),
                on_step=lambda s: progress.advance(bar),
            )
    except XentdbgError as e:
        report.render_error(e, err)
        if json_path:
            json_report.write(json_path, json_report.error_dict(e))
        raise typer.Exit(e.exit_code)
    report.render_result(result, out)
    if json_path:
        json_report.write(json_path, json_report.result_dict(result))
    raise typer.Exit(result.exit_code)


@app.command()
def version() -> None:
    """Print the xentdbg version."""
    print(f"xentdbg {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
