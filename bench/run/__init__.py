"""The run wing: one cell of the grid (fit, predict or sample, score, under a deadline), the
executors that run cells (in process or on Ray), the :class:`~bench.run.records.Record` each cell
leaves and the files beside it, MLflow tracking, resources (time, memory, device, code version),
gene-map plots and the AnnData export.

It may import the data and scoring wings, :mod:`bench.errors`, :mod:`bench.files` and
``methods``; never the leaderboard (:mod:`bench.board`) or the entry points above it.
"""
