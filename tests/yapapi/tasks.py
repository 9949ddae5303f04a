#!/usr/bin/env python3
"""A Golem requestor script, written the way yapapi's own examples are, run against an agora node.

Each task uploads an input file to a provider, runs a WASM module on it (the module copies
/input/in.txt to its stdout and to /output/out.txt), and downloads the output file. The script
prints each task's stdout and the downloaded file's text.

Only two things are agora's: the payload class below, and the environment the script runs in
(YAGNA_API_URL, YAGNA_APPKEY, YAGNA_PAYMENT_NETWORK=dev). Usage: tasks.py PACKAGE WORK_DIR TASKS
"""

import asyncio
import pathlib
import sys
from dataclasses import dataclass
from datetime import timedelta

from yapapi import Golem, Task, WorkContext
from yapapi.log import enable_default_logger
from yapapi.payload import Payload
from yapapi.props.base import constraint, prop


@dataclass
class AgoraWasm(Payload):
    """agora's deterministic WASM runtime, running the module at `package` (a URL, here
    hash:sha3:<hex>:<http URL>)."""

    package: str = prop("golem.srv.comp.task_package")
    runtime: str = constraint("golem.runtime.name", default="wasmtime")


async def main(package: str, work_dir: pathlib.Path, count: int) -> None:
    async def worker(ctx: WorkContext, tasks):
        async for task in tasks:
            name = task.data
            script = ctx.new_script(timeout=timedelta(minutes=2))
            script.upload_file(str(work_dir / f"{name}.in"), "/input/in.txt")
            ran = script.run("cat")
            script.download_file("/output/out.txt", str(work_dir / f"{name}.out"))
            yield script
            result = await ran
            task.accept_result(result=result.stdout)

    for i in range(count):
        (work_dir / f"task{i}.in").write_text(f"input of task {i}\n")

    async with Golem(budget=1.0) as golem:
        tasks = [Task(data=f"task{i}") for i in range(count)]
        async for task in golem.execute_tasks(
            worker, tasks, payload=AgoraWasm(package=package), max_workers=2, timeout=timedelta(minutes=4)
        ):
            out = (work_dir / f"{task.data}.out").read_text()
            print(f"{task.data}: stdout={task.result!r} file={out!r}", flush=True)


if __name__ == "__main__":
    enable_default_logger()
    asyncio.run(main(sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])))
