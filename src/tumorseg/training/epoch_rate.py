"""The training job's own rate, one log line per epoch, and a parser for those lines.

Each epoch the training log gets a line (:data:`RATE_LINE`) with the training samples
(slices, or 3D patches) per second from the epoch's start to its validation, the CPU cores
the process used meanwhile (input pipeline included: fewer than the job's threads means the
job did not get its cores, or could not use them), the validation rate, and the epoch's
wall time with its checkpoint. ``benchmarks/bench_training.py --log`` reads them back to
compare a workflow run with the benchmark.
"""

from __future__ import annotations

import logging
import re
import time

log = logging.getLogger("tumorseg.train")

#: the per-epoch rate line of the training log
RATE_LINE = re.compile(
    r"epoch (?P<epoch>\d+) rate: training (?P<train_rate>[\d.]+) (?P<unit>\w+)/s "
    r"\((?P<train_n>\d+) in (?P<train_s>[\d.]+) s, (?P<cores>[\d.]+) CPU cores\); "
    r"validation (?P<val_rate>[\d.]+) \w+/s \((?P<val_n>\d+) in (?P<val_s>[\d.]+) s\); "
    r"epoch (?P<epoch_s>[\d.]+) s with the checkpoint"
)


def rate_callback(keras, n_train: int, n_val: int, unit: str):
    """A Keras callback that logs one :data:`RATE_LINE` per epoch; it must come after the
    callback that writes the checkpoint, so the epoch's time includes it."""

    class EpochRate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = (time.perf_counter(), time.process_time())
            self._train = self._val = None

        def on_test_begin(self, logs=None):
            wall, cpu = time.perf_counter(), time.process_time()
            self._train = (wall - self._start[0], cpu - self._start[1])
            self._val_start = wall

        def on_test_end(self, logs=None):
            self._val = time.perf_counter() - self._val_start

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self._start[0]
            train_s, cpu = self._train or (wall, time.process_time() - self._start[1])
            val_s = self._val or 0.0
            log.info(
                "epoch %d rate: training %.2f %s/s (%d in %.3f s, %.2f CPU cores); "
                "validation %.2f %s/s (%d in %.3f s); epoch %.3f s with the checkpoint",
                epoch + 1,
                n_train / train_s,
                unit,
                n_train,
                train_s,
                cpu / train_s,
                n_val / val_s if val_s else 0.0,
                unit,
                n_val if val_s else 0,
                val_s,
                wall,
            )

    return EpochRate()


def parse_epoch_rates(text: str) -> list[dict]:
    """The rate lines of a training log as dicts of numbers (``unit``: slices or
    patches), one per epoch in epoch order; of an epoch logged twice (a job that was
    killed and resumed) the last line wins."""
    rates = {}
    for match in RATE_LINE.finditer(text):
        row = {k: v if k == "unit" else float(v) for k, v in match.groupdict().items()}
        row["epoch"] = int(row["epoch"])
        rates[row["epoch"]] = row
    return [rates[e] for e in sorted(rates)]
