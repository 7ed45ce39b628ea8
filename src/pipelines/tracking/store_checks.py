"""Whether an MLflow tracking store can record a run, said before the run opens.

MLflow finds a bad store late or slowly: a folder of files (its file store, refused by
MLflow 3) or a deleted experiment with a traceback when the run is created, a server that
does not answer after minutes of retries, a damaged, locked or read-only SQLite file with 40
lines of SQLAlchemy. :mod:`pipelines.tracking.tracker` opens its stores through these checks, so
each of those is one paragraph naming the setting that chose the store and the fix.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from pipelines.errors import PipelineError, TrackingStoreError, exception_chain

if TYPE_CHECKING:
    from pipelines.tracking.store import TrackingSettings

#: seconds the one reachability check of an http(s) tracking server waits for an answer
SERVER_CHECK_SECONDS = 5


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_active(experiment: Any, uri: str) -> None:
    """A deleted experiment (deleted in the MLflow UI) keeps its name, and MLflow refuses to
    create runs in it with "must be in the 'active' state": say how to get it back."""
    if experiment.lifecycle_stage != "deleted":
        return
    raise TrackingStoreError(
        f"The MLflow experiment '{experiment.name}' (tracking.experiment) is deleted (in the "
        "MLflow UI, or with `mlflow experiments delete`), and MLflow creates no runs in a "
        "deleted experiment. Restore it with `MLFLOW_TRACKING_URI="
        f"{shlex.quote(uri)} mlflow experiments restore --experiment-id "
        f"{experiment.experiment_id}`, or choose another name with "
        "`tracking.experiment=NAME` (a deleted experiment keeps its name until `mlflow gc` "
        "removes it for good)."
    )


def check_store(settings: TrackingSettings, uri: str) -> None:
    """Refuse, before the run opens, the stores MLflow would fail on late or slowly.

    A folder of files (``file:./mlruns``, or a plain path) is MLflow's file store, which
    MLflow 3 refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``; an http(s) server that does not
    answer is retried by MLflow's client for minutes before its traceback.
    """
    if is_file_store(uri):
        _check_not_file_store(settings, uri)
    elif urlparse(uri).scheme in ("http", "https"):
        _check_server_answers(settings, uri)


def _check_not_file_store(settings: TrackingSettings, uri: str) -> None:
    """Point a file-store URI at the SQLite store that replaces it (and how to move runs)."""
    if settings.uri:
        use = "`tracking.uri={}`".format
    else:
        use = "`MLFLOW_TRACKING_URI={}` (or unset it for ./mlruns/mlflow.db)".format
    refuse_file_store(uri, settings.uri_origin(), use)


def is_file_store(uri: str) -> bool:
    """A folder of files (``file:./mlruns``, a plain path): MLflow's file store."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive


def refuse_file_store(uri: str, origin: str, use: Callable[[str], str]) -> None:
    """Refuse MLflow's file store at ``uri`` (``origin``: which setting chose it) with the
    SQLite URI to use instead, as ``use(sqlite_uri)`` writes it for the command at hand,
    and the command that moves existing runs there; unless MLflow's own opt-out is set."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    if MLFLOW_ALLOW_FILE_STORE.get():  # MLflow's own opt-out: the user chose the file store
        return
    parsed = urlparse(uri)
    path = url2pathname(parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
    location = Path(path).expanduser().absolute()
    if location.suffix in (".db", ".sqlite", ".sqlite3"):  # meant a database file
        sqlite, folder = f"sqlite:///{location}", None
    else:
        sqlite, folder = f"sqlite:///{location / 'mlflow.db'}", location
    move = ""
    if folder is not None and folder.is_dir() and any(folder.iterdir()):
        move = (
            f"; runs already in {folder} move into it with `mlflow migrate-filestore "
            f"--source {shlex.quote(str(folder))} --target {shlex.quote(sqlite)}`"
        )
    raise TrackingStoreError(
        f"The tracking store {uri} ({origin}) is a folder of files (MLflow's file store), "
        "which MLflow 3 no longer accepts; runs are kept in a SQLite database instead. Use "
        f"{use(sqlite)}{move}. To keep the file store anyway, set "
        "MLFLOW_ALLOW_FILE_STORE=true (MLflow's opt-out; that store gets no new features)."
    )


def _check_server_answers(settings: TrackingSettings, uri: str) -> None:
    """Refuse a tracking server that does not answer (see :func:`server_silence`)."""
    why = server_silence(uri)
    if why is not None:
        raise TrackingStoreError(
            f"The MLflow tracking server {uri} ({settings.uri_origin()}) did not answer: "
            f"{why}. {start_server_hint(uri)}, correct the address, or "
            f"{_local_store_fix(settings)}."
        )


def server_silence(uri: str) -> str | None:
    """Why the http(s) tracking server at ``uri`` did not answer one quick request; None
    when it answered.

    MLflow's client retries a server that does not answer MLFLOW_HTTP_REQUEST_MAX_RETRIES
    (7) times with exponential backoff (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, 2 s, doubling),
    each try waiting up to MLFLOW_HTTP_REQUEST_TIMEOUT (120 s): about 255 s before a
    traceback. This check tries once, for :data:`SERVER_CHECK_SECONDS`; any HTTP answer,
    even an error status, means a server is there. Later requests keep MLflow's retries,
    which ride out a server restarting during training. MLflow's own request function is
    used so that its credentials and TLS settings (MLFLOW_TRACKING_TOKEN, ...) apply.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        http_request(
            get_default_host_creds(uri),
            "/health",
            "GET",
            max_retries=0,
            timeout=SERVER_CHECK_SECONDS,
            raise_on_status=False,
        )
    except MlflowException as exc:
        text = str(exc).lower()
        if "refused" in text:
            return "nothing accepts connections at that address and port"
        if "resolve" in text or "name or service not known" in text:
            return f"the host name {urlparse(uri).hostname} is not known"
        if "timeout" in text or "timed out" in text:
            return f"no answer within {SERVER_CHECK_SECONDS} s"
        return _first_line(exc)
    return None


