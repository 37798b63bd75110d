"""``byodb worker``: the job workers in a process of their own (the worker role)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from byodb.cli.common import checked_settings, exit_on_sigterm, start_main
from byodb.jobs.queue import WORKER_CONCURRENCY, run_workers
from byodb.maindb.urls import redacted_url
from byodb.runtime import Role, open_process

commands = typer.Typer()


@commands.command()
def worker() -> None:
    """Run background jobs in this process (`byodb serve` also runs them inline)."""

    settings = checked_settings()
    url, share = start_main(settings)
    queues = ", ".join(f"{queue} ({concurrency} at a time)"
                       for queue, concurrency in WORKER_CONCURRENCY.items())
    # One line: what this process does and where, the password masked.
    typer.echo(f"byodb worker: serving queues {queues} from {redacted_url(url)}", err=True)

    async def run() -> None:
        # From here SIGTERM asks the workers to stop, once the process is up: stopping
        # them mid-start-up (inside the job app's connection pool opening) could leave a
        # pool task the loop then waits for forever. Start-up has its deadlines.
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with open_process(settings, Role.worker, url) as process:
            runtime = process.runtime
            workers = asyncio.create_task(run_workers(
                process.job_app, runtime.lifecycle, main=runtime.main, migrator=runtime.migrator,
                name="worker",
                health=runtime.health,
                reembedder=runtime.reembedder))
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({workers, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                workers.cancel()  # run_workers stops every worker in order, then returns
                with contextlib.suppress(asyncio.CancelledError):
                    await workers

    # Until the loop runs, as in serve: SIGTERM ends in SystemExit, so the share below is
    # released.
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a foreground worker is stopped, not an error
    finally:
        if share is not None:
            share.release()
