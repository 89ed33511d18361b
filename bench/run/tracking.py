"""MLflow tracking: one parent run per invocation, one child run per (dataset, method, seed).

Default store: an SQLite file in the results directory (``sqlite:///<results>/mlflow.db``) with
artifacts in ``<results>/mlartifacts``; ``--tracking-uri`` sends the same runs to a server. Child
runs are named ``method[param=value,...]`` and carry params, the scalar metrics, tags (status,
split fingerprint, code version, dataset, method, seed) and artifacts (per-gene table, gene-map
figure, and the traceback of a failed cell). mlflow is imported only here, and only when used.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from bench.errors import BenchError, first_line, redact
from bench.files import check_writable
from bench.run.records import Record

EXPERIMENT = "stsr-bench"
EXPERIMENT_KIND = "mlflow.experimentKind"  # the tag the MLflow UI reads to choose its view
# MLflow stores this harness accepts (a typo'd scheme fails at once instead of half-way)
SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")


def check_uri(uri: str) -> Path | None:
    """Check a tracking URI before anything is written: a known scheme, and for an SQLite store a
    path that is (or can be created as) a writable file in a writable folder. Returns that path
    (None for other stores); else a :class:`BenchError` (credentials redacted).
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in SCHEMES:
        raise BenchError(
            f"--tracking-uri {redact(uri)!r}: unknown scheme {scheme or '(none)'!r}; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (e.g. sqlite:///results/mlflow.db)"
        )
    if scheme != "sqlite":
        return None
    if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
        raise BenchError(
            f"--tracking-uri {redact(uri)!r} names no SQLite file; use sqlite:///PATH/mlflow.db"
        )
    path = check_writable(Path(uri[len("sqlite:///") :]), "SQLite store", kind="file")
    check_writable(path.parent, "SQLite store folder")  # the journal is written beside it
    return path


def default_uri(results_dir: Path) -> str:
    """The embedded store of a results directory."""
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def run_name(method: str, params: dict[str, Any]) -> str:
    """``method[a=1,b=x]`` with params sorted by name (benchopt's convention)."""
    inner = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{method}[{inner}]"


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: str(value)[:6000]}


