"""Command line: ``xentdbg compare | trace | diff | show | loss``. Thin: parse, call the library, render, exit.

Exit codes: 0 no divergence, 1 divergence found, 2 usage or input error, 3 a setup failed
(70: an internal error, a bug in xentdbg itself).
"""

from __future__ import annotations

import functools
import inspect
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar, get_args

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from xentdbg.compare.metrics import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from xentdbg.compare.result import DEFAULT_TRACE_BUDGET
from xentdbg.data import DataSpec
from xentdbg.errors import OutputError, UsageError, XentdbgError
from xentdbg.losses.implementations import DEFAULT_TIMEOUT as LOSS_TIMEOUT
from xentdbg.losses.implementations import IMPLEMENTATIONS as LOSS_IMPLEMENTATIONS
from xentdbg.losses.inputs import PRESETS as LOSS_PRESETS
from xentdbg.records import CaptureMode
from xentdbg.version import __version__

if TYPE_CHECKING:
    from xentdbg.compare.result import CompareResult

EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug in xentdbg itself

app = typer.Typer(
    help="Find the first tensor where two training setups diverge.\n\n"
         "Exit codes: 0 no divergence, 1 divergence found, 2 usage or input error, 3 a setup failed.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

# Shared options, defined once. The data options default to None: "not given", so that a
# setup's @xentdbg.declare(...) can supply them (xentdbg/data/declared.py); the help states
# the built-in default.
_DECLARED = "A setup's @xentdbg.declare(...) may set it; this option overrides that. "
Steps = Annotated[int | None, typer.Option(min=1, help=_DECLARED + "Training steps to replay. Default 10.")]
Data = Annotated[str, typer.Option(help="'mnist' (bundled 5000 real samples), a Keras mnist.npz, or any .npz "
                                        "holding MNIST-shaped x and y arrays.")]
Subset = Annotated[int | None, typer.Option(min=1, help=_DECLARED + "Use the first N samples. Default 1000.")]
Task = Annotated[str | None, typer.Option(help=_DECLARED + "'binary' (label = digit >= 5) or 'digits' "
                                                           "(10 classes). Default binary.")]
Pixels = Annotated[str | None, typer.Option(help=_DECLARED + "'raw' (0..255) or 'unit' (/255). Default raw.")]
Layout = Annotated[str | None, typer.Option(help=_DECLARED + "Shape of x per sample: 'flat' (784), '28x28' or "
                                                             "'28x28x1' (channels last). Default flat.")]
Labels = Annotated[str | None, typer.Option(help=_DECLARED + "'onehot' (float32, (N, 10) for digits, (N, 1) for "
                                                             "binary) or 'sparse' (int32 class index, (N,)). "
                                                             "Default onehot.")]
BatchSize = Annotated[int | None, typer.Option(min=1, help=_DECLARED + "Batch size. Default the whole "
                                                                       "subset (one batch per step).")]
Rtol = Annotated[float, typer.Option(min=0.0, help="Relative tolerance: a tensor matches when "
                                                   "max|A-B| <= atol + rtol*max(|A|,|B|). "
                                                   f"Default {DEFAULT_RTOL:g}.")]
Atol = Annotated[float, typer.Option(min=0.0, help=f"Absolute tolerance, see --rtol. Default {DEFAULT_ATOL:g}.")]
Env = Annotated[list[str] | None, typer.Option(metavar="KEY=VAL",
                                               help="Environment variable for that side's worker (repeatable), "
                                                    "e.g. KERAS_BACKEND=jax.")]
_PYTHON_HELP = ("Run {side} worker under this Python (another virtual environment: other TensorFlow, Keras or JAX "
                "versions), e.g. ~/venvs/tf218/bin/python. It needs Python 3.11+ and numpy; it imports this "
                "xentdbg from here. The report shows each side's interpreter and versions. Default: xentdbg's own.")
JsonPath = Annotated[str | None, typer.Option("--json", help="Also write the report as JSON to this path.")]
MarkdownPath = Annotated[str | None, typer.Option("--markdown", help="Also write a Markdown report "
                                                                      "(for an issue tracker) to this path.")]
SvgPath = Annotated[str | None, typer.Option("--svg", help="Also write the terminal report as SVG to this path.")]
StepTimeout = Annotated[float | None, typer.Option(min=0.1, help="Stop a side that takes longer than "
                                                                  "this many seconds for one step (exit 3).")]
AllSteps = Annotated[bool, typer.Option("--all-steps", help="Print every step in the per-step table (terminal, "
                                                             "--svg and --markdown). By default: the first steps, "
                                                             "those around the first divergence, the last ones and "
                                                             "a summary line of the rest. --json always has all.")]
_BUDGET_HELP = ("Refuse to start (exit 2) when the traces would take more than this, estimated after the setups "
                "load and before any step trains: e.g. 500MB, 2GB (powers of 1000; KiB, MiB, GiB of 1024), or "
                f"'none'. Default {DEFAULT_TRACE_BUDGET // 10**9}GB.")


F = TypeVar("F", bound=Callable[..., Any])

# The data options of every command that runs a setup (compare, trace), in --help order.
_DATA_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("steps", Steps, None), ("data", Data, "mnist"), ("subset", Subset, None), ("task", Task, None),
    ("pixels", Pixels, None), ("layout", Layout, None), ("labels", Labels, None), ("batch_size", BatchSize, None),
)
_SETUP_ARGS = {"setup_a": "setup A", "setup_b": "setup B", "setup": "the setup"}


