"""Diffusion machinery shared by ``diffst``, ``sr3`` and ``unet``.

Owns the noise schedule and samplers (``schedule.py``), the improved-diffusion U-Net pieces
(``unet.py``), the hyperparameters and presets (``config.py``) and the trainer that fits and
samples every U-Net method (``trainer.py``). Imports ``methods.contract`` and
``methods.interpolation`` only; nothing of ``methods.diffst`` (the paper's own parts plug in
through the trainer's hooks) and nothing of ``bench``.
"""