class Tracker:
    """A thin wrapper over ``mlflow.MlflowClient`` bound to one experiment and one parent run."""

    def __init__(self, uri: str, results_dir: Path) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        import mlflow
        from mlflow.exceptions import MlflowException

        self.uri = uri
        store = check_uri(uri)
        if store is not None:
            try:
                _create_sqlite_store(store)
            except Exception as err:  # noqa: BLE001 - a store that cannot be made is bad input
                raise BenchError(
                    f"SQLite store {store} cannot be created ({first_line(err)[:200]}); "
                    "pass another --tracking-uri or --results-dir"
                ) from None
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        local = uri.startswith("sqlite:")
        artifacts = (results_dir / "mlartifacts").resolve().as_uri() if local else None
        try:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                try:
                    self.experiment_id = self.client.create_experiment(EXPERIMENT, artifacts)
                except MlflowException:  # created meanwhile by a concurrent run
                    self.experiment_id = self.client.get_experiment_by_name(
                        EXPERIMENT
                    ).experiment_id
            else:
                self.experiment_id = exp.experiment_id
            # runs of a model benchmark, not GenAI traces: the UI opens its runs table
            self.client.set_experiment_tag(
                self.experiment_id, EXPERIMENT_KIND, "custom_model_development"
            )
        except Exception as err:  # noqa: BLE001 - any failure here means the store is unusable
            raise BenchError(
                f"tracking URI {redact(uri)!r} cannot be used ({redact(first_line(err))[:200]}); "
                "start the server or pass another --tracking-uri"
            ) from None
        self.parent_id: str | None = None

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """Open the invocation's parent run; returns its id."""
        tags = {**tags, **_owner()}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def finish(self, failed: bool, status: str | None = None) -> None:
        """Close the invocation run: FINISHED, FAILED (a failed cell) or ``status`` (KILLED
        for an interrupted grid)."""
        if self.parent_id:
            final = status or ("FAILED" if failed else "FINISHED")
            self.client.set_terminated(self.parent_id, final)

    def log_cell(
        self, record: Record, artifacts: list[Path], card: dict[str, str] | None = None
    ) -> str:
        """One child run for a result record; returns its id. ``card`` (the dataset card's
        facts, :func:`card_facts`) is added as ``card.*`` tags and parameters."""
        from mlflow.entities import Metric

        params = {"seed": record.seed, **record.params}
        tags = {
            "status": record.status,
            "dataset": record.dataset,
            "method": record.method,
            "seed": str(record.seed),
            "split_fingerprint": record.split.fingerprint,
            "code_version": record.code_version,
            "device": record.device,
        }
        if record.control:
            tags["control"] = record.control
        if record.error:
            tags["error"] = record.error[:5000]
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        tags.update({**_owner(), "record_id": record_id(record)})
        tags.update({f"card.{k}": v for k, v in (card or {}).items()})
        name = record.name or run_name(record.method, params)
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        rid = run.info.run_id
        split = {k: v for k, v in record.split.to_json().items() if k != "genes"}
        split["n_genes"] = len(record.split.genes)
        self._log(
            rid,
            params={**params, "dataset": record.dataset, "split": split, "card": card or {}},
        )
        ts = record.finished_ms
        values = [Metric(k, v, ts, 0) for k, v in sorted(cell_metrics(record).items())]
        curve = record.curve  # the learning curve as step metrics, so the UI draws it
        for key in ("loss", "pcc", "rmse", "crps"):
            series = zip(curve.step, getattr(curve, key), strict=False)
            values += [
                Metric(f"val_{key}" if key != "loss" else "train_loss", float(v), ts, s)
                for s, v in series
                if v is not None
            ]
        if values:
            self.client.log_batch(rid, metrics=values)
        self.client.log_inputs(rid, datasets=[split_input(record)])
        for path in artifacts:
            self.client.log_artifact(rid, str(path))
        self.client.set_terminated(rid, "FINISHED" if record.ok else "FAILED")
        return rid

    def drop_superseded(self, record: Record) -> int:
        """Delete the cell's other child runs (their records were overwritten by ``record``, or
        a concurrent invocation without a lock logged the same cell), leaving the one run of
        ``record``; runs still RUNNING in a live process are left alone. Call it holding the
        cell's lock. Returns how many were deleted."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.dataset = '{record.dataset}' and tags.method = '{record.method}' "
                f"and tags.seed = '{record.seed}'"
            ),
            max_results=1000,
        )
        return self._drop(runs, {_cell_key(record): record_id(record)})

    def _drop(self, runs: list, current: dict[tuple[str, str, str], str]) -> int:
        """Delete child runs of the cells in ``current`` whose record id is not the cell's
        current one, and all but one run of the current one."""
        kept: set[str] = set()
        dropped = 0
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            tags = run.data.tags
            key = (tags.get("dataset", ""), tags.get("method", ""), tags.get("seed", ""))
            if "record_id" not in tags or key not in current:
                continue
            if run.info.status == "RUNNING" and not _dead(tags):
                continue
            rid = tags["record_id"]
            if rid == current[key] and rid not in kept and run.info.status != "RUNNING":
                kept.add(rid)
                continue
            self.client.delete_run(run.info.run_id)
            dropped += 1
        return dropped

    def log_files(self, paths: list[Path], folder: str) -> None:
        """Attach files (e.g. the leaderboard's figures) to the invocation's parent run."""
        for path in paths if self.parent_id else []:
            self.client.log_artifact(self.parent_id, str(path), folder)

    def reconcile(
        self, records: list[tuple[Record, list[Path]]], held: list[Record] | None = None
    ) -> dict[str, int]:
        """Repair the store after an interrupted invocation, before this one logs anything.

        Runs left RUNNING by a process of this host that no longer exists are closed: a parent
        run as KILLED; a half-logged child run is deleted (its record is the truth and is logged
        again). Then every given (record, side files) without a finished child run is logged, so
        each record has exactly one child run. Runs of live processes (a concurrent invocation)
        are left alone. Child runs of the cells of ``held`` (finished records whose cell lock this
        invocation holds) other than the one of the record on disk are orphans (a record
        overwritten, a cell run twice at once) and are deleted. Returns counts of killed,
        deleted and logged runs.
        """
        from mlflow.entities import ViewType

        runs = self.client.search_runs(
            [self.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000
        )
        done = {"killed": 0, "deleted": 0, "logged": 0}
        logged: set[str] = set()
        for run in runs:
            tags = run.data.tags
            if run.info.status == "RUNNING" and _dead(tags):
                if "record_id" in tags:
                    self.client.delete_run(run.info.run_id)
                    done["deleted"] += 1
                    continue
                self.client.set_terminated(run.info.run_id, "KILLED")
                done["killed"] += 1
            elif "record_id" in tags and run.info.status != "RUNNING":
                logged.add(tags["record_id"])
        current = {_cell_key(r): record_id(r) for r in held or []}
        if current:
            alive = self.client.search_runs(
                [self.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000
            )
            done["deleted"] += self._drop(alive, current)
            survivors = self.client.search_runs(
                [self.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000
            )
            logged = {
                r.data.tags["record_id"]
                for r in survivors
                if "record_id" in r.data.tags and r.info.status != "RUNNING"
            }
        for record, files in records:
            if record_id(record) not in logged:
                self.log_cell(record, files)
                done["logged"] += 1
        return done

    def _log(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = _flat("", params)
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in sorted(flat.items())])


def card_facts(raw: dict[str, Any]) -> dict[str, str]:
    """The facts of a dataset card worth a tag: name, title, platform, reader, licence, citation,
    source repository and commit, lattice kind and pitch."""
    source, lattice = raw.get("source") or {}, raw.get("lattice") or {}
    facts = {
        "name": raw.get("name"),
        "title": raw.get("title"),
        "platform": raw.get("platform"),
        "reader": raw.get("reader"),
        "licence": raw.get("licence"),
        "citation": raw.get("citation"),
        "source": source.get("repository"),
        "commit": source.get("commit"),
        "lattice": lattice.get("kind"),
        "pitch_um": lattice.get("pitch_um"),
    }
    return {k: str(v)[:5000] for k, v in facts.items() if v is not None}


def cell_metrics(record: Record) -> dict[str, float]:
    """The scalar metrics a record's child run carries (at step 0): the record's metrics (those
    not None), ``time_<timing>``, ``peak_memory_mb`` and, for trained methods, ``converged``
    (the learning curve's step metrics aside) with its ``stopped_at`` and ``best_step``, and, for
    samplers, ``draws_used`` (their K)."""
    metrics = dict(record.metrics)
    metrics.update({f"time_{k}": v for k, v in record.timings.items()})
    metrics["peak_memory_mb"] = record.peak_memory_mb
    if record.converged is not None:
        metrics["converged"] = record.converged
    if record.draws_used is not None:
        metrics["draws_used"] = record.draws_used
    for key in ("stopped_at", "best_step"):  # early stopping (bench/run/learning.py)
        if getattr(record.curve, key, None) is not None:
            metrics[key] = getattr(record.curve, key)
    return {k: float(v) for k, v in metrics.items() if v is not None}


CURVE_METRICS = ("train_loss", "val_pcc", "val_rmse", "val_crps")  # step metrics of log_cell


def read_child_runs(uri: str) -> list[Any]:
    """Every child run (one with a ``record_id`` tag) of the store at ``uri`` that is not deleted,
    read without writing anything: no store is created. A missing SQLite file, an unreachable
    server or a store without this harness's experiment is a :class:`BenchError`."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in SCHEMES:
        check_uri(uri)  # raises the one-line error naming the schemes
    if scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
        if path is None or not path.is_file():
            raise BenchError(
                f"no MLflow store at {redact(uri)}; pass the --tracking-uri the results were "
                "run with"
            )
    import mlflow
    from mlflow.entities import ViewType

    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs: list[Any] = []
        token = None
        while exp is not None:
            page = client.search_runs(
                [exp.experiment_id],
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=50000,
                page_token=token,
            )
            runs += page
            token = page.token
            if not token:
                break
    except Exception as err:  # noqa: BLE001 - any failure here means the store is unusable
        raise BenchError(
            f"tracking URI {redact(uri)!r} cannot be read ({redact(first_line(err))[:200]}); "
            "start the server or pass another --tracking-uri"
        ) from None
    if exp is None:
        raise BenchError(
            f"the MLflow store {redact(uri)} holds no {EXPERIMENT!r} experiment; pass the "
            "--tracking-uri the results were run with"
        )
    return [r for r in runs if "record_id" in r.data.tags]


def split_input(record: Record) -> Any:
    """The cell's split as an MLflow dataset input (the UI's Dataset column): named by the
    split's label, its digest the split fingerprint, its profile the sizes, context
    "evaluation" (the cell is scored on the split's test regions)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    spec = record.split.to_json()
    profile = {
        "k": spec.get("k"),
        "train_regions": len(spec.get("train", [])),
        "test_regions": len(spec.get("test", [])),
        "genes": len(spec.get("genes", [])),
    }
    dataset = Dataset(
        name=record.dataset,
        digest=record.split.fingerprint,
        source_type="local",
        source=f"datasets/{spec.get('dataset', record.dataset)}/split-k{spec.get('k')}.json",
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "evaluation")])


def record_id(record: Record) -> str:
    """A cell's identity in the store: dataset/method/seed and the record's finish time (ms)."""
    return f"{record.dataset}/{record.method}/{record.seed}/{record.finished_ms}"


def _cell_key(record: Record) -> tuple[str, str, str]:
    return (record.dataset, record.method, str(record.seed))


def _owner() -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def _dead(tags: dict[str, str]) -> bool:
    """True when the run's process ran on this host and is gone (runs of other hosts: False)."""
    if tags.get("host") != socket.gethostname() or not tags.get("pid", "").isdigit():
        return False
    try:
        os.kill(int(tags["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _create_sqlite_store(path: Path) -> None:
    """Create and migrate a new SQLite store beside ``path``, then link it into place.

    MLflow creates its tables in several migration steps; a process killed half-way would leave
    a store no later run can open. Building it under a temporary name and publishing it with
    ``os.link`` (which never replaces an existing file, so a concurrent creator wins cleanly)
    means ``path`` is either absent or complete.
    """
    import mlflow

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed creator
        pid = stale.name.split(".")[-2]
        if pid.isdigit() and _dead({"host": socket.gethostname(), "pid": pid}):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # create, migrate
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