def data_options(command: F) -> F:
    """Give ``command`` the shared data options in place of its ``spec: DataSpec`` parameter,
    and call it with ``steps`` and the :class:`DataSpec` they describe.

    Typer reads a command's options from its signature, so the wrapper's signature is the
    command's with ``spec`` replaced by ``--steps --data --subset --task --pixels --layout
    --labels --batch-size``. Options not given come from the setups' declarations
    (:func:`xentdbg.data.declared.resolve`), else from the built-in defaults."""
    sig = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name == "spec":
            params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                       for n, a, d in _DATA_OPTIONS]
        elif p.name != "steps":
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        values = {n: kwargs.pop(n) for n, _, _ in _DATA_OPTIONS}
        with _errors(kwargs.get("json_path")):  # a bad --task, or two declarations that disagree (exit 2)
            steps, spec = _data_spec(values, {label: kwargs[arg] for arg, label in _SETUP_ARGS.items()
                                              if isinstance(kwargs.get(arg), str)})
        return command(steps=steps, spec=spec, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{p.name: p.annotation for p in params}, "return": sig.return_annotation}
    return wrapper  # type: ignore[return-value]


def _env(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} is not KEY=VAL.", hint=f"Example: {flag} KERAS_BACKEND=jax")
        out[key] = value
    return out


def _choice(value: str, choices: Any, flag: str) -> Any:
    """``value`` if it is one of the ``Literal`` type ``choices``' values, else a usage error."""
    allowed = get_args(choices)
    if value not in allowed:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}.")
    return value


def _data_spec(given: dict[str, Any], setups: dict[str, str]) -> tuple[int, DataSpec]:
    """The steps and data: each option from the command line, else the setups'
    declarations (which must agree), else the default."""
    from xentdbg.data.declared import CHOICES, flag, resolve
    from xentdbg.replay.loading import SetupRef, declared_data

    for key, choices in CHOICES.items():
        if given.get(key) is not None and given[key] not in choices:
            raise UsageError(f"{flag(key)} {given[key]!r}: choose one of {', '.join(choices)}.")
    declared = {}
    for label, text in setups.items():
        declared[label] = declared_data(SetupRef.parse(text), label)  # {} for a missing file: preflight says so
    v = resolve(given, declared)
    return v["steps"], DataSpec(source=given["data"], subset=v["subset"], task=v["task"], pixels=v["pixels"],
                                batch_size=v["batch_size"] or v["subset"], layout=v["layout"], labels=v["labels"])


def _progress(console: Console, steps: int) -> tuple[Progress, Any]:
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task("starting workers", total=steps)
    return progress, task


