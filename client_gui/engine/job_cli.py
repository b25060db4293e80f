"""``hivemind job submit|list|status|logs|results|cancel``: submitting and following jobs from a terminal.

The commands talk to the coordinator through :class:`~client_gui.engine.jobs_client.JobsClient`. Errors are
printed as one sentence on stderr; the exit code is 0 when it worked, 1 when the coordinator (or a file)
refused, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client_gui.engine.coordinator_client import DEFAULT_TARGET, CoordinatorError
from client_gui.engine.jobs_client import (
    STDOUT,
    JobsClient,
    JobSpecError,
    TaskStatus,
    cpt_to_micro,
    format_cpt,
    spec_from_dict,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STDOUT_FILE = "stdout.txt"
MAX_PARAM_FILE_BYTES = 64 * 1024**2


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2); the message says what to change."""


# --- the parser ---------------------------------------------------------------------------------------------


def _connection_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Flags every action shares. They are accepted before and after the action (``hivemind job
    --coordinator H:P list`` and ``hivemind job list --coordinator H:P``); only the outer parser sets
    defaults, so a value given before the action is not overwritten by the action's parser."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g = parser.add_argument_group("connection")
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=default(os.environ.get("HIVEMIND_COORDINATOR", DEFAULT_TARGET)),
        help=f"the coordinator's gRPC address (default {DEFAULT_TARGET}, or HIVEMIND_COORDINATOR)",
    )
    g.add_argument(
        "--username",
        default=default(os.environ.get("HIVEMIND_USERNAME")),
        help="sign in as this user; the password comes from HIVEMIND_PASSWORD or standard input "
        "(without --username, the token in HIVEMIND_TOKEN is used)",
    )


def add_job_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``job`` and its actions to the ``hivemind`` command's subparsers."""
    job = subparsers.add_parser(
        "job",
        help="submit jobs, follow them and fetch their results",
        description="Submit containerized jobs to a HiveMind coordinator, follow them and fetch results. "
        "Sign in with --username (password from HIVEMIND_PASSWORD or standard input) or set "
        "HIVEMIND_TOKEN.",
    )
    _connection_flags(job, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    _connection_flags(shared, defaults=False)
    actions = job.add_subparsers(dest="job_command", metavar="ACTION")

    submit = actions.add_parser(
        "submit",
        parents=[shared],
        help="submit a job; prints its id",
        description="Submit a job from a JSON spec (--spec) or from flags. The budget is held in escrow "
        "until the job ends; what it did not use is refunded. Prints the job id on standard output.",
        epilog="example: hivemind job submit --image python:3.11-slim --input data.csv "
        "--output out.txt --budget 0.5 -- python3 -c 'print(1)'",
    )
    submit.add_argument(
        "--spec",
        type=Path,
        metavar="FILE.json",
        help="the job as JSON (the REST body's fields; inputs may name a local file as "
        '{"path": "in.csv", "local": "data.csv"}, uploaded first)',
    )
    submit.add_argument("--name", help="a name to recognize the job by")
    submit.add_argument("--image", help="Docker image, e.g. python:3.11-slim")
    submit.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="LOCAL[:PATH]",
        help="upload a local file and place it at PATH in the work dir (default: its file name)",
    )
    submit.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="a file the task writes that should be collected (repeatable)",
    )
    submit.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable"
    )
    submit.add_argument("--cpu", type=float, metavar="CORES", help="CPU cores per task")
    submit.add_argument("--memory-gb", type=float, metavar="GB", help="memory per task")
    submit.add_argument("--gpus", type=int, metavar="N", help="GPUs per task")
    submit.add_argument("--timeout", type=int, metavar="SECONDS", help="limit per task run")
    submit.add_argument("--priority", type=int, help="-100..100 among your own jobs")
    submit.add_argument("--replicas", type=int, help="independent runs per task (verification)")
    submit.add_argument("--quorum", type=int, help="agreeing runs needed to accept a result")
    submit.add_argument(
        "--budget",
        metavar="CPT",
        help="the most the job may cost, in CPT (up to 6 decimals), e.g. 2.5",
    )
    submit.add_argument("--array", type=int, metavar="N", help="N identical tasks")
    submit.add_argument(
        "--param-file",
        type=Path,
        metavar="JSONL",
        help='one task per line: {"env": {...}, "args": [...]} (args are appended to the command)',
    )
    submit.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="JOB",
        help="start only after this job completed (repeatable)",
    )
    submit.add_argument("--network", action="store_true", help="let the task reach the network")
    submit.add_argument(
        "--idempotency-key",
        help="resubmitting with the same key returns the first job instead of a second one",
    )
    submit.add_argument(
        # Not dest "command": the hivemind parser keeps the subcommand ("job") there.
        "job_argv",
        metavar="-- COMMAND",
        nargs=argparse.REMAINDER,
        help="the command to run, after -- (e.g. -- python3 main.py)",
    )

    listing = actions.add_parser("list", parents=[shared], help="your jobs, newest first")
    listing.add_argument("--state", default="", help="only jobs in this state, e.g. running")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    status = actions.add_parser("status", parents=[shared], help="a job and its tasks")
    status.add_argument("job_id", metavar="JOB")

    logs = actions.add_parser("logs", parents=[shared], help="a task's output lines")
    logs.add_argument("job_id", metavar="JOB")
    logs.add_argument("--task", type=int, default=0, metavar="N", help="task index (default 0)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the task ends"
    )

    results = actions.add_parser(
        "results",
        parents=[shared],
        help="download every output and the stdout of a job's tasks",
        description="Downloads each verified task's outputs to DIR/task-<N>/<path> and its standard "
        f"output to DIR/task-<N>/{STDOUT_FILE}, checking every file's sha256.",
    )
    results.add_argument("job_id", metavar="JOB")
    results.add_argument("--task", type=int, metavar="N", help="only this task (default: all)")
    results.add_argument(
        "--dest", type=Path, metavar="DIR", help="where to put them (default: ./<job id>)"
    )

    cancel = actions.add_parser(
        "cancel", parents=[shared], help="stop a job and refund its unused budget"
    )
    cancel.add_argument("job_id", metavar="JOB")


