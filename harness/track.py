"""Experiment tracking: the only module that imports mlflow.

One MLflow experiment per suite (named after it), one parent run per Optuna study (a
resumed study reopens it), one child run per trial.  The coordinating process creates
the store, the experiment and the parent run (several processes creating a fresh
SQLite store at once race on its schema); workers create and end their trials' runs.
Everything goes through `MlflowClient`, never the fluent global state, so a worker may live in any process.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import measures

METRIC_NAMES = measures.ALWAYS  # the metrics every finished run logs, from the one table of them

DEFAULT_DB = "mlflow.db"


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory."""
    if cli_value:
        return cli_value
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@dataclass(frozen=True)
class Invocation:
    """What a worker needs to log into its child run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def _artifact_root(uri: str, name: str) -> str | None:
    """Artifacts next to a local SQLite store (not in whatever directory a worker runs from)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
    return None


def start_invocation(uri: str, suite_name: str, tags: dict[str, str], suite_files: dict[str, str]) -> Invocation:
    """Create (or reuse) the suite's experiment and open a parent run for this invocation."""
    client = _client(uri)
    exp = client.get_experiment_by_name(suite_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(suite_name, artifact_location=_artifact_root(uri, suite_name))
    run = client.create_run(exp_id, tags={"mlflow.runName": f"{suite_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                          "kind": "invocation", **tags})
    for name, text in suite_files.items():
        client.log_text(run.info.run_id, text, name)
    return Invocation(uri, exp_id, run.info.run_id)


def reopen_invocation(uri: str, parent_run_id: str) -> Invocation:
    """The study's parent run again (a resumed study): RUNNING until this invocation ends."""
    inv = invocation_for(uri, parent_run_id)
    _client(uri).update_run(parent_run_id, status="RUNNING")
    return inv


def invocation_for(uri: str, parent_run_id: str) -> Invocation:
    client = _client(uri)
    return Invocation(uri, client.get_run(parent_run_id).info.experiment_id, parent_run_id)


def run_metrics(uri: str, run_id: str) -> dict[str, float]:
    return dict(_client(uri).get_run(run_id).data.metrics)


def run_tags(uri: str, run_id: str) -> dict[str, str]:
    return dict(_client(uri).get_run(run_id).data.tags)


def create_child(inv: Invocation, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    client = _client(inv.tracking_uri)
    run = client.create_run(inv.experiment_id, tags={"mlflow.parentRunId": inv.parent_run_id, "mlflow.runName": run_name,
                                                     "kind": "cell", "status": "running", **tags})
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, _param_str(v)) for k, v in params.items()])
    return run.info.run_id


def _param_str(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return str(value)


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _client(uri).log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    _client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_artifacts(uri: str, run_id: str, directory: str, artifact_path: str) -> None:
    _client(uri).log_artifacts(run_id, directory, artifact_path)


def log_text(uri: str, run_id: str, text: str, name: str) -> None:
    _client(uri).log_text(run_id, text, name)


def end_run(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """End a cell's run as FINISHED, FAILED or KILLED, with the reason as the `error` tag (the report shows it)."""
    tags = {"status": status.lower()}
    if error:
        tags["error"] = error[:5000]
    log_tags(uri, run_id, tags)
    _client(uri).set_terminated(run_id, status)


def find_trial_run(uri: str, parent_run_id: str, trial_number: int) -> str | None:
    """The child run a trial created, found by its tags (for a worker killed before it could record the run's id)."""
    client = _client(uri)
    exp_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.trial = '{trial_number}'",
                              max_results=5)
    return runs[0].info.run_id if runs else None


def run_status(uri: str, run_id: str) -> str:
    return _client(uri).get_run(run_id).info.status


def load_runs(uri: str, suite_name: str) -> pd.DataFrame:
    """One row per cell run of the suite's experiment: params, metrics and tags as columns."""
    client = _client(uri)
    exp = client.get_experiment_by_name(suite_name)
    if exp is None:
        return pd.DataFrame()
    rows = []
    page_token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'cell'", max_results=1000, page_token=page_token)
        for run in page:
            row = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time}
            row |= dict(run.data.params)
            row |= {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") and k != "status"}
            row |= dict(run.data.metrics)
            rows.append(row)
        page_token = page.token
        if not page_token:
            break
    return pd.DataFrame(rows)


def latest_parent(uri: str, suite_name: str) -> str | None:
    """The suite's most recent parent run (the study's), where a standalone report logs its files."""
    client = _client(uri)
    exp = client.get_experiment_by_name(suite_name)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'invocation'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def log_report(uri: str, parent_run_id: str, out_dir: str | Path) -> None:
    """The leaderboard, runs.csv and plots into the parent run's `report/` artifacts."""
    client, out_dir = _client(uri), Path(out_dir)
    for name in ("leaderboard.md", "runs.csv"):
        if (out_dir / name).is_file():
            client.log_artifact(parent_run_id, str(out_dir / name), "report")
    if (out_dir / "plots").is_dir():
        client.log_artifacts(parent_run_id, str(out_dir / "plots"), "report/plots")


def finish_invocation(inv: Invocation, status: str, summary: dict[str, float]) -> None:
    if summary:
        log_metrics(inv.tracking_uri, inv.parent_run_id, summary)
    _client(inv.tracking_uri).set_terminated(inv.parent_run_id, status)