@app.command()
@data_options
def compare(
    setup_a: Annotated[str, typer.Argument(help="Setup A: path/to/file.py[:function] (function defaults to 'setup').")],
    setup_b: Annotated[str, typer.Argument(help="Setup B, same form.")],
    steps: int,
    spec: DataSpec,
    init: Annotated[str, typer.Option(help="Initial weights: 'a' (B starts from A's), 'b', or 'own'.")] = "a",
    env_a: Env = None,
    env_b: Env = None,
    python_a: Annotated[str | None, typer.Option(metavar="PATH", help=_PYTHON_HELP.format(side="side A's"))] = None,
    python_b: Annotated[str | None, typer.Option(metavar="PATH", help=_PYTHON_HELP.format(side="side B's"))] = None,
    rtol: Rtol = DEFAULT_RTOL,
    atol: Atol = DEFAULT_ATOL,
    json_path: JsonPath = None,
    markdown: MarkdownPath = None,
    svg: SvgPath = None,
    step_timeout: StepTimeout = None,
    save_traces: Annotated[str | None, typer.Option(help="Also record both sides' traces as "
                                                         "DIR/a.h5 and DIR/b.h5.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate",
                                            help="First replay each setup against itself in fresh workers, "
                                                 "measure its run-to-run noise per phase, and raise that phase's "
                                                 "rtol to 10x the noise where it exceeds the default.")] = False,
    fingerprint: Annotated[bool, typer.Option("--fingerprint",
                                              help="Two passes: first a light replay that compares large tensors "
                                                   "by fingerprints (sum, norm, max|x|, non-finite count) and "
                                                   "records no activations; on a difference, replay both from the "
                                                   "start with full capture up to that step.")] = False,
    float64: Annotated[bool, typer.Option("--float64/--no-float64",
                                          help="Re-run a small difference a step introduced in float64 on both "
                                               "sides (two more workers, started on first need) to tell float32 "
                                               "rounding from a real difference.")] = True,
    pair: Annotated[str | None, typer.Option(help="A JSON or TOML file mapping A's tensor names to B's, for "
                                                  "parameters automatic pairing leaves ambiguous.")] = None,
    trace_only: Annotated[str | None, typer.Option(help="With --save-traces: the phases to keep, as trace --only. "
                                                        "Default all.")] = None,
    trace_every: Annotated[int, typer.Option(min=1, help="With --save-traces: keep steps 0, K, 2K, ... "
                                                         "(as trace --every).")] = 1,
    trace_budget: Annotated[str | None, typer.Option(help="With --save-traces. " + _BUDGET_HELP)] = None,
    all_steps: AllSteps = False,
) -> None:
    """Replay two setups in lockstep on identical weights and batches; report the first divergent tensor."""
    from xentdbg.compare.result import CompareConfig
    from xentdbg.replay.engine import compare as run_compare
    from xentdbg.replay.preflight import check_interpreters, preflight

    err = Console(stderr=True)
    with _errors(json_path):
        preflight(numbers={"--rtol": rtol, "--atol": atol}, timeouts={"--step-timeout": step_timeout},
                  outputs={"--json": json_path, "--markdown": markdown, "--svg": svg},
                  trace_folders={"--save-traces": save_traces},
                  keep={"setup A": setup_a, "setup B": setup_b, "--pair": pair, "--data": spec.source})
        pythons = check_interpreters({"--python-a": (python_a, _env(env_a, "--env-a")),
                                      "--python-b": (python_b, _env(env_b, "--env-b"))})
        config = CompareConfig(
            setup_a, setup_b, data=spec, steps=steps,
            init=_choice(init, Literal["a", "b", "own"], "--init"),
            env_a={**_env(env_a, "--env-a"), **pythons["--python-a"]},
            env_b={**_env(env_b, "--env-b"), **pythons["--python-b"]},
            tolerance=Tolerance(rtol=rtol, atol=atol), step_timeout=step_timeout, save_traces=save_traces,
            capture=CaptureMode.FINGERPRINT if fingerprint else CaptureMode.FULL, calibrate=calibrate,
            float64=float64, pair=pair, **_trace_options(save_traces, trace_only, trace_every, trace_budget))
        progress, bar = _progress(err, steps)
        with progress:
            result = run_compare(config, on_status=lambda s: progress.update(bar, description=s),
                                 on_step=lambda s: progress.advance(bar),
                                 on_pass=lambda d, n: progress.reset(bar, total=n, description=d))
    _finish(result, json_path, markdown, svg, all_steps=all_steps)


