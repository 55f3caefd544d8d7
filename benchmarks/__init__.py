"""Benchmarks that print figures: ``python -m benchmarks.NAME``."""

import dtnopt  # noqa: F401  first, so BLAS gets one thread before numpy loads (see dtnopt)
