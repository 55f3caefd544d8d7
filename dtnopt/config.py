"""Scenario configuration: every parameter of the DTN model with its default.

All values are SI (bits, seconds, Hz, W, J, m). Defaults follow Sec. V of the paper and
``docs/model.md``; each field's comment names the paper's symbol and equation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np

ARRIVAL_LAWS = ("uniform", "poisson", "constant")

MODEL_VERSION = 2
"""Version of the model: raised on every change to the plant, the P2 cost or the observation,
so that stored results and checkpoints of another model are never reused (the studies' run
cache keys every run by it). 2: eta in P2 and beta is the fixed price ``eta0``.
"""

MBIT = 1e6
"""Bits per Mbit: the unit of queues and served bits in the P2 drift terms (docs/model.md section 5)."""


@dataclass(frozen=True)
class Scenario:
    """One DTN scenario (Sec. II, V). Validated at construction: a bad value raises
    ``ValueError`` naming the field and its allowed range."""

    # --- network and time (Sec. II-A/B) ---
    devices: int = 20  # N, number of IIoT devices u_1..u_N
    sbs: int = 3  # M, number of small-cell base stations b_1..b_M (b_0 is the MBS)
    slots: int = 200  # T, slots per episode
    tau: float = 0.1  # slot length tau, s (eq. 8)
    area: float = 600.0  # side L of the square area, m
    sbs_ring: float = 0.3  # SBS ring radius as a fraction of L
    sbs_coverage: float = 120.0  # SBS coverage radius gamma_s, m
    speed_max: float = 1.0  # device speed ~ U[0, speed_max], m/s (bounded random walk)
    # --- channel (3)-(4) ---
    path_loss_exponent: float = 3.5  # alpha
    noise_power: float = 1e-14  # sigma^2, W (1e-11 mW)
    mbs_bandwidth: float = 10e6  # w_0, Hz
    sbs_bandwidth: float = 5e6  # w_j, Hz
    max_power: float = 0.1  # p_i,max, W (14b)
    # --- computing (8)-(11) ---
    cycles_per_bit: float = 100.0  # c, CPU cycles per bit
    switched_capacitance: float = 1e-27  # varsigma (eq. 9)
    edge_power: float = 1.0  # epsilon, W drawn by an edge CPU while it works (eq. 11)
    local_cpu: float = 0.5e9  # f^l_i max, cycles/s (14c)
    sbs_cpu: float = 10e9  # f^e_j of each SBS, cycles/s (14d)
    mbs_cpu: float = 50e9  # f^e_0 of the MBS, cycles/s (14d)
    # --- arrivals (5) ---
    arrival_law: str = "uniform"  # law of lambda_i(t): uniform | poisson | constant
    arrival_mean: float = 1e6  # lambda_bar, bits/slot
    packet_bits: float = 1e5  # packet size of the "poisson" law, bits
    # --- Lyapunov loop (13)-(20) ---
    V: float = 100.0  # drift-plus-penalty weight V, Mbit^2/J (eq. 17, 20)
    perturbation: bool = True  # beta_i = V eta + Psi_max (19); False gives beta = 0
    eta0: float = 0.0  # eta_hat, J/Mbit: the fixed energy price of P2 (20) and beta (19)
    queue_cap: float = 100e6  # a queue above this (bits) flags the episode unstable
    # --- digital twin deviation (Sec. II-A, off by default) ---
    twin_gain_error: float = 0.0  # relative std of the twin's channel-gain estimate
    twin_staleness: int = 0  # the twin sees device locations this many slots late
    seed: int = 0  # episode seed (positions, mobility, fading, arrivals)

    def __post_init__(self) -> None:
        for name, (lo, hi, kind) in _RANGES.items():
            value = getattr(self, name)
            if kind is int:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                    raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
                value = int(value)  # numpy integers from sweeps become plain ints
                object.__setattr__(self, name, value)
            elif kind is float:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                    raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
                if not math.isfinite(value):
                    raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")
                value = float(value)
                object.__setattr__(self, name, value)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
        if self.arrival_law not in ARRIVAL_LAWS:
            raise ValueError(
                f"arrival_law must be one of {', '.join(ARRIVAL_LAWS)}, got {self.arrival_law!r}"
            )
        if not isinstance(self.perturbation, bool):
            raise ValueError(f"perturbation must be True or False, got {self.perturbation!r}")

    # --- derived quantities ---
    @property
    def stations(self) -> int:
        """M + 1 base stations, index 0 is the MBS."""
        return self.sbs + 1

    # Cached (the hot path reads them every slot) and read-only (one array shared by all users);
    # cached_property stores into the instance __dict__, which a frozen dataclass allows.
    @cached_property
    def station_bandwidth(self):
        """w_j for j = 0..M, Hz (read-only)."""
        return _read_only([self.mbs_bandwidth] + [self.sbs_bandwidth] * self.sbs)

    @cached_property
    def station_cpu(self):
        """f^e_j for j = 0..M, cycles/s (read-only)."""
        return _read_only([self.mbs_cpu] + [self.sbs_cpu] * self.sbs)

    @property
    def local_capacity_bits(self) -> float:
        """Most bits a device computes in one slot, tau f^l_max / c (eq. 8)."""
        return self.tau * self.local_cpu / self.cycles_per_bit

    def replace(self, **changes) -> "Scenario":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _read_only(values) -> np.ndarray:
    array = np.array(values, dtype=float)
    array.flags.writeable = False
    return array


_RANGES = {
    "devices": (1, 100_000, int),
    "sbs": (0, 1_000, int),
    "slots": (1, 10_000_000, int),
    "tau": (1e-6, 10.0, float),
    "area": (1.0, 1e6, float),
    "sbs_ring": (0.0, 0.5, float),
    "sbs_coverage": (0.0, 1e6, float),
    "speed_max": (0.0, 1e3, float),
    "path_loss_exponent": (1.0, 8.0, float),
    "noise_power": (1e-30, 1.0, float),
    "mbs_bandwidth": (1.0, 1e12, float),
    "sbs_bandwidth": (1.0, 1e12, float),
    "max_power": (1e-9, 1e3, float),
    "cycles_per_bit": (1e-3, 1e9, float),
    "switched_capacitance": (1e-40, 1e-10, float),
    "edge_power": (0.0, 1e6, float),
    "local_cpu": (1.0, 1e13, float),
    "sbs_cpu": (1.0, 1e15, float),
    "mbs_cpu": (1.0, 1e15, float),
    "arrival_mean": (0.0, 1e12, float),
    "packet_bits": (1.0, 1e12, float),
    "V": (0.0, 1e9, float),
    "eta0": (0.0, 1e9, float),
    "queue_cap": (1.0, 1e18, float),
    "twin_gain_error": (0.0, 10.0, float),
    "twin_staleness": (0, 10_000, int),
    "seed": (0, 2**63 - 1, int),
}
