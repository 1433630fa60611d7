"""Every MLflow call of robustseg, in one place.

Runs are driven through an explicit :class:`mlflow.tracking.MlflowClient` (never the fluent global "active run"), so
a training run and the evaluation run chained after it in one process cannot leak into each other, and every run
ends FINISHED, FAILED or (stopped by a signal or Ctrl-C) KILLED.

Where runs go: ``MLFLOW_TRACKING_URI`` when it is set, otherwise a SQLite store ``<output_dir>/mlflow.db`` with
artifacts under ``<output_dir>/mlartifacts`` (MLflow 3.13+ refuses plain ``file://`` stores).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_TAG",
    "RUN_FILE",
    "MlflowRun",
    "Terminated",
    "TrackingUnavailableError",
    "absolute_paths",
    "bundle_value",
    "check_tracking_uri",
    "current_bundle_config",
    "default_tracking_uri",
    "end_status",
    "flatten_params",
    "raise_on_termination",
    "recorded_run",
    "recorded_run_of",
    "resolve_tracking_uri",
    "run_id_path",
    "termination_raises",
    "training_run_of",
    "ui_command",
]

logger = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or written; raised before any compute starts."""


def default_tracking_uri(output_dir: str | Path) -> str:
    """The local SQLite store under ``output_dir`` (a bundle's ``eval/``)."""
    return "sqlite:///" + str(Path(output_dir).resolve() / DB_NAME)


def resolve_tracking_uri(output_dir: str | Path, tracking_uri: str | None = None) -> str:
    """``tracking_uri`` if given, else ``MLFLOW_TRACKING_URI``, else the SQLite store under ``output_dir``."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir)


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with the fix in the message, when ``uri`` cannot hold runs.

    * ``http(s)://``: the server must answer its ``/health`` endpoint within ``timeout`` seconds;
    * ``sqlite:///path``: the folder must be writable, or creatable (it is created when a run starts, not here);
    * ``file://`` or a bare path: refused, MLflow 3.13+ no longer accepts file stores.
    """
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status >= 400:
                    raise TrackingUnavailableError(
                        f"MLflow server {uri} answered {response.status} on /health. Check the server, or unset "
                        "MLFLOW_TRACKING_URI to record into the bundle's local eval/mlflow.db."
                    )
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} is unreachable ({getattr(e, 'reason', e)}). Start it "
                f"(`mlflow server --host 127.0.0.1 --port 5000`), fix MLFLOW_TRACKING_URI, or unset it to record "
                "into the bundle's local eval/mlflow.db."
            ) from e
        return
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        existing = db.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise TrackingUnavailableError(
                f"the MLflow store {db} cannot be created: {existing} is a file, not a folder; choose another "
                "output_dir or tracking URI."
            )
        if not os.access(existing, os.W_OK):
            raise TrackingUnavailableError(
                f"the folder of the MLflow store {db} is not writable ({existing}); choose another output_dir."
            )
        return
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingUnavailableError(
            f"MLflow tracking URI {uri!r} is a file store, which MLflow 3.13+ refuses. Use a SQLite store "
            f"(sqlite:///{Path(uri.removeprefix('file://')).resolve()}/{DB_NAME}) or a tracking server."
        )


CHECKPOINT_TAG = "checkpoint_sha256"
"""Tag of a training run: the SHA-256 of the checkpoint it produced, by which evaluations find the run."""


def training_run_of(uri: str, checkpoint_sha256: str) -> str | None:
    """The id of the run that produced the checkpoint with this hash (tag :data:`CHECKPOINT_TAG`), or ``None``."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            ids, filter_string=f"tags.{CHECKPOINT_TAG} = '{checkpoint_sha256}'", order_by=["start_time DESC"]
        )
    except Exception:  # an empty or unreadable store knows no training run
        return None
    return runs[0].info.run_id if runs else None


def absolute_paths(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with relative paths that exist made absolute (nested mappings included), so that a run's params
    say where its data and checkpoints are wherever the UI is opened."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out[key] = absolute_paths(value)
        elif isinstance(value, str | Path) and str(value) and not Path(value).is_absolute() and Path(value).exists():
            out[key] = str(Path(value).resolve())
        else:
            out[key] = value
    return out


def ui_command(uri: str) -> str:
    """The shell command that opens the MLflow UI on ``uri``."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --port 5000   (then open http://127.0.0.1:5000)"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params to ``a.b`` keys with string values MLflow accepts (at most 6000 characters each)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:6000]
    return out


