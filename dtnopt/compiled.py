"""Compiled (numba) loops of the learned solvers' decision path: at batch 1 numpy's per-call cost,
not arithmetic, is the price of a decision, so these loops do in one call what would take tens of
numpy calls. Each is the body of a function documented elsewhere, which owns its meaning:

- ``fill_features``: ``dtnopt.features.observation_features`` (its only implementation);
- ``gated_unit_action``: ``dtnopt.features.gated_unit_action``, ``action_from_unit`` (which ends
  with the model's projection) of ``gate_unit`` for an ablation-free unit vector, held bitwise
  equal to that composition by ``tests/test_features.py``.

They take and fill plain arrays (no model objects), and are compiled on first use and cached on
disk (``cache=True``). The arithmetic is the numpy code's, operation for operation and in the
same precision (the features computed in float64 and stored as float32), so the results are the
same bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def fill_features(local_queue, arrivals, spectral_efficiency, beta, position, association, edge_queue, eta,
                  psi_max, slot_fraction, unit, area, mbit, out):
    """Write the observation vector of ``observation_features`` into ``out`` (B, size) float32."""
    batch, devices = local_queue.shape
    stations = edge_queue.shape[1]
    width = 6 + stations
    for b in range(batch):
        for i in range(devices):
            base = i * width
            queue, station = local_queue[b, i], association[b, i]
            excess = queue - beta[b, i]
            out[b, base] = math.log1p(queue / unit)
            out[b, base + 1] = math.log1p(arrivals[b, i] / unit)
            out[b, base + 2] = spectral_efficiency[b, i, station] / 32.0
            out[b, base + 3] = math.copysign(math.log1p(abs(excess) / unit), excess)
            out[b, base + 4] = position[b, i, 0] / area
            out[b, base + 5] = position[b, i, 1] / area
            for k in range(stations):
                out[b, base + 6 + k] = 1.0 if k == station else 0.0
        base = devices * width
        for k in range(stations):
            out[b, base + k] = math.log1p(edge_queue[b, k] / unit)
        out[b, base + stations] = eta[b] * mbit * 10.0
        out[b, base + stations + 1] = math.log1p(psi_max[b] / unit)
        out[b, base + stations + 2] = slot_fraction
    return out


@numba.njit(cache=True)
def _clip(value, upper):
    """``numpy.minimum(numpy.fmax(value, 0), upper)``: NaN counts as 0."""
    if not value >= 0.0:
        return 0.0
    return upper if value > upper else value


@numba.njit(cache=True)
def _clip_unit_keep_nan(value):
    """``numpy.clip(value, 0, 1)``: NaN stays NaN."""
    if value < 0.0:
        return 0.0
    return 1.0 if value > 1.0 else value


@numba.njit(cache=True)
def gated_unit_action(unit, association, stations, gate, one_sender, max_power, local_cpu, station_cpu,
                      slot_per_cycle, share, power, cpu, edge_cpu, departure):
    """Fill the five blocks of the feasible action of a (B, 4 N + M+1) unit vector (``unit``,
    float32 or float64, read in float64, unchanged) after the idle gate (``gate``) and, with
    ``one_sender``, the one-sender gate. Entries per device: bandwidth, power, local CPU, edge CPU
    (``DEVICE_ACTIONS``); ``slot_per_cycle`` is tau / c, so a station's most departing bits are
    f^e_j tau / c (14e)."""
    batch, devices = association.shape
    width = 4 * devices
    capacity = station_cpu * slot_per_cycle
    band, send, compute, edge = np.empty(devices), np.empty(devices), np.empty(devices), np.empty(devices)
    sends, banded = np.empty(devices, dtype=np.bool_), np.empty(devices, dtype=np.bool_)
    priority, totals = np.empty(devices), np.empty(stations)
    leader, leading = np.empty(stations, dtype=np.int64), np.empty(stations)
    for b in range(batch):
        for i in range(devices):
            band[i], send[i] = np.float64(unit[b, 4 * i]), np.float64(unit[b, 4 * i + 1])
            compute[i], edge[i] = np.float64(unit[b, 4 * i + 2]), np.float64(unit[b, 4 * i + 3])
        if gate:  # gate_unit, no fixed block
            for i in range(devices):
                sends[i] = send[i] > 0.0
                banded[i] = sends[i] and band[i] > 0.0
            if one_sender:  # station_leaders with count 1: the first largest positive claim
                for i in range(devices):
                    claim = _clip_unit_keep_nan(band[i]) * _clip_unit_keep_nan(send[i]) * _clip_unit_keep_nan(edge[i])
                    priority[i] = claim if banded[i] and edge[i] > 0.0 else 0.0
                leader[:] = -1
                for i in range(devices):
                    j = association[b, i]
                    if priority[i] > 0.0 and (leader[j] < 0 or priority[i] > leading[j]):
                        leader[j], leading[j] = i, priority[i]
                for i in range(devices):
                    if not (priority[i] > 0.0 and leader[association[b, i]] == i):
                        sends[i], banded[i], send[i] = False, False, 0.0
            for i in range(devices):
                if not sends[i]:
                    band[i] = 0.0
                if not banded[i]:
                    edge[i] = 0.0
        # action_from_unit: clip to [0, 1], shares of each station, scale to the bounds ...
        for i in range(devices):
            band[i], send[i] = _clip(band[i], 1.0), _clip(send[i], 1.0)
            compute[i], edge[i] = _clip(compute[i], 1.0), _clip(edge[i], 1.0)
        for weights, out, scaled in ((band, share, False), (edge, edge_cpu, True)):
            totals[:] = 0.0
            for i in range(devices):
                totals[association[b, i]] += weights[i]
            for i in range(devices):
                j = association[b, i]
                out[b, i] = weights[i] / totals[j] if totals[j] > 0 else 0.0
                if scaled:
                    out[b, i] = out[b, i] * station_cpu[j]
        for i in range(devices):
            power[b, i], cpu[b, i] = send[i] * max_power, compute[i] * local_cpu
        for k in range(stations):
            departure[b, k] = _clip(np.float64(unit[b, width + k]), 1.0) * capacity[k]
        # ... then project: clip every block, scale a station's sums down to its capacity.
        for i in range(devices):
            share[b, i], power[b, i] = _clip(share[b, i], 1.0), _clip(power[b, i], max_power)
            cpu[b, i] = _clip(cpu[b, i], local_cpu)
            edge_cpu[b, i] = _clip(edge_cpu[b, i], station_cpu[association[b, i]])
        for out, scaled in ((share, False), (edge_cpu, True)):
            totals[:] = 0.0
            for i in range(devices):
                totals[association[b, i]] += out[b, i]
            for i in range(devices):
                j = association[b, i]
                limit = station_cpu[j] if scaled else 1.0
                if totals[j] > limit:
                    out[b, i] = out[b, i] * (limit / totals[j])
        for k in range(stations):
            departure[b, k] = _clip(departure[b, k], capacity[k])

