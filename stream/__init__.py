"""Encore: a real-time recommendation pipeline (Kafka, Faust, River)."""

import os

# The engine's matrix-vector products are small: BLAS threads only add jitter on a
# busy machine (measured: milliseconds of p99). A user's own setting wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