def _trace_options(save_traces: str | None, only: str | None, every: int, budget: str | None) -> dict[str, Any]:
    """compare's --trace-* options as :class:`~xentdbg.compare.result.CompareConfig` fields."""
    from xentdbg.replay.tracing import parse_phases, parse_size

    given = [flag for flag, value in (("--trace-only", only), ("--trace-every", every != 1),
                                      ("--trace-budget", budget)) if value]
    if given and not save_traces:
        raise UsageError(f"{', '.join(given)} without --save-traces: no traces are written.",
                         hint="Add --save-traces DIR.")
    return {"trace_phases": parse_phases(only, "--trace-only"), "trace_every": every,
            "trace_budget": parse_size(budget, "--trace-budget")}


@app.command()
@data_options
def trace(
    setup: Annotated[str, typer.Argument(help="The setup: path/to/file.py[:function].")],
    out: Annotated[str, typer.Option(help="The HDF5 trace to write.")],
    steps: int,
    spec: DataSpec,
    env: Env = None,
    python: Annotated[str | None, typer.Option(metavar="PATH", help=_PYTHON_HELP.format(side="the"))] = None,
    only: Annotated[str | None, typer.Option(help="Phases to keep, comma-separated "
                                                  "(inputs,flags,activations,loss,gradients,state,weights). "
                                                  "The loss is always kept.")] = None,
    every: Annotated[int, typer.Option(min=1, help="Keep steps 0, K, 2K, ...")] = 1,
    compression: Annotated[str, typer.Option(help="none, gzip or lzf.")] = "none",
    init_from: Annotated[str | None, typer.Option(help="Start from the initial weights "
                                                       "recorded in this trace.")] = None,
    step_timeout: StepTimeout = None,
    budget: Annotated[str | None, typer.Option(help=_BUDGET_HELP)] = None,
    ranks: Annotated[bool, typer.Option("--ranks/--no-ranks",
                                        help="For a setup that trains under a tf.distribute strategy, also write "
                                             "one trace per replica next to --out: OUT.rank0.h5, OUT.rank1.h5, ... "
                                             "(that replica's inputs, layer outputs, local loss and gradients, "
                                             "state copy, and the weights).")] = True,
) -> None:
    """Run one setup and record every captured tensor, per step, into an HDF5 trace.

    A setup under a tf.distribute strategy also gets one rank file per replica (--ranks)."""
    from xentdbg.replay.preflight import check_interpreters, preflight
    from xentdbg.replay.tracing import TraceConfig, fmt_size, parse_phases, parse_size, record_trace

    err = Console(stderr=True)
    with _errors(None):
        preflight(timeouts={"--step-timeout": step_timeout}, inputs={"--init-from": init_from}, outputs={"--out": out},
                  keep={"the setup": setup, "--data": spec.source})
        pythons = check_interpreters({"--python": (python, _env(env, "--env"))})
        config = TraceConfig(setup, out, data=spec, steps=steps,
                             env={**_env(env, "--env"), **pythons["--python"]},
                             phases=parse_phases(only), budget=parse_size(budget, "--budget"),
                             every=every, compression=compression, init_from=init_from, step_timeout=step_timeout,
                             ranks=ranks)
        progress, bar = _progress(err, steps)
        with progress:
            summary = record_trace(config, on_status=lambda s: progress.update(bar, description=s),
                                   on_step=lambda k: progress.advance(bar))
    steps_written = max(summary.steps_written, 1)
    Console().print(f"wrote {summary.path}: {summary.steps_written} steps of {summary.info.kind} ({setup}), "
                    f"{fmt_size(summary.bytes)}, {summary.write_seconds / steps_written * 1e3:.1f} ms per step to "
                    f"write (estimated {fmt_size(summary.estimate.bytes)} before the run"
                    f"{', rank files included' if summary.ranks else ''})")
    if summary.ranks:
        per_file = summary.rank_write_seconds / steps_written / len(summary.ranks) * 1e3
        Console().print(f"and {len(summary.ranks)} rank files, one per replica, {summary.ranks[0]} .. "
                        f"{summary.ranks[-1]}: {fmt_size(summary.rank_bytes)}, {per_file:.1f} ms per step per "
                        "file to write")


