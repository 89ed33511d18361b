"""Methods that exist only for tests: a stochastic one and ones that misbehave."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from methods.contract import Method, Sample, StochasticMethod
from methods.interpolation import Interpolation


class NoisyBicubic(StochasticMethod):
    """Bicubic plus seeded Gaussian noise: a stand-in generative model."""

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        base = Interpolation(mode="bicubic").predict(samples)
        rng = np.random.default_rng(seed)
        return base[:, None] + 0.3 * rng.standard_normal((base.shape[0], k, *base.shape[1:]))


class Broken(Method):
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        raise RuntimeError("deliberately broken")


class Slow(Method):
    """Trains for ever (a loop of short steps), to be stopped by --timeout."""

    def fit(self, train: Sequence[Sample]) -> None:
        import time

        while True:
            time.sleep(0.01)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:  # pragma: no cover
        raise AssertionError("never reached")


class Greedy(Method):
    """Asks for far more memory than any machine has (numpy raises MemoryError)."""

    def fit(self, train: Sequence[Sample]) -> None:
        self.buffer = np.ones((10**7, 10**7))

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:  # pragma: no cover
        raise AssertionError("never reached")


class WrongShape(Method):
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.zeros((len(samples), 1, 3, 3), np.float32)


class NotFinite(Method):
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        h, w = samples[0].hr_shape
        return np.full((len(samples), len(samples[0].genes), h, w), np.nan, np.float32)


class Peeking(Method):
    """Tries to read the target at prediction time."""

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.stack([s.hr for s in samples])


class Recording(Method):
    """Records the images it is given at fit and predict; predicts each block's mean red value."""

    def fit(self, train: Sequence[Sample]) -> None:
        self.fit_images = [s.image.copy() for s in train]

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        self.predict_images = [s.image.copy() for s in samples]
        out = []
        for s in samples:
            (h, w), p = s.hr_shape, s.image.shape[1] // s.hr_shape[0]
            red = s.image[0].reshape(h, p, w, p).mean(axis=(1, 3), dtype=np.float32)
            out.append(np.broadcast_to(red, (len(s.genes), h, w)))
        return np.stack(out).astype(np.float32)


class RecordingStochastic(StochasticMethod):
    """Records the number of draws asked for; draw ``j`` is the constant ``j``."""

    def sample(self, samples: Sequence[Sample], k: int, seed: int) -> np.ndarray:
        self.k = k
        h, w = samples[0].hr_shape
        draws = np.arange(k, dtype=np.float32)[None, :, None, None, None]
        return np.broadcast_to(draws, (len(samples), k, len(samples[0].genes), h, w)).copy()


class Resumed(Method):
    """Bicubic whose fit "resumed" from a checkpoint that had cost 5 s of training."""

    def fit(self, train: Sequence[Sample]) -> None:
        self.resumed_fit_s = 5.0

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)


class Swallowing(Method):
    """Catches every exception, the deadline's alarm included, and trains on for ever (its pid
    written to ``$STSR_PID_FILE`` when set)."""

    def fit(self, train: Sequence[Sample]) -> None:
        import os
        import time

        if os.environ.get("STSR_PID_FILE"):
            with open(os.environ["STSR_PID_FILE"], "w") as fh:
                fh.write(str(os.getpid()))

        while True:
            try:
                time.sleep(0.01)
            except BaseException:  # noqa: BLE001, S110 - the point of this stub
                pass

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:  # pragma: no cover
        raise AssertionError("never reached")


class Late(Method):
    """Catches the deadline's alarm once, then returns a good (bicubic) prediction."""

    def fit(self, train: Sequence[Sample]) -> None:
        import time

        try:
            time.sleep(30)
        except BaseException:  # noqa: BLE001, S110 - the point of this stub
            pass

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)


class Counting(Method):
    """Bicubic that appends ``<seed> <pid>`` to ``$STSR_COUNT_FILE`` at every fit (how many
    times a cell was computed) and takes a second about it (so concurrent runs overlap)."""

    def fit(self, train: Sequence[Sample]) -> None:
        import os
        import time

        with open(os.environ["STSR_COUNT_FILE"], "a") as fh:
            fh.write(f"{self.seed} {os.getpid()}\n")
        time.sleep(1.0)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)


class Sleepy(Method):
    """Bicubic, but its fit first writes its pid to ``$STSR_PID_FILE`` and waits while the file
    ``$STSR_HOLD_FILE`` exists: a cell that is running when a test interrupts the grid, and
    finishes on the rerun once the test removes the file."""

    def fit(self, train: Sequence[Sample]) -> None:
        import os
        import time

        if os.environ.get("STSR_PID_FILE"):
            with open(os.environ["STSR_PID_FILE"], "w") as fh:
                fh.write(str(os.getpid()))
        while os.path.exists(os.environ.get("STSR_HOLD_FILE", "")):
            time.sleep(0.05)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)


class Unbounded(Method):
    """Allocates without bound: a list of 50 MB arrays, every page touched, grown until the
    process is killed (past 4 GiB it raises MemoryError, so a cap that fails cannot take the
    machine down). With a workdir, first writes its ``oom_score_adj`` beside it (``.oom``)."""

    def fit(self, train: Sequence[Sample]) -> None:
        import time
        from pathlib import Path

        if self.workdir is not None:
            score = Path("/proc/self/oom_score_adj").read_text().strip()
            Path(self.workdir).with_suffix(".oom").write_text(score)
        chunks = []
        while len(chunks) < 80:
            chunks.append(np.ones(50 * 2**20 // 8))
            time.sleep(0.01)
        raise MemoryError("allocated 4 GiB and was not stopped")

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:  # pragma: no cover
        raise AssertionError("never reached")


class Filling(Method):
    """Bicubic whose fit first fills the disk of its results folder (a ``ballast`` file beside
    its record, written until the disk is full): another program taking the space mid-grid."""

    def fit(self, train: Sequence[Sample]) -> None:
        from pathlib import Path

        block = b"\0" * 2**16
        try:
            with open(Path(self.workdir).parent / "ballast", "wb") as fh:
                while True:
                    fh.write(block)
                    fh.flush()
        except OSError:
            pass

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)


class Reporting(Method):
    """Bicubic after a few reported training steps (a progress line in the cell's process)."""

    def fit(self, train: Sequence[Sample]) -> None:
        for step in range(1, 4):
            self.report("fit", step, 3, loss=1.0 / step)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return Interpolation(mode="bicubic").predict(samples)
