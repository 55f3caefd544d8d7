"""Shared test helpers: a deterministic hypothesis profile, strategies for random scenarios and
random (often infeasible) actions, and a small-scenario observation factory."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dtnopt import Action, Environments, Scenario

# Deterministic (derandomized, no example database) and without per-example deadlines: the suite
# must give the same verdict on every run and on a loaded machine.
settings.register_profile(
    "dtnopt", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("dtnopt")

SMALL = Scenario(devices=6, sbs=2, slots=12)


def observe(scenario: Scenario = SMALL, batch: int = 2, seed: int = 3, slots: int = 0):
    """A network reset under ``seed`` and advanced ``slots`` slots with the equal allocation;
    returns ``(network, observation)``."""
    from dtnopt import fixed_allocation

    environments = Environments(scenario, batch)
    observation = environments.reset(seed)
    for _ in range(slots):
        environments.step(fixed_allocation(scenario, observation.association))
        observation = environments.observation
    return environments, observation


@st.composite
def scenarios(draw, **fixed) -> Scenario:
    """Small random scenarios with parameters drawn inside (a realistic part of) the validated
    ranges: few devices and stations, every physical constant scaled by up to 10x either way."""

    def scaled(default, decades=1.0):
        return default * 10.0 ** draw(st.floats(-decades, decades))

    values = dict(
        devices=draw(st.integers(1, 7)),
        sbs=draw(st.integers(0, 3)),
        tau=scaled(0.1),
        area=scaled(600.0, 0.5),
        sbs_ring=draw(st.floats(0.0, 0.5)),
        sbs_coverage=draw(st.floats(0.0, 400.0)),
        speed_max=draw(st.floats(0.0, 20.0)),
        path_loss_exponent=draw(st.floats(2.0, 5.0)),
        noise_power=scaled(1e-14, 2.0),
        mbs_bandwidth=scaled(10e6),
        sbs_bandwidth=scaled(5e6),
        max_power=scaled(0.1),
        cycles_per_bit=scaled(100.0),
        switched_capacitance=scaled(1e-27),
        edge_power=draw(st.floats(0.0, 10.0)),
        local_cpu=scaled(0.5e9),
        sbs_cpu=scaled(10e9),
        mbs_cpu=scaled(50e9),
        arrival_law=draw(st.sampled_from(["uniform", "poisson", "constant"])),
        arrival_mean=scaled(1e6),
        packet_bits=scaled(1e5),
        V=draw(st.floats(0.0, 1000.0)),
        perturbation=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
    )
    values.update(fixed)
    return Scenario(**values)


def wild_values(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    """Values around ``[0, 2 scale]`` with negatives, NaN and +-inf sprinkled in."""
    values = rng.normal(0.5, 1.0, size=shape) * 2.0 * scale
    kind = rng.uniform(size=shape)
    values[kind < 0.08] = np.nan
    values[(kind >= 0.08) & (kind < 0.12)] = np.inf
    values[(kind >= 0.12) & (kind < 0.16)] = -np.inf
    return values


def wild_action(rng: np.random.Generator, scenario: Scenario, batch: int) -> Action:
    """An arbitrary, usually infeasible action: out-of-range, negative and non-finite entries."""
    per_device = (batch, scenario.devices)
    return Action(
        bandwidth_share=wild_values(rng, per_device, 1.0),
        power=wild_values(rng, per_device, scenario.max_power),
        local_cpu=wild_values(rng, per_device, scenario.local_cpu),
        edge_cpu=wild_values(rng, per_device, scenario.sbs_cpu),
        edge_departure=wild_values(rng, (batch, scenario.stations),
                                   scenario.sbs_cpu * scenario.tau / scenario.cycles_per_bit),
    )