def build_parser() -> argparse.ArgumentParser:
    """A ``hivemind`` parser with only the ``job`` command (the coordinator's CLI adds it to its own)."""
    parser = argparse.ArgumentParser(prog="hivemind")
    add_job_parser(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "job":
        print("usage: hivemind job ACTION ... (see hivemind job --help)", file=sys.stderr)
        return EXIT_USAGE
    return run_job(args)


# --- running it ---------------------------------------------------------------------------------------------


def run_job(args: argparse.Namespace) -> int:
    """Run the ``hivemind job`` action in ``args``; returns the exit code."""
    actions: dict[str, Callable[[JobsClient, argparse.Namespace], int]] = {
        "submit": _submit,
        "list": _list,
        "status": _status,
        "logs": _logs,
        "results": _results,
        "cancel": _cancel,
    }
    action = actions.get(args.job_command or "")
    if action is None:
        _error("Say what to do: hivemind job submit|list|status|logs|results|cancel (see --help).")
        return EXIT_USAGE
    try:
        with JobsClient(args.coordinator) as client:
            _sign_in(client, args)
            return action(client, args)
    except (UsageError, JobSpecError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except CoordinatorError as exc:
        _error(exc.message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _sign_in(client: JobsClient, args: argparse.Namespace) -> None:
    if args.username:
        password = os.environ.get("HIVEMIND_PASSWORD")
        if password is None:
            if sys.stdin.isatty():
                password = getpass.getpass(f"Password for {args.username}: ")
            else:
                password = sys.stdin.readline().rstrip("\r\n")
        client.login(args.username, password)
        return
    token = os.environ.get("HIVEMIND_TOKEN", "")
    if not token:
        raise UsageError(
            "Sign in first: pass --username (the password is read from HIVEMIND_PASSWORD or standard "
            "input), or set HIVEMIND_TOKEN to an access token."
        )
    client.token = token


# -- submit --


def _submit(client: JobsClient, args: argparse.Namespace) -> int:
    spec = _spec_from_file(client, args) if args.spec else _spec_from_flags(client, args)
    submitted = client.submit_job(spec, args.idempotency_key)
    print(submitted.job_id)
    print(
        f"{submitted.message} {submitted.task_count} task(s); "
        f"{format_cpt(submitted.escrow_micro)} held in escrow.",
        file=sys.stderr,
    )
    return EXIT_OK


_SPEC_FLAGS = (
    "name",
    "image",
    "cpu",
    "memory_gb",
    "gpus",
    "timeout",
    "priority",
    "replicas",
    "quorum",
    "budget",
    "array",
    "param_file",
)


def _spec_from_file(client: JobsClient, args: argparse.Namespace) -> dict[str, Any]:
    given = [f"--{f.replace('_', '-')}" for f in _SPEC_FLAGS if getattr(args, f) is not None]
    given += [
        f"--{f.replace('_', '-')}"
        for f in ("input", "output", "env", "depends_on")
        if getattr(args, f)
    ]
    if args.network or args.job_argv:
        given.append("--network" if args.network else "a command")
    if given:
        raise UsageError(
            f"Give either --spec or the job flags, not both ({', '.join(given)} with --spec)."
        )
    path: Path = args.spec
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}.") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold one JSON object (the job spec).")
    inputs = raw.get("inputs") or []
    if not isinstance(inputs, list):
        raise UsageError(f"In {path}, inputs must be a list.")
    # {"path": ..., "local": FILE}: FILE (relative to the spec) is uploaded and named by its sha256.
    local: list[tuple[dict[str, Any], Path]] = []
    for item in inputs:
        if isinstance(item, dict) and "local" in item:
            file = path.parent / str(item.pop("local"))
            item.setdefault("path", file.name)
            local.append((item, file))
    spec_from_dict(raw)  # refuse a malformed spec before anything is uploaded
    for item, file in local:
        item["sha256"] = _upload(client, file)
    return raw


def _spec_from_flags(client: JobsClient, args: argparse.Namespace) -> dict[str, Any]:
    command = list(args.job_argv)
    if command and command[0] == "--":
        command = command[1:]
    if not args.image:
        raise UsageError("Give --image (e.g. --image python:3.11-slim), or a --spec file.")
    if not command:
        raise UsageError("Give the command to run after --, e.g. -- python3 main.py")
    if args.budget is None:
        raise UsageError("Give --budget: the most the job may cost, in CPT (e.g. --budget 2.5).")
    spec: dict[str, Any] = {
        "name": args.name or "",
        "image": args.image,
        "command": command,
        "env": dict(_key_value(item) for item in args.env),
        "output_paths": list(args.output),
        "depends_on": list(args.depends_on),
        "network_access": bool(args.network),
        "max_budget_micro": cpt_to_micro(args.budget),
        "resources": {
            "cpu_cores": args.cpu or 0.0,
            "memory_gb": args.memory_gb or 0.0,
            "gpu_count": args.gpus or 0,
        },
        "timeout_s": args.timeout or 0,
        "priority": args.priority or 0,
        "replicas": args.replicas or 0,
        "quorum": args.quorum or 0,
        "array_size": args.array or 0,
    }
    if args.param_file is not None:
        spec["parameter_sets"] = _parameter_sets(args.param_file)
    spec_from_dict(spec)  # refuse a malformed spec before uploading anything
    spec["inputs"] = [
        {"path": target, "sha256": _upload(client, local)}
        for local, target in (_input_flag(v) for v in args.input)
    ]
    return spec


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--env takes KEY=VALUE (got {item!r}).")
    return key, value


def _input_flag(value: str) -> tuple[Path, str]:
    """``data.csv`` -> (data.csv, "data.csv"); ``data.csv:in/d.csv`` -> (data.csv, "in/d.csv"). A Windows
    drive (``C:\\x.csv``) or an existing file whose name has a colon is a local path, not LOCAL:PATH."""
    local, sep, target = value.rpartition(":")
    if not sep or Path(value).exists() or (len(local) == 1 and local.isalpha()) or not local:
        return Path(value), Path(value).name
    return Path(local), target


def _upload(client: JobsClient, local: Path) -> str:
    if not local.is_file():
        raise UsageError(f"The input file {local} does not exist (or is not a file).")
    uploaded = client.upload_file(local)
    note = "already on the coordinator" if uploaded.already_present else "uploaded"
    print(
        f"{local}: {note} ({uploaded.size} bytes, sha256 {uploaded.sha256[:12]}…)", file=sys.stderr
    )
    return uploaded.sha256


def _parameter_sets(path: Path) -> list[dict[str, Any]]:
    try:
        if path.stat().st_size > MAX_PARAM_FILE_BYTES:
            raise UsageError(f"{path} is larger than {MAX_PARAM_FILE_BYTES // 1024**2} MiB.")
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    sets: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}, line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(item, dict) or set(item) - {"env", "args"}:
            raise UsageError(
                f'{path}, line {number}: each line is {{"env": {{...}}, "args": [...]}}.'
            )
        sets.append(item)
    if not sets:
        raise UsageError(f"{path} has no parameter sets (one JSON object per line).")
    return sets


