"""Validating a job spec: every rule a submitted job must meet, with a sentence for each refusal.

The spec arrives as a plain dict (from protobuf or JSON) and leaves as a normalized :class:`JobSpec`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from coordinator.errors import InvalidArgument

# registry[:port]/name[/name...][:tag][@sha256:digest], lowercase names, as Docker accepts them
IMAGE_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ARGS = 256
MAX_ARG = 4096
MAX_ENV = 128
MAX_ENV_VALUE = 4096
MAX_PATHS = 64
MAX_PATH = 255
MAX_TASKS = 10_000
MAX_DEPENDENCIES = 64
MAX_REPLICAS = 10
MAX_TIMEOUT_S = 7 * 24 * 3600
DEFAULT_TIMEOUT_S = 3600


@dataclass(frozen=True, slots=True)
class InputSpec:
    path: str
    sha256: str = ""
    from_job_id: str = ""
    from_output: str = ""


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    cpu_cores: float = 1.0
    memory_gb: float = 0.5
    gpu_count: int = 0
    gpu_memory_gb: float = 0.0
    disk_gb: float = 1.0
    gpu_name: str = ""


@dataclass(frozen=True, slots=True)
class JobSpec:
    image: str
    command: list[str]
    name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)
    output_paths: list[str] = field(default_factory=list)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    timeout_s: int = DEFAULT_TIMEOUT_S
    priority: int = 0
    depends_on: list[str] = field(default_factory=list)
    parameter_sets: list[dict[str, Any]] = field(default_factory=list)
    array_size: int = 1
    replicas: int = 1
    quorum: int = 1
    max_budget_micro: int = 0
    network_access: bool = False
    max_attempts: int = 3

    @property
    def task_count(self) -> int:
        return len(self.parameter_sets) or self.array_size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["inputs"] = [InputSpec(**i) for i in data.get("inputs", [])]
        data["resources"] = ResourceSpec(**data.get("resources", {}))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def check_relative_path(path: str, what: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidArgument(f"Each {what} must be a relative path of 1 to {MAX_PATH} characters.")
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or ".." in parts or "\x00" in path or path.startswith("@"):
        raise InvalidArgument(
            f"The {what} '{path[:60]}' must stay inside the task's work dir: no leading '/', no '..'."
        )
    return "/".join(p for p in parts if p not in ("", "."))


def _number(value: Any, what: str, *, low: float, high: float, default: float) -> float:
    if value in (None, 0, 0.0):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be a number.") from None
    if math.isnan(number) or math.isinf(number):
        raise InvalidArgument(f"{what} must be a finite number.")
    if number < 0:
        raise InvalidArgument(f"{what} cannot be negative (got {number:g}).")
    if not low <= number <= high:
        raise InvalidArgument(f"{what} must be between {low:g} and {high:g} (got {number:g}).")
    return number


def _int(value: Any, what: str, *, low: int, high: int, default: int) -> int:
    if value in (None, 0):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidArgument(f"{what} must be a whole number.")
    number = int(value)
    if number < 0 <= low:
        raise InvalidArgument(f"{what} cannot be negative (got {number}).")
    if not low <= number <= high:
        raise InvalidArgument(f"{what} must be between {low} and {high} (got {number}).")
    return number


def _strings(raw: Any, what: str, *, max_count: int, max_len: int) -> list[str]:
    items: list[str] = list(raw or [])
    if len(items) > max_count:
        raise InvalidArgument(f"A job may have at most {max_count} {what}.")
    for v in items:
        if not isinstance(v, str) or len(v) > max_len or "\x00" in v:
            raise InvalidArgument(
                f"Each of the {what} must be text of at most {max_len} characters."
            )
    return items


def _env(raw: Any, what: str = "environment variables") -> dict[str, str]:
    env: dict[str, str] = dict(raw or {})
    if len(env) > MAX_ENV:
        raise InvalidArgument(f"A job may set at most {MAX_ENV} {what}.")
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
            raise InvalidArgument(f"'{str(key)[:40]}' is not a valid environment variable name.")
        if key.startswith("HIVEMIND_"):
            raise InvalidArgument(
                f"Environment variables starting with HIVEMIND_ are reserved ('{key}')."
            )
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\x00" in value:
            raise InvalidArgument(
                f"The value of {key} must be text of at most {MAX_ENV_VALUE} characters."
            )
    return env


def parse_spec(raw: dict[str, Any], *, default_max_attempts: int = 3) -> JobSpec:
    """Validate and normalize a raw spec (as from protobuf's MessageToDict or a JSON body)."""
    image = raw.get("image") or ""
    if not isinstance(image, str) or not image or len(image) > 255 or not IMAGE_RE.fullmatch(image):
        raise InvalidArgument(
            f"'{str(image)[:80]}' is not a valid image name. Use a Docker image reference such as "
            "'python:3.11-slim' or 'registry.example.org/team/tool:1.2'."
        )
    command = _strings(raw.get("command"), "command arguments", max_count=MAX_ARGS, max_len=MAX_ARG)
    if not command:
        raise InvalidArgument("Give the command to run, e.g. ['python3', 'main.py'].")
    name = raw.get("name") or ""
    if not isinstance(name, str) or len(name) > 128:
        raise InvalidArgument("A job name is at most 128 characters.")

    res = raw.get("resources") or {}
    resources = ResourceSpec(
        cpu_cores=_number(res.get("cpu_cores"), "cpu_cores", low=0.01, high=256, default=1.0),
        memory_gb=_number(res.get("memory_gb"), "memory_gb", low=0.004, high=4096, default=0.5),
        gpu_count=_int(res.get("gpu_count"), "gpu_count", low=0, high=16, default=0),
        gpu_memory_gb=_number(
            res.get("gpu_memory_gb"), "gpu_memory_gb", low=0, high=4096, default=0.0
        ),
        disk_gb=_number(res.get("disk_gb"), "disk_gb", low=0, high=100_000, default=1.0),
        gpu_name=str(res.get("gpu_name") or "")[:128],
    )

    inputs: list[InputSpec] = []
    seen_paths: set[str] = set()
    raw_inputs = list(raw.get("inputs") or [])
    if len(raw_inputs) > MAX_PATHS:
        raise InvalidArgument(f"A job may have at most {MAX_PATHS} input files.")
    for item in raw_inputs:
        path = check_relative_path(item.get("path", ""), "input path")
        if path in seen_paths:
            raise InvalidArgument(f"The input path '{path}' is given twice.")
        seen_paths.add(path)
        sha, parent, output = (
            item.get("sha256") or "",
            item.get("from_job_id") or "",
            item.get("from_output") or "",
        )
        if bool(sha) == bool(parent):
            raise InvalidArgument(
                f"Input '{path}' needs either the sha256 of an uploaded file or from_job_id + from_output."
            )
        if parent and not output:
            raise InvalidArgument(
                f"Input '{path}' names job {parent[:36]} but not which of its outputs."
            )
        inputs.append(
            InputSpec(path=path, sha256=sha.lower(), from_job_id=parent, from_output=output)
        )

    outputs = [check_relative_path(p, "output path") for p in _strings(
        raw.get("output_paths"), "output paths", max_count=MAX_PATHS, max_len=MAX_PATH
    )]  # fmt: skip

    depends_on = _strings(
        raw.get("depends_on"), "dependencies", max_count=MAX_DEPENDENCIES, max_len=36
    )
    if len(set(depends_on)) != len(depends_on):
        raise InvalidArgument("A dependency is listed twice.")
    for item in inputs:
        if item.from_job_id and item.from_job_id not in depends_on:
            raise InvalidArgument(
                f"Input '{item.path}' comes from job {item.from_job_id}, which must also be in depends_on."
            )

    parameter_sets = list(raw.get("parameter_sets") or [])
    array_size = _int(raw.get("array_size"), "array_size", low=1, high=MAX_TASKS, default=1)
    if parameter_sets and array_size > 1:
        raise InvalidArgument("Give either parameter_sets or array_size, not both.")
    if len(parameter_sets) > MAX_TASKS:
        raise InvalidArgument(f"A job array may have at most {MAX_TASKS} members.")
    normalized_sets = []
    for member in parameter_sets:
        normalized_sets.append(
            {
                "env": _env(member.get("env"), "environment variables in a parameter set"),
                "args": _strings(
                    member.get("args"),
                    "arguments in a parameter set",
                    max_count=MAX_ARGS,
                    max_len=MAX_ARG,
                ),
            }
        )

    replicas = _int(raw.get("replicas"), "replicas", low=1, high=MAX_REPLICAS, default=1)
    quorum = _int(raw.get("quorum"), "quorum", low=1, high=MAX_REPLICAS, default=min(replicas, 2))
    if quorum > replicas:
        raise InvalidArgument(
            f"The quorum ({quorum}) cannot be larger than the replicas ({replicas})."
        )

    budget = raw.get("max_budget_micro") or 0
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise InvalidArgument(
            "Set max_budget_micro: the most this job may cost, in micro-CPT (1 CPT = 1,000,000)."
        )
    if budget > 10**15:
        raise InvalidArgument(
            "max_budget_micro is larger than any wallet can hold (at most 10^15)."
        )

    return JobSpec(
        image=image,
        command=command,
        name=name,
        env=_env(raw.get("env")),
        inputs=inputs,
        output_paths=outputs,
        resources=resources,
        timeout_s=_int(
            raw.get("timeout_s"), "timeout_s", low=1, high=MAX_TIMEOUT_S, default=DEFAULT_TIMEOUT_S
        ),
        priority=_int(raw.get("priority"), "priority", low=-100, high=100, default=0),
        depends_on=depends_on,
        parameter_sets=normalized_sets,
        array_size=array_size if not normalized_sets else 1,
        replicas=replicas,
        quorum=quorum,
        max_budget_micro=int(budget),
        network_access=bool(raw.get("network_access", False)),
        max_attempts=_int(
            raw.get("max_attempts"), "max_attempts", low=1, high=20, default=default_max_attempts
        ),
    )