def start_server_hint(uri: str) -> str:
    """How to start a server at ``uri``'s port over the local runs."""
    port = urlparse(uri).port or (443 if uri.startswith("https") else 80)
    return (
        f"Start it (`python -m pipelines.ui --port {port}` serves the runs in ./mlruns "
        f"there; `mlflow server --port {port}` is MLflow's own)"
    )


@contextmanager
def explained_store_errors(settings: TrackingSettings, uri: str) -> Iterator[None]:
    """Turn a failure to open the store or its run into one paragraph: which store, what is
    wrong with it, which setting to change.

    MLflow and SQLAlchemy raise these from deep inside (``file is not a database``,
    ``database is locked``, ``Read-only file system``) after 40 lines of traceback; the user
    can act only on the store. Errors of other kinds (bugs) keep their traceback.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except PipelineError:
        raise
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise TrackingStoreError(_store_problem(exc, settings, uri)) from exc


def _store_problem(exc: BaseException, settings: TrackingSettings, uri: str) -> str:
    """The paragraph for a store that failed to open: locked, damaged, read-only, other."""

    causes = exception_chain(exc)  # MLflow wraps SQLAlchemy's error, which wraps sqlite's
    text = " ".join(str(cause) for cause in causes).lower()
    database = sqlite_file(uri)
    store = f"The tracking store {database or uri} ({settings.uri_origin()})"
    gist = _first_line(exc)
    if database is not None and "database is locked" in text:
        return (
            f"{store} is locked: another process has kept a write open on it for longer than "
            "SQLite waits (5 s), e.g. an `sqlite3` shell or a database browser with a "
            f"transaction open, or a hung process (`fuser {shlex.quote(str(database))}` names it). "
            f"End that and run again, or {_other_store_fix(settings)}."
        )
    if database is not None and ("not a database" in text or "malformed" in text):
        return (
            f"{store} is not a database MLflow can read ({gist}): the file is damaged, or is "
            f"something else. Move it aside (`mv {shlex.quote(str(database))} "
            f"{shlex.quote(str(database) + '.broken')}`) and the next run starts a new, "
            f"empty store there, or {_other_store_fix(settings)}."
        )
    denied = (errno.EROFS, errno.EACCES, errno.EPERM)
    if (
        "readonly database" in text
        or "unable to open database file" in text
        or any(isinstance(cause, OSError) and cause.errno in denied for cause in causes)
    ):
        folder = f"make {database.parent} writable, " if database is not None else ""
        return (
            f"{store} cannot be written ({gist}), and a run records into it: {folder}run "
            f"from a folder you can write in, or {_other_store_fix(settings)}."
        )
    return f"{store} cannot record the run: {gist}. Check it, or {_other_store_fix(settings)}."


def _other_store_fix(settings: TrackingSettings) -> str:
    """How to send the run to another store, in terms of the setting that chose this one."""
    example = "sqlite:///PATH/mlflow.db"
    if settings.uri:
        return f"point tracking.uri at another store (`tracking.uri={example}`)"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return (
            "point MLFLOW_TRACKING_URI at another store, or override it with "
            f"`tracking.uri={example}`"
        )
    return f"use another store with `tracking.uri={example}`"


def _local_store_fix(settings: TrackingSettings) -> str:
    """How to go back to the local SQLite store (``./mlruns/mlflow.db``)."""
    if settings.uri:
        return "leave tracking.uri out to track in the local store ./mlruns/mlflow.db"
    return "unset MLFLOW_TRACKING_URI to track in the local store ./mlruns/mlflow.db"


def _first_line(exc: BaseException) -> str:
    """The gist of an error: its first line (SQLAlchemy appends the SQL and a link)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = (lines[0] if lines else type(exc).__name__).rstrip(".")
    return text if len(text) <= 300 else text[:297] + "..."