# -- list and status --


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _when(unix: int) -> str:
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _list(client: JobsClient, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1.")
    jobs = client.list(state=args.state, limit=args.limit)
    if not jobs:
        print("No jobs" + (f" in state {args.state}." if args.state else " yet."))
        return EXIT_OK
    print(
        _table(
            ("JOB", "NAME", "STATE", "TASKS DONE", "ESCROW", "CHARGED", "CREATED"),
            (
                (
                    j.job_id,
                    j.name or "-",
                    j.state,
                    f"{j.tasks_done}/{j.task_count}",
                    format_cpt(j.escrow_micro),
                    format_cpt(j.charged_micro),
                    _when(j.created_at),
                )
                for j in jobs
            ),
        )
    )
    return EXIT_OK


def _status(client: JobsClient, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    print(f"job       {job.job_id}" + (f" ({job.name})" if job.name else ""))
    print(f"state     {job.state}" + (f": {job.failure_reason}" if job.failure_reason else ""))
    print(f"tasks     {job.tasks_done} done, {job.tasks_failed} failed, {job.task_count} in all")
    print(
        f"budget    {format_cpt(job.escrow_micro)} held, {format_cpt(job.charged_micro)} charged, "
        f"{format_cpt(job.refunded_micro)} refunded"
    )
    print(f"created   {_when(job.created_at)}; finished {_when(job.finished_at)}")
    print()
    print(
        _table(
            ("TASK", "STATE", "EXIT", "ATTEMPTS", "CHARGED", "OUTPUTS", "REASON"),
            (
                (
                    t.index,
                    t.state,
                    t.exit_code if t.has_result else "-",
                    t.attempts,
                    format_cpt(t.charged_micro),
                    ", ".join(o.path for o in t.outputs) or "-",
                    t.failure_reason or "",
                )
                for t in job.tasks
            ),
        )
    )
    return EXIT_OK


# -- logs, results, cancel --


def _logs(client: JobsClient, args: argparse.Namespace) -> int:
    for stream, text in client.logs(args.job_id, args.task, follow=args.follow):
        print(text, file=sys.stderr if stream == "stderr" else sys.stdout, flush=args.follow)
    return EXIT_OK


def _results(client: JobsClient, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    tasks: Sequence[TaskStatus] = job.tasks
    if args.task is not None:
        tasks = [t for t in job.tasks if t.index == args.task]
        if not tasks:
            raise UsageError(
                f"Job {job.job_id} has no task {args.task}; its tasks are numbered 0 to "
                f"{job.task_count - 1}."
            )
    dest: Path = args.dest if args.dest is not None else Path(job.job_id)
    missing = 0
    for task in tasks:
        if not task.has_result:
            print(f"task {task.index}: no verified result ({_why(task)}).", file=sys.stderr)
            missing += 1
            continue
        folder = dest / f"task-{task.index}"
        for output in task.outputs:
            target = _inside(folder, output.path)
            client.download(job.job_id, task.index, output.path, target)
            print(f"{target}  ({output.size} bytes)")
        stdout_name = STDOUT if any(o.path == STDOUT_FILE for o in task.outputs) else STDOUT_FILE
        got = client.download(job.job_id, task.index, STDOUT, folder / stdout_name)
        print(f"{folder / stdout_name}  ({got.size} bytes)")
    if missing:
        _error(f"{missing} of {len(tasks)} task(s) have no result to download yet; see `status`.")
        return EXIT_FAILED
    return EXIT_OK


def _why(task: TaskStatus) -> str:
    return f"{task.state}: {task.failure_reason}" if task.failure_reason else task.state


def _inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refusing a path that would leave ``folder`` (the coordinator validates output
    paths, but a file from the network never gets to choose where it lands)."""
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()) or target == folder.resolve():
        raise CoordinatorError(f"Refusing to write the output {relative!r} outside {folder}.")
    return folder / relative


def _cancel(client: JobsClient, args: argparse.Namespace) -> int:
    refund = client.cancel(args.job_id)
    print(f"Cancelled job {args.job_id}; {format_cpt(refund)} refunded.")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
