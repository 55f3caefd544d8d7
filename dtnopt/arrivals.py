"""Stochastic task arrivals lambda_i(t) (Sec. II-B-2): i.i.d. over slots and devices with
mean ``lambda_bar`` bits/slot."""

from __future__ import annotations

import numpy as np

from .config import Scenario


def draw_arrivals(rng: np.random.Generator, scenario: Scenario, shape) -> np.ndarray:
    """Bits arriving at each device this slot, by the scenario's ``arrival_law``:

    - ``uniform``: ``U[0, 2 lambda_bar]`` (the default of docs/model.md section 3);
    - ``poisson``: a Poisson number of packets of ``packet_bits`` each, mean ``lambda_bar``;
    - ``constant``: exactly ``lambda_bar``.
    """
    mean = scenario.arrival_mean
    if scenario.arrival_law == "uniform":
        return rng.uniform(0.0, 2.0 * mean, size=shape)
    if scenario.arrival_law == "poisson":
        return scenario.packet_bits * rng.poisson(mean / scenario.packet_bits, size=shape)
    return np.full(shape, mean, dtype=float)
