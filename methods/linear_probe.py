"""Linear probe (HEST-Benchmark, Jaume et al., "HEST-1k: a dataset for spatial transcriptomics and
histology image analysis", NeurIPS 2024): a histology-only ridge regression on image embeddings.

Kept from HEST-Benchmark's probe:

- one image embedding per position, standardised, reduced by PCA to 256 dimensions (fewer when
  there are fewer features), then ridge regression of every gene at once (multi-output
  ``sklearn.linear_model.Ridge``) on the training positions' HR targets.

Changed / simplified (stated):

- the ridge penalty is chosen by cross-validation on the training split rather than fixed (the
  published fixed penalty is far from the optimum): ``GridSearchCV`` over ``alphas`` (log grid
  1e-2 .. 1e5, 15 values) scored by mean squared error, with ``GroupKFold`` grouped by training
  section (at most 5 folds) so that no section has positions on both sides of a fold; the
  scaler and the PCA sit inside the CV pipeline, so each fold fits them on its own training
  positions. With a single training section there is nothing to group by: contiguous
  ``KFold`` over its positions is used instead;
- embeddings are :mod:`methods.features` (handcrafted colour / stain / texture statistics, or a
  local TorchScript encoder) rather than a foundation model's;
- training rows are the in-tissue HR positions; every HR position is predicted, and predictions
  are clipped at 0 (the log1p scale's floor).

No LR input is used: the probe measures what histology alone says. Deterministic (exact SVD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from methods.contract import Method, Preset, Sample
from methods.features import HANDCRAFTED, position_features

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 5, 15))
MAX_COMPONENTS = 256
MAX_FOLDS = 5


class LinearProbe(Method):
    """Standardise -> PCA (<= 256) -> multi-output ridge, penalty by section-grouped CV."""

    def __init__(
        self,
        *,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        n_components: int = MAX_COMPONENTS,
        encoder: str = HANDCRAFTED,
        preset: Preset = "default",
        seed: int = 0,
    ) -> None:
        super().__init__(preset=preset, seed=seed)
        if not alphas or any(a <= 0 for a in alphas):
            raise ValueError(f"alphas must be a non-empty list of positive numbers, not {alphas}")
        if n_components < 1:
            raise ValueError(f"n_components must be a positive integer, not {n_components!r}")
        self.alphas = tuple(float(a) for a in alphas)
        self.n_components = int(n_components)
        self.encoder = encoder
        self.model: Any = None
        self.alpha_: float | None = None  # the penalty the CV chose
        self.cv_scores_: dict[float, float] = {}  # alpha -> mean CV MSE

    def params(self) -> dict[str, Any]:
        return {
            "alphas": list(self.alphas),
            "n_components": self.n_components,
            "encoder": self.encoder,
        }

    def label_params(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "encoder": self.encoder}

    def rows(self, sample: Sample) -> np.ndarray:
        """Features ``(H W, F)`` float32 of every HR position, row-major."""
        features = position_features(sample, self.encoder)
        return features.reshape(-1, features.shape[-1])

    def fit(self, train: Sequence[Sample]) -> None:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        xs, ys, groups = [], [], []
        for index, sample in enumerate(train):
            if sample.hr is None:
                raise ValueError(f"training sample {sample.region} has no hr target")
            tissue = sample.hr_mask.ravel()
            xs.append(self.rows(sample)[tissue])
            ys.append(sample.hr.reshape(sample.hr.shape[0], -1)[:, tissue].T)
            groups.append(np.full(int(tissue.sum()), index))
        x = np.concatenate(xs).astype(np.float64)
        y = np.concatenate(ys).astype(np.float64)
        group = np.concatenate(groups)
        if len(x) < 2:
            raise ValueError(
                f"linear probe needs at least 2 in-tissue training positions, not {len(x)}"
            )
        n_groups = len(train)
        if n_groups >= 2:
            cv: Any = GroupKFold(n_splits=min(MAX_FOLDS, n_groups))
        else:  # one region: KFold, which takes no groups (sklearn warns when given them)
            cv, group = KFold(n_splits=min(MAX_FOLDS, len(x))), None
        # PCA dims: at most the features, and at most the smallest fold's training rows
        smallest_train = min(len(tr) for tr, _ in cv.split(x, y, group))
        components = min(self.n_components, x.shape[1], smallest_train)
        pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=components, svd_solver="full")),
                ("ridge", Ridge()),
            ]
        )
        search = GridSearchCV(
            pipeline,
            {"ridge__alpha": list(self.alphas)},
            cv=cv,
            scoring="neg_mean_squared_error",
        )
        search.fit(x, y, groups=group)
        self.model = search.best_estimator_
        self.alpha_ = float(search.best_params_["ridge__alpha"])
        self.cv_scores_ = {
            float(a): float(-s)
            for a, s in zip(
                search.cv_results_["param_ridge__alpha"],
                search.cv_results_["mean_test_score"],
                strict=True,
            )
        }

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        if self.model is None:
            raise ValueError("linear probe: call fit before predict")
        out = []
        for sample in samples:
            h, w = sample.hr_shape
            pred = self.model.predict(self.rows(sample).astype(np.float64))  # (H W, G)
            out.append(np.clip(pred, 0.0, None).T.reshape(-1, h, w))
        return np.stack(out).astype(np.float32)
