"""``python -m pipelines.ui [--port 5000]``: the MLflow UI over this project's runs.

Serves the store the runs went to (``./mlruns/mlflow.db`` unless ``--tracking-uri`` or
``$MLFLOW_TRACKING_URI`` says otherwise) on 127.0.0.1 only: the UI can delete runs, so it
is not offered to the network unless ``--host`` asks for it. Artifacts are read where the
runs wrote them (``./mlruns/artifacts``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipelines.errors import PipelineError


def server_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line for ``uri`` (MLflow's ``ui`` is the same server)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def check_store(uri: str, given: bool) -> None:
    """A SQLite store must exist: MLflow would create an empty one and show nothing. A
    folder of files (MLflow's file store) is refused by MLflow 3's server with a traceback
    after it had said the UI was up; ``given``: the uri came from --tracking-uri."""
    from pipelines.tracking.store_checks import is_file_store, refuse_file_store

    if is_file_store(uri):
        if given:
            refuse_file_store(uri, "given to --tracking-uri", "`--tracking-uri {}`".format)
        refuse_file_store(
            uri, "set by the MLFLOW_TRACKING_URI variable", "`MLFLOW_TRACKING_URI={}`".format
        )
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise PipelineError(
                f"No runs here yet: {database} does not exist. Start one with "
                "`python -m pipelines.run`, or pass --tracking-uri (or set "
                "MLFLOW_TRACKING_URI) to the store that holds your runs."
            )


def check_port(host: str, port: int) -> None:
    """The port must be free: on a busy one MLflow's server printed a gunicorn/uvicorn error
    and the command still exited 0, as if the UI were up."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise PipelineError(f"Cannot serve on {host}:{port}: {exc.strerror}.") from None
            raise PipelineError(
                f"Port {port} on {host} is in use, by another program or another MLflow UI "
                f"(if that is yours, it is at http://{host}:{port}). Pick a free port: "
                f"python -m pipelines.ui --port {port + 1}."
            ) from None


def main(argv: list[str] | None = None) -> None:
    from pipelines.errors import report_error
    from pipelines.tracking.store import TrackingSettings

    parser = argparse.ArgumentParser(prog="python -m pipelines.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    options = parser.parse_args(argv)
    uri = options.tracking_uri or TrackingSettings().resolved_uri()
    try:
        check_store(uri, given=bool(options.tracking_uri))
        check_port(options.host, options.port)
    except PipelineError as exc:
        report_error(exc)
        raise SystemExit(2) from None
    print(
        f"MLflow UI on http://{options.host}:{options.port} over {uri} (Ctrl-C stops it)",
        flush=True,
    )
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    # In a session of its own: Ctrl-C in the terminal reaches only this wrapper, which stops
    # the server and its workers together. Reached by the terminal's SIGINT directly, each
    # of MLflow's worker processes printed its own KeyboardInterrupt traceback (~270 lines).
    server = subprocess.Popen(
        server_command(uri, options.host, options.port), env=env, start_new_session=True
    )
    # SIGTERM (a test, a process manager) stops the server too, not just this wrapper; only
    # signalled here: the handler interrupts server.wait(), which must not be re-entered
    signal.signal(signal.SIGTERM, lambda *_: _signal_group(server, signal.SIGTERM))
    try:
        raise SystemExit(server.wait())
    except KeyboardInterrupt:
        stop_server(server)


def stop_server(server: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the server's whole process group; SIGKILL if it is not gone in ``grace``."""
    _signal_group(server, signal.SIGTERM)
    try:
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(server, signal.SIGKILL)
        server.wait()


def _signal_group(server: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signum)


if __name__ == "__main__":
    main()
