"""The scoring wing: arrays in, tables out. Per-map metrics (PCC, SSIM, RMSE), the SSIM engine,
diversity scores of stochastic draws, and the diffusion paper's released scoring; the tensor
helpers they share are public in :mod:`bench.scoring.tensors`.

Pure functions of arrays: it imports nothing of ``bench`` (not even the data wing) and nothing of
``methods``, so any notebook can score its own arrays with it.
"""