@app.command()
def diff(
    trace_a: Annotated[str, typer.Argument(help="Trace A (.h5).")],
    trace_b: Annotated[str, typer.Argument(help="Trace B (.h5).")],
    rtol: Rtol = DEFAULT_RTOL,
    atol: Atol = DEFAULT_ATOL,
    json_path: JsonPath = None,
    markdown: MarkdownPath = None,
    svg: SvgPath = None,
    all_steps: AllSteps = False,
) -> None:
    """Compare two traces as compare compares two live setups (same report and exit codes)."""
    from xentdbg.replay.preflight import preflight
    from xentdbg.trace.diff import diff_traces

    with _errors(json_path):
        preflight(numbers={"--rtol": rtol, "--atol": atol}, inputs={"trace A": trace_a, "trace B": trace_b},
                  outputs={"--json": json_path, "--markdown": markdown, "--svg": svg})
        result = diff_traces(trace_a, trace_b, Tolerance(rtol=rtol, atol=atol))
        commands = [command or f"# {path}: command not recorded"
                    for path, command in zip((trace_a, trace_b), result.recorded_commands or (None, None))]
        commands.append(f"xentdbg diff {trace_a} {trace_b} --rtol {rtol:g} --atol {atol:g}")
    _finish(result, json_path, markdown, svg, commands, title="xentdbg diff", all_steps=all_steps)


@app.command()
def show(
    trace_path: Annotated[str, typer.Argument(metavar="TRACE", help="A trace (.h5).")],
    step: Annotated[int | None, typer.Option(help="Which step's tensors to list. Defaults to the last one.")] = None,
) -> None:
    """What a trace holds: metadata, steps, tensors with shapes, dtypes, norms, non-finite counts, and the loss."""
    from xentdbg.replay.preflight import preflight
    from xentdbg.report.trace_view import render_trace
    from xentdbg.trace.reader import load_trace

    with _errors(None):
        preflight(inputs={"trace": trace_path})
        with load_trace(trace_path) as t:
            render_trace(t, Console(), step)


@contextmanager
def _errors(json_path: str | None) -> Iterator[None]:
    """Render xentdbg's errors (exit 2 or 3) without a traceback; write them to --json too (unless
    the outputs were refused)."""
    from xentdbg.paths import output_problem, write_outputs
    from xentdbg.report import console as report
    from xentdbg.report import json_report

    try:
        yield
    except XentdbgError as e:
        report.render_error(e, Console(stderr=True))
        # not when the outputs were refused (--json may be the problem, or an input)
        if json_path and not isinstance(e, OutputError) and output_problem(json_path) is None:
            error = json_report.error_dict(e)
            for line in write_outputs([("--json", json_path, lambda p: json_report.write(p, error))]):
                Console(stderr=True, soft_wrap=True).print(Text(line, style="red"))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        # The workers are already stopped and traces closed (engine, tracing); click would
        # otherwise turn Ctrl-C into exit 1, which means "divergence found".
        Console(stderr=True).print("interrupted: workers stopped, traces hold every completed step")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _finish(result: CompareResult, json_path: str | None, markdown: str | None, svg: str | None,
            commands: list[str] | None = None, title: str = "xentdbg compare", all_steps: bool = False) -> None:
    """Print the report, write the requested files, exit with the result's code."""
    from xentdbg.paths import write_outputs
    from xentdbg.report import console as report
    from xentdbg.report import json_report
    from xentdbg.report.markdown import render_markdown

    report.render_result(result, Console(), title=title, all_steps=all_steps)

    def write_svg(path: str) -> None:
        recorder = Console(record=True, width=130, file=io.StringIO())
        report.render_result(result, recorder, title=title, all_steps=all_steps)
        recorder.save_svg(path, title=title)

    failed = write_outputs([
        ("--json", json_path, lambda p: json_report.write(p, json_report.result_dict(result))),
        ("--markdown", markdown, lambda p: Path(p).write_text(render_markdown(result, commands, all_steps=all_steps),
                                                             encoding="utf-8")),
        ("--svg", svg, write_svg)])
    _exit_after_writing(result.exit_code, failed)


def _exit_after_writing(code: int, failed: list[str], verdicts: dict[int, str] | None = None) -> NoReturn:
    """Exit with ``code``, or, when a requested report could not be written (checked before
    the run, so something changed meanwhile: a full disk, a removed folder), say so and exit
    2 (:func:`xentdbg.replay.preflight.exit_after_writing`): the printed report is complete and the
    message names the exit code the run had."""
    from xentdbg.replay.preflight import exit_after_writing

    final = exit_after_writing(code, failed)
    if failed:
        err = Console(stderr=True, soft_wrap=True)
        for line in failed:
            err.print(Text(f"error: {line}", style="bold red"))
        if final != code:
            err.print(Text(f"hint: the run finished and its report is printed above; without this error it would "
                           f"have exited {code}{(verdicts or _VERDICTS).get(code, '')}.", style="yellow"))
        err.print(Text(f"exit {final}", style="bold"))
    raise typer.Exit(final)


