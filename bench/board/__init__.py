"""The board wing: records in, page out. Leaderboard rows (seed means, bootstrap intervals,
significance), ranking, statistics, the Markdown page and its figures, and ``verify``
(records against their side files' checksums, the MLflow store and the page).

It reads records through :mod:`bench.run.records` and side files through
:mod:`bench.run.outputs`, and may import the run wing (and the wings below it),
:mod:`bench.errors` and :mod:`bench.files`; only :mod:`bench.grid` and :mod:`bench.cli` import it.
"""
