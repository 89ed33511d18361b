"""The data wing: dataset cards, fetching and sha256 verification, sections (what a reader
returns), regions, committed split files and the samples they define, histology crops and the
cache of built splits; :mod:`bench.data.readers` holds one module per input format.

It may import :mod:`bench.errors`, :mod:`bench.files` and :mod:`methods.contract` (the sample
type), nothing else of ``bench``: scoring, the runner and the leaderboard sit above it.
"""
