"""Conversions between protobuf messages and domain values for jobs (the only job code touching _pb2)."""

from __future__ import annotations

from typing import Any

from coordinator.clock import to_unix
from coordinator.jobs.models import Job, Task
from coordinator.jobs.spec import JobSpec
from shared_proto.v1 import jobs_pb2


def spec_to_dict(spec: jobs_pb2.JobSpec) -> dict[str, Any]:
    """A raw spec for coordinator.jobs.spec.parse_spec (which validates every field)."""
    r = spec.resources
    return {
        "name": spec.name,
        "image": spec.image,
        "command": list(spec.command),
        "env": dict(spec.env),
        "inputs": [
            {
                "path": i.path,
                "sha256": i.sha256,
                "from_job_id": i.from_job_id,
                "from_output": i.from_output,
            }
            for i in spec.inputs
        ],
        "output_paths": list(spec.output_paths),
        "resources": {
            "cpu_cores": r.cpu_cores,
            "memory_gb": r.memory_gb,
            "gpu_count": r.gpu_count,
            "gpu_memory_gb": r.gpu_memory_gb,
            "disk_gb": r.disk_gb,
            "gpu_name": r.gpu_name,
        },
        "timeout_s": spec.timeout_s,
        "priority": spec.priority,
        "depends_on": list(spec.depends_on),
        "parameter_sets": [{"env": dict(p.env), "args": list(p.args)} for p in spec.parameter_sets],
        "array_size": spec.array_size,
        "replicas": spec.replicas,
        "quorum": spec.quorum,
        "max_budget_micro": spec.max_budget_micro,
        "network_access": spec.network_access,
        "max_attempts": spec.max_attempts,
    }


def spec_to_pb(spec: JobSpec) -> jobs_pb2.JobSpec:
    r = spec.resources
    return jobs_pb2.JobSpec(
        name=spec.name,
        image=spec.image,
        command=spec.command,
        env=spec.env,
        inputs=[
            jobs_pb2.InputRef(
                path=i.path, sha256=i.sha256, from_job_id=i.from_job_id, from_output=i.from_output
            )
            for i in spec.inputs
        ],
        output_paths=spec.output_paths,
        resources=jobs_pb2.Resources(
            cpu_cores=r.cpu_cores,
            memory_gb=r.memory_gb,
            gpu_count=r.gpu_count,
            gpu_memory_gb=r.gpu_memory_gb,
            disk_gb=r.disk_gb,
            gpu_name=r.gpu_name,
        ),
        timeout_s=spec.timeout_s,
        priority=spec.priority,
        depends_on=spec.depends_on,
        parameter_sets=[
            jobs_pb2.ParameterSet(env=p.get("env", {}), args=p.get("args", []))
            for p in spec.parameter_sets
        ],
        array_size=spec.array_size,
        replicas=spec.replicas,
        quorum=spec.quorum,
        max_budget_micro=spec.max_budget_micro,
        network_access=spec.network_access,
        max_attempts=spec.max_attempts,
    )


def task_to_pb(task: Task, replicas_reported: int = 0) -> jobs_pb2.TaskStatus:
    return jobs_pb2.TaskStatus(
        task_id=task.id,
        index=task.index,
        state=task.state,
        exit_code=task.exit_code or 0,
        result_hash=task.result_hash or "",
        outputs=[
            jobs_pb2.OutputFile(path=o["path"], sha256=o["sha256"], size=o["size"])
            for o in task.outputs
        ],
        attempts=task.attempts,
        failure_reason=task.failure_reason,
        replicas_reported=replicas_reported,
        charged_micro=task.charged_micro,
    )


def job_to_pb(job: Job, tasks: list[Task] | None = None, owner: str = "") -> jobs_pb2.JobStatus:
    return jobs_pb2.JobStatus(
        job_id=job.id,
        name=job.name,
        state=job.state,
        failure_reason=job.failure_reason,
        task_count=job.task_count,
        tasks_done=job.tasks_done,
        tasks_failed=job.tasks_failed,
        escrow_micro=job.escrow_micro,
        charged_micro=job.charged_micro,
        refunded_micro=job.refunded_micro,
        created_at=to_unix(job.created_at),
        finished_at=to_unix(job.finished_at) if job.finished_at else 0,
        tasks=[task_to_pb(t) for t in tasks or []],
        spec=spec_to_pb(JobSpec.from_stored(job.spec)),
        owner=owner,
    )
