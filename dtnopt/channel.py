"""Rayleigh-fading OFDMA channel (eqs. 3-4).

``R_i = w_i log2(1 + p_i h_i r_i^-alpha / sigma^2)``, with ``h ~ Exp(1)`` i.i.d. per slot and
link, path loss ``r^-alpha`` with the distance clamped to at least 1 m, and no interference term
(OFDMA, the paper's own argument in Sec. II-B).
"""

from __future__ import annotations

import numpy as np

from .config import Scenario

MIN_DISTANCE = 1.0
"""Distances below this (m) are clamped, so the path loss stays finite."""


def path_gain(scenario: Scenario, distances: np.ndarray, squared: bool = False) -> np.ndarray:
    """Large-scale gain ``r^-alpha`` (eq. 3), distance clamped to ``MIN_DISTANCE``. With
    ``squared``, ``distances`` holds r^2 and the gain is ``(r^2)^(-alpha/2)`` (no square root)."""
    if squared:
        gain = np.maximum(distances, MIN_DISTANCE**2)
        return np.power(gain, -0.5 * scenario.path_loss_exponent, out=gain)
    gain = np.maximum(distances, MIN_DISTANCE)
    return np.power(gain, -scenario.path_loss_exponent, out=gain)


def draw_fading(rng: np.random.Generator, shape) -> np.ndarray:
    """Rayleigh block fading: power gain ``h ~ Exp(1)``."""
    return rng.standard_exponential(size=shape)  # the numbers of exponential(1.0), faster


def spectral_efficiency(power, gain, noise_power: float):
    """``log2(1 + p g / sigma^2)``, bit/s/Hz, for channel power gain ``g = h r^-alpha``."""
    snr = np.multiply(power, gain, dtype=float)
    if snr.ndim == 0:
        return np.log2(1.0 + snr / noise_power)
    snr /= noise_power  # in place: per-link arrays of large batches are costly to allocate
    snr += 1.0
    return np.log2(snr, out=snr)


def rate(bandwidth, power, gain, noise_power: float):
    """Uplink rate ``R = w log2(1 + p g / sigma^2)``, bit/s (eqs. 3-4)."""
    return bandwidth * spectral_efficiency(power, gain, noise_power)


def power_for_bits(bits, bandwidth, gain, scenario: Scenario):
    """Smallest power that carries ``bits`` in one slot over ``bandwidth``: the inverse of
    ``rate * tau``. Infinite where the bandwidth is zero and bits are asked for."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exponent = np.where(bandwidth > 0, bits / (bandwidth * scenario.tau), np.where(bits > 0, np.inf, 0.0))
        return np.expm1(np.minimum(exponent, 1000.0) * np.log(2.0)) * scenario.noise_power / gain