def _bundle_parser() -> Any:
    """The MONAI ``ConfigParser`` of the bundle being run, found on the call stack, or ``None``."""
    from monai.bundle import ConfigParser

    for frame_info in inspect.stack(context=0):
        candidate = frame_info.frame.f_locals.get("self")
        if isinstance(candidate, ConfigParser):
            return candidate
    return None


def current_bundle_config() -> dict[str, Any] | None:
    """The merged config (with command-line overrides) of the MONAI bundle being parsed, or ``None``.

    A bundle config cannot refer to itself, but its components are instantiated while MONAI's ``ConfigParser``
    resolves them, so the parser is on the call stack. This is how the executed config reaches MLflow without asking
    users for MONAI's ``--tracking`` flag.
    """
    parser = _bundle_parser()
    config = parser.get() if parser is not None else None
    return config if isinstance(config, dict) else None


def bundle_value(config_id: str) -> Any:
    """The resolved value of ``config_id`` in the bundle being run (``None`` outside a bundle run or when absent)."""
    parser = _bundle_parser()
    if parser is None or config_id not in parser:
        return None
    try:
        return parser.get_parsed_content(config_id)
    except Exception:  # an id that cannot be resolved here is not worth failing a report for
        return None


def run_id_path(output_dir: str | Path, run_name: str) -> Path:
    """The file in which a bundle run's :class:`~robustseg.handlers.MLflowTracker` keeps its MLflow run id."""
    return Path(output_dir) / f"mlflow_run_{run_name}.json"


def recorded_run_of(output_dir: str | Path, run_name: str, experiment_name: str) -> MlflowRun | None:
    """The MLflow run a bundle's tracker recorded in ``output_dir`` under ``run_name`` (e.g. the training that is
    running), to log into it; ``None`` when there is none."""
    path = run_id_path(output_dir, run_name)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return MlflowRun(record["tracking_uri"], experiment_name, run_name, run_id=record["run_id"])
    except (OSError, ValueError, KeyError) as e:
        logger.warning("cannot open the MLflow run recorded in %s (%s)", path, e)
        return None


class MlflowRun:
    """One MLflow run driven through an explicit client: start (or resume), log, end.

    Args:
        tracking_uri: where runs go; see :func:`resolve_tracking_uri`.
        experiment_name: created when missing, with artifacts next to a SQLite store.
        run_name: shown in the UI.
        run_id: resume this run instead of creating one (a killed training continues its run).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        if tracking_uri.startswith("sqlite:///"):  # the store's folder is made when the first run starts
            Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            artifact_location = None
            if tracking_uri.startswith("sqlite:///"):
                artifact_location = (Path(tracking_uri[len("sqlite:///") :]).parent / ARTIFACTS_DIR).as_uri()
            experiment_id = self.client.create_experiment(experiment_name, artifact_location=artifact_location)
        else:
            experiment_id = experiment.experiment_id
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
            self.run_id = run.info.run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, v) for k, v in flatten_params(params).items() if k not in existing]
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():  # under its own name (``metrics/...``) unless told otherwise
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            logger.warning("artifact %s does not exist; not logged to MLflow run %s", path, self.run_id)

    def log_dict(self, data: Mapping[str, Any], file_name: str) -> None:
        self.client.log_dict(self.run_id, dict(data), file_name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


RUN_FILE = "mlflow_run.json"
"""Next to a resumable run's results: the MLflow run that holds them, so that a resume continues it."""


class Terminated(SystemExit):
    """The process was asked to stop (SIGTERM, SIGHUP): unwinds like ``SystemExit`` so that runs end KILLED."""


