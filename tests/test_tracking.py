"""Tests for :mod:`robustseg.tracking`: where runs go, fail-fast checks, params and the explicit-client run."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from robustseg.tracking import (
    ARTIFACTS_DIR,
    DB_NAME,
    MlflowRun,
    TrackingUnavailableError,
    check_tracking_uri,
    flatten_params,
    resolve_tracking_uri,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One SQLite store for the module (creating one takes seconds): its URI and folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / DB_NAME}", folder


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explicit_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(tmp_path, "http://explicit:5000") == "http://explicit:5000"


def test_env_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(tmp_path) == "http://env:5000"


def test_default_is_sqlite_under_output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri(tmp_path / "eval")
    assert uri == "sqlite:///" + str(tmp_path.resolve() / "eval" / "mlflow.db")


def test_closed_http_port_fails_fast_with_the_fix() -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as info:
        check_tracking_uri(uri, timeout=2.0)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert uri in message
    assert "mlflow server" in message
    assert "MLFLOW_TRACKING_URI" in message


@pytest.fixture
def health_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A local HTTP server answering ``/health`` with the status in ``answer["status"]``."""
    answer = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer["status"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", answer
    finally:
        server.shutdown()
        server.server_close()


def test_healthy_server_passes_and_unhealthy_fails(health_server: tuple[str, dict[str, int]]) -> None:
    uri, answer = health_server
    check_tracking_uri(uri, timeout=2.0)
    answer["status"] = 503
    with pytest.raises(TrackingUnavailableError, match=re.escape(uri)):
        check_tracking_uri(uri, timeout=2.0)


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "mlruns", "/tmp/mlruns"])
def test_file_stores_are_refused(uri: str) -> None:
    with pytest.raises(TrackingUnavailableError, match="file store") as info:
        check_tracking_uri(uri)
    assert "sqlite:///" in str(info.value)


def test_sqlite_in_writable_folder_passes_and_creates_nothing(tmp_path: Path) -> None:
    """A check must leave nothing behind: a run that then fails on bad input would leave an empty folder."""
    folder = tmp_path / "new" / "eval"
    check_tracking_uri(f"sqlite:///{folder / DB_NAME}")
    assert not (tmp_path / "new").exists()


def test_sqlite_folder_that_cannot_be_created_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(TrackingUnavailableError, match="is a file, not a folder"):
        check_tracking_uri(f"sqlite:///{blocker / DB_NAME}")


@pytest.mark.parametrize("nested", [False, True])
def test_sqlite_in_read_only_folder_fails(tmp_path: Path, nested: bool) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        db = (ro / "sub" / DB_NAME) if nested else (ro / DB_NAME)
        with pytest.raises(TrackingUnavailableError, match="MLflow store"):
            check_tracking_uri(f"sqlite:///{db}")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_flatten_params() -> None:
    params = {
        "lr": 0.001,
        "epochs": 3,
        "name": "unet",
        "network": {"channels": [16, 32], "norm": {"kind": "instance"}},
        "long": "x" * 7000,
    }
    flat = flatten_params(params)
    assert flat == {
        "lr": "0.001",
        "epochs": "3",
        "name": "unet",
        "network.channels": "[16, 32]",
        "network.norm.kind": "instance",
        "long": "x" * 6000,
    }
    assert json.loads(flat["network.channels"]) == [16, 32]
    assert len(flatten_params({"big": list(range(3000))})["big"]) == 6000


def test_run_logs_and_reads_back(store: tuple[str, Path], tmp_path: Path) -> None:
    uri, folder = store
    run = MlflowRun(uri, "tracking-test", "train", tags={"kind": "unit"})
    run.log_params({"lr": 0.1, "net": {"depth": 2}})
    run.log_metrics({"loss": 1.0}, step=1)
    run.log_metrics({"loss": 0.5, "dice": 0.75}, step=2)
    artifact = tmp_path / "report.json"
    artifact.write_text("{}")
    run.log_artifact(artifact)
    run.log_artifact(tmp_path / "missing.json")  # skipped with a warning, not an error
    run.end()

    client = MlflowClient(uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "train"
    assert got.data.tags["kind"] == "unit"
    assert got.data.params == {"lr": "0.1", "net.depth": "2"}
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "loss"))
    assert history == [(1, 1.0), (2, 0.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "dice")] == [(2, 0.75)]
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["report.json"]
    assert (folder / ARTIFACTS_DIR).is_dir()
    assert list((folder / ARTIFACTS_DIR).rglob("report.json"))
    assert client.get_experiment(run.experiment_id).artifact_location == (folder / ARTIFACTS_DIR).as_uri()


def test_resume_by_run_id(store: tuple[str, Path]) -> None:
    uri, _ = store
    first = MlflowRun(uri, "tracking-test", "killed")
    first.log_params({"lr": 0.1})
    first.log_metrics({"loss": 1.0}, step=1)
    first.end("KILLED")

    again = MlflowRun(uri, "tracking-test", "killed", run_id=first.run_id)
    assert again.run_id == first.run_id
    client = MlflowClient(uri)
    assert client.get_run(first.run_id).info.status == "RUNNING"
    again.log_params({"lr": 0.1, "epochs": 5})  # a param already logged is not logged again (MLflow would refuse)
    again.log_metrics({"loss": 0.5}, step=2)
    again.end()
    got = client.get_run(first.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.1", "epochs": "5"}
    assert sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")) == [(1, 1.0), (2, 0.5)]


def test_recorded_run_ends_finished_or_failed_with_the_error(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from robustseg.tracking import default_tracking_uri, recorded_run

    with recorded_run(tmp_path, "exp", "good") as run:
        run.log_params({"a": 1})
    with pytest.raises(ZeroDivisionError), recorded_run(tmp_path, "exp", "bad"):
        _ = 1 / 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("exp").experiment_id])}
    assert runs["good"].info.status == "FINISHED" and runs["good"].data.params["a"] == "1"
    assert runs["bad"].info.status == "FAILED" and runs["bad"].data.tags["error"].startswith("ZeroDivisionError")
