"""Tests against a real PostgreSQL server on localhost (fixtures in tests/postgres.py).

They check the fixtures themselves, and that the two stores the harness can put in
PostgreSQL for multi-machine runs work there: Optuna's RDBStorage and MLflow's tracking store.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa


def test_server_answers(postgres_server):
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version()")
            (version,) = cur.fetchone()
            cur.execute("SHOW fsync")
            (fsync,) = cur.fetchone()
            cur.execute("SHOW max_connections")
            (max_connections,) = cur.fetchone()
    finally:
        conn.close()
    assert version.startswith("PostgreSQL ")
    assert fsync == "off"
    assert int(max_connections) == 200
    assert postgres_server.host == "127.0.0.1" and postgres_server.port > 0
    assert postgres_server.url("x") == f"postgresql+psycopg2://postgres@127.0.0.1:{postgres_server.port}/x"
    assert postgres_server.url("x", driver="postgresql") == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/x"


def _make_db(postgres_server, request):
    """A second database like `postgres_url`'s (a fixture can't be requested twice in one test)."""
    import uuid

    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = postgres_server.connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()

    def drop():
        c = postgres_server.connect()
        with c.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.close()

    request.addfinalizer(drop)
    return postgres_server.url(name)


def test_databases_are_fresh_and_isolated(postgres_server, postgres_url, request):
    other_url = _make_db(postgres_server, request)
    assert other_url != postgres_url
    one, other = sa.create_engine(postgres_url), sa.create_engine(other_url)
    try:
        assert sa.inspect(one).get_table_names() == []  # fresh
        with one.begin() as conn:
            conn.execute(sa.text("CREATE TABLE marker (x int)"))
            conn.execute(sa.text("INSERT INTO marker VALUES (42)"))
        with one.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM marker")).scalar_one() == 42
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == postgres_url.rsplit("/", 1)[1]
        assert "marker" in sa.inspect(one).get_table_names()
        assert "marker" not in sa.inspect(other).get_table_names()
    finally:
        one.dispose()
        other.dispose()


@pytest.fixture
def assert_dropped_after(postgres_server):
    """Fill the yielded list with database names; after the test (and, being set up before it,
    after `postgres_url`'s teardown) none of them may exist any more."""
    names: list[str] = []
    yield names
    conn = postgres_server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
        left = cur.fetchall()
    conn.close()
    assert names and not left, f"databases still there after the test: {left}"


def test_postgres_url_is_dropped_after_the_test(assert_dropped_after, postgres_server, postgres_url):
    dbname = postgres_url.rsplit("/", 1)[1]
    assert_dropped_after.append(dbname)
    conn = postgres_server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (dbname,))
        assert cur.fetchone() == (1,)
    conn.close()


def test_optuna_rdb_storage(postgres_url):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2, n_trials=5, n_jobs=1)

    # a second client, as another machine would open it
    other_storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=2)
    loaded = optuna.load_study(study_name="s", storage=other_storage)
    complete = loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 5
    assert [t.params for t in complete] == [t.params for t in study.trials]
    assert loaded.best_value == min(t.value for t in complete)
    assert loaded.best_value == study.best_value
    for s in (storage, other_storage):
        s.engine.dispose()


def test_mlflow_tracking_store(postgres_url):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=postgres_url)
    experiment_id = client.create_experiment("pg-exp")
    run = client.create_run(experiment_id, run_name="r")
    for step, value in enumerate([0.5, 0.25, 0.125]):
        client.log_metric(run.info.run_id, "loss", value, step=step)
    client.log_param(run.info.run_id, "method", "lora")
    client.set_terminated(run.info.run_id)

    reader = mlflow.tracking.MlflowClient(tracking_uri=postgres_url)
    assert reader.get_experiment_by_name("pg-exp").experiment_id == experiment_id
    got = reader.get_run(run.info.run_id)
    assert got.data.metrics["loss"] == 0.125  # the latest step
    assert got.data.params["method"] == "lora"
    assert got.info.status == "FINISHED"
    history = reader.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 0.5), (1, 0.25), (2, 0.125)]
    runs = reader.search_runs([experiment_id], filter_string="params.method = 'lora'")
    assert [r.info.run_id for r in runs] == [run.info.run_id]