def end_status(error: BaseException) -> str:
    """The MLflow status of a run that ``error`` ended: KILLED when stopped from outside, else FAILED."""
    return "KILLED" if isinstance(error, KeyboardInterrupt | SystemExit) else "FAILED"


def raise_on_termination(on_signal: Callable[[], None] | None = None) -> Callable[[], None]:
    """From now on SIGTERM and SIGHUP raise :class:`Terminated` (exit status 128 + signal) in the main thread;
    returns the function that restores the previous handlers.

    A process killed by a signal's default action runs no ``finally`` and no ``except``: its MLflow run would stay
    RUNNING forever. ``on_signal`` runs first, in the handler (the main thread, between two bytecodes), so a run can
    be marked KILLED before the stack unwinds. Off the main thread (where handlers cannot be set) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: Any) -> None:
        if on_signal is not None:
            try:
                on_signal()
            except Exception:  # the store is unreachable: stop all the same
                logger.exception("could not record the stop in MLflow")
        raise Terminated(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, stop)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


@contextmanager
def termination_raises(on_signal: Callable[[], None] | None = None) -> Iterator[None]:
    """:func:`raise_on_termination` within the block."""
    restore = raise_on_termination(on_signal)
    try:
        yield
    finally:
        restore()


def _resumable(uri: str, run_file: Path | None) -> tuple[str | None, str | None]:
    """``(run_id to continue, run_id of a finished earlier run)`` from ``run_file`` (each ``None`` when none)."""
    if run_file is None or not run_file.is_file():
        return None, None
    try:
        record = json.loads(run_file.read_text())
    except json.JSONDecodeError:
        return None, None
    if record.get("tracking_uri") != uri:
        return None, None
    from mlflow.tracking import MlflowClient

    try:
        status = MlflowClient(tracking_uri=uri).get_run(record["run_id"]).info.status
    except Exception:  # deleted, or the store was replaced: start a new run
        return None, None
    return (None, record["run_id"]) if status == "FINISHED" else (record["run_id"], None)


@contextmanager
def recorded_run(
    tracking_dir: str | Path,
    experiment_name: str,
    run_name: str,
    tracking_uri: str | None = None,
    run_file: str | Path | None = None,
) -> Iterator[MlflowRun]:
    """One MLflow run around a block: the store is checked first; the run ends FINISHED, KILLED (SIGTERM, Ctrl-C)
    or FAILED with the error as a tag.

    Args:
        run_file: where the run's id is kept (a resumable run's output folder/:data:`RUN_FILE`). When it names an
            unfinished run of the same store, that run is continued; a finished one is linked from the new run
            (tag ``robustseg.previous_run``).

    Example::

        with recorded_run("eval", "brats_unet3d", "certify") as run:
            run.log_params({"n": 1000})
    """
    uri = resolve_tracking_uri(tracking_dir, tracking_uri)
    check_tracking_uri(uri)
    path = Path(run_file) if run_file is not None else None
    previous, finished = _resumable(uri, path)
    tags = {"robustseg.previous_run": finished} if finished else {}
    run = MlflowRun(uri, experiment_name, run_name, run_id=previous, tags=tags)
    if previous:
        logger.info("continuing the unfinished MLflow run %s (%s) in %s", previous, run_name, uri)
    else:
        logger.info("MLflow run %s (%s) in %s", run.run_id, run_name, uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_id": run.run_id, "tracking_uri": uri}) + "\n")

    def killed() -> None:  # recorded at once: unwinding the stack may take long, or not end cleanly
        run.set_tags({"error": "Terminated: stopped by a signal"})
        run.end("KILLED")
        logger.info("MLflow run %s (%s) ended KILLED", run.run_id, run_name)

    try:
        with termination_raises(killed):
            yield run
    except Terminated:
        raise
    except BaseException as error:
        status = end_status(error)
        run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
        run.end(status)
        logger.info("MLflow run %s (%s) ended %s", run.run_id, run_name, status)
        raise
    run.end("FINISHED")