_VERDICTS = {0: " (no divergence)", 1: " (divergence found)"}


_VALUE_HELP = ("Inline JSON ('[[0,1],[1,0]]'), FILE.npy, FILE.npz[:KEY], or a preset: "
               + ", ".join(LOSS_PRESETS) + " (a preset alone supplies both arrays).")


@app.command("loss")
def loss(
    name: Annotated[str, typer.Argument(metavar="LOSS", help="binary_crossentropy, categorical_crossentropy or "
                                                             "sparse_categorical_crossentropy (bce, cce, scce).")],
    y_true: Annotated[str | None, typer.Option("--y-true", help="Targets. " + _VALUE_HELP)] = None,
    y_pred: Annotated[str | None, typer.Option("--y-pred", help="Predictions (probabilities, or logits with "
                                                                   "--from-logits). " + _VALUE_HELP)] = None,
    from_logits: Annotated[bool, typer.Option("--from-logits", help="y_pred holds logits.")] = False,
    only: Annotated[str | None, typer.Option("--only", help="Implementations to run, comma-separated: "
                                                + ", ".join(LOSS_IMPLEMENTATIONS) + ". Defaults to all.")] = None,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds each implementation may take.")] = LOSS_TIMEOUT,
    json_path: JsonPath = None,
) -> None:
    """Evaluate a cross-entropy in every installed implementation and explain where and why they differ.

    Runs Keras 3 on TensorFlow, Keras 3 on JAX, tf_keras and optax (each in its own process) and a
    float64 textbook reference; shows the loss, per-sample losses and d loss / d y_pred of each.

    Exit codes: 0 evaluated (differences are the expected outcome, not an error), 2 bad input,
    3 an implementation raised, crashed or timed out (its row shows the message).
    """
    from xentdbg.losses import evaluate_inputs, parse_implementations
    from xentdbg.losses.inputs import canonical_loss, read_inputs
    from xentdbg.paths import write_outputs
    from xentdbg.replay.preflight import preflight
    from xentdbg.report.loss_view import render_loss

    with _errors(json_path):
        preflight(timeouts={"--timeout": timeout}, outputs={"--json": json_path})
        loss_name = canonical_loss(name)
        keys = parse_implementations(only)
        inputs = read_inputs(loss_name, y_true, y_pred, from_logits)
        with Console(stderr=True).status(f"evaluating {loss_name} in {len(keys)} implementations"):
            report = evaluate_inputs(inputs, keys, timeout)
    render_loss(report, Console())
    text = json.dumps(report.to_dict(), indent=2)
    failed = write_outputs([("--json", json_path, lambda p: Path(p).write_text(text))])
    _exit_after_writing(report.exit_code, failed, {0: " (evaluated)"})


@app.command()
def version() -> None:
    """Print the xentdbg version."""
    print(f"xentdbg {__version__}")


def _print_version(value: bool) -> None:
    if value:
        print(f"xentdbg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the xentdbg version and exit.")] = False,
) -> None:
    pass


def main() -> None:
    try:
        app()
    except Exception as e:  # noqa: BLE001  (Ctrl-C and sys.exit are BaseException: untouched)
        raise SystemExit(_internal_error(e)) from None


def _internal_error(exc: Exception) -> int:
    """A bug in xentdbg (not in a setup, not bad input): one clear message on stderr and
    the traceback in a file to attach to a bug report, instead of a stack dump."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="xentdbg-internal-error-", suffix=".txt", delete=False) as f:
        f.write(f"xentdbg {__version__}\n")
        f.write("".join(traceback.format_exception(exc)))
    from rich.text import Text

    Console(stderr=True, soft_wrap=True).print(Text.assemble(  # no wrapping: the path stays copyable
        ("internal error", "bold red"), f": {type(exc).__name__}: {exc}\n",
        f"This is a bug in xentdbg, not in your setups. The traceback is in {f.name}; "
        "please attach it to a bug report."))
    return EXIT_INTERNAL


if __name__ == "__main__":
    main()
