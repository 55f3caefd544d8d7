"""The size-independent actor-critic of ``a3c`` (``actor="pooled"``): one set of weights for
every number of devices N and stations M + 1.

Every input is per device, per station or a pooled summary, never a vector whose length is N or
M, and every output comes from a head shared by the devices or by the stations:

- a device's input: its own features (``DEVICE_FEATURES``, the observation vector's per-device
  entries without the one-hot station), the mean and the max of those features over its
  station's devices, its station's summary (``STATION_SUMMARY``) and the global summary;
- a station's input: its summary, the mean and max of its devices' features and the global summary;
- the global summary: the mean of all devices' features, the observation's three global entries
  and the mean and max of the stations' edge-queue entries.

The actor maps each device's input to its four unit-box entries and each station's to its
departure entry; the critic maps them to the value of the device's or the station's part of the
P2 cost (20), as ``ActorCritic``'s critic does. The log std is one per kind of entry. P2 is a sum
of per-device problems coupled only through the stations (``dtnopt.blocks``), so these per-part
maps are the whole policy whatever N and M are, and a checkpoint runs at any size.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import nn

from dtnopt.features import DEVICE_ACTIONS, observation_features
from dtnopt.learned import mlp_parameters

from .config import A3CConfig
from .networks import NumpyActor, mlp

DEVICE_FEATURES = 6
"""Per-device entries of the observation vector before the one-hot station (``dtnopt.features``)."""

STATION_SUMMARY = ("edge queue", "is the MBS", "log1p(devices at the station)")
GLOBAL_SUMMARY = DEVICE_FEATURES + 3 + 2
DEVICE_INPUTS = 3 * DEVICE_FEATURES + len(STATION_SUMMARY) + GLOBAL_SUMMARY
STATION_INPUTS = len(STATION_SUMMARY) + 2 * DEVICE_FEATURES + GLOBAL_SUMMARY


def pooled_inputs(features: np.ndarray, devices: int, stations: int) -> tuple:
    """From observation vectors (B, N (6 + M+1) + M+1 + 3), float32: the devices' inputs
    (B, N, ``DEVICE_INPUTS``) and the stations' inputs (B, M+1, ``STATION_INPUTS``), float32
    (a compiled loop, ``fill_pooled_inputs``: at batch 1 numpy's per-call cost would be most of
    a decision)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    batch = len(features)
    device_inputs = np.empty((batch, devices, DEVICE_INPUTS), dtype=np.float32)
    station_inputs = np.empty((batch, stations, STATION_INPUTS), dtype=np.float32)
    fill_pooled_inputs(features, devices, stations, device_inputs, station_inputs)
    return device_inputs, station_inputs


@numba.njit(cache=True)
def fill_pooled_inputs(features, devices, stations, device_out, station_out):
    """Fill ``device_out`` (B, N, 32) with each device's own 6 features, the mean and max of its
    station's devices' features, its station's summary and the global summary, and
    ``station_out`` (B, M+1, 26) with each station's summary, the mean and max of its devices'
    features and the global summary (module docstring; an empty station's mean and max are 0)."""
    width = DEVICE_FEATURES + stations
    split = devices * width
    station = np.empty(devices, dtype=np.int64)
    count = np.empty(stations, dtype=np.float32)
    mean = np.empty((stations, DEVICE_FEATURES), dtype=np.float32)
    peak = np.empty((stations, DEVICE_FEATURES), dtype=np.float32)
    pooled = np.empty(GLOBAL_SUMMARY, dtype=np.float32)
    for b in range(features.shape[0]):
        count[:] = 0.0
        mean[:] = 0.0
        pooled[:] = 0.0
        for i in range(devices):
            j = 0
            for k in range(stations):
                if features[b, i * width + DEVICE_FEATURES + k] > 0:
                    j = k
            station[i] = j
            for k in range(DEVICE_FEATURES):
                value = features[b, i * width + k]
                mean[j, k] += value
                pooled[k] += value
                peak[j, k] = value if count[j] == 0 else max(peak[j, k], value)
            count[j] += 1.0
        top = features[b, split]
        total = np.float32(0.0)
        for j in range(stations):
            queue = features[b, split + j]
            total += queue
            top = max(top, queue)
            for k in range(DEVICE_FEATURES):
                if count[j] > 0:
                    mean[j, k] /= count[j]
                else:
                    peak[j, k] = 0.0
        for k in range(DEVICE_FEATURES):
            pooled[k] /= devices
        for k in range(3):
            pooled[DEVICE_FEATURES + k] = features[b, split + stations + k]
        pooled[DEVICE_FEATURES + 3] = total / stations
        pooled[DEVICE_FEATURES + 4] = top
        for j in range(stations):  # summary (3), mean (6), max (6), global (11)
            row = station_out[b, j]
            row[0] = features[b, split + j]
            row[1] = 1.0 if j == 0 else 0.0
            row[2] = np.log1p(count[j])
            for k in range(DEVICE_FEATURES):
                row[3 + k] = mean[j, k]
                row[3 + DEVICE_FEATURES + k] = peak[j, k]
            for k in range(GLOBAL_SUMMARY):
                row[3 + 2 * DEVICE_FEATURES + k] = pooled[k]
        for i in range(devices):  # own (6), mean (6), max (6), summary (3), global (11)
            row, j = device_out[b, i], station[i]
            for k in range(DEVICE_FEATURES):
                row[k] = features[b, i * width + k]
                row[DEVICE_FEATURES + k] = mean[j, k]
                row[2 * DEVICE_FEATURES + k] = peak[j, k]
            for k in range(3):
                row[3 * DEVICE_FEATURES + k] = station_out[b, j, k]
            for k in range(GLOBAL_SUMMARY):
                row[3 * DEVICE_FEATURES + 3 + k] = pooled[k]
    return device_out


class PooledActorCritic(nn.Module):
    """Actor and critic of shared per-device and per-station heads (module docstring). Its
    ``inputs`` are the pair ``pooled_inputs`` gives; ``mean_action``, ``policy`` and ``value``
    keep the layout of ``ActorCritic``: the device entries device-major, then the stations."""

    def __init__(self, config: A3CConfig):
        super().__init__()
        self.device_actor = mlp(DEVICE_INPUTS, len(DEVICE_ACTIONS), config)
        self.station_actor = mlp(STATION_INPUTS, 1, config)
        self.device_critic = mlp(DEVICE_INPUTS, 1, config)
        self.station_critic = mlp(STATION_INPUTS, 1, config)
        self.log_std = nn.Parameter(torch.full((len(DEVICE_ACTIONS) + 1,), math.log(config.initial_std)))
        # Start from the centre of the box with small, state-independent noise in the mean.
        for head in (self.device_actor[-1], self.station_actor[-1]):
            nn.init.uniform_(head.weight, -1e-3, 1e-3)
            nn.init.constant_(head.bias, 0.5)

    @staticmethod
    def inputs(observation) -> tuple:
        """The networks' inputs for a batch of observations (numpy, float32)."""
        sc = observation.scenario
        return pooled_inputs(observation_features(observation), observation.local_queue.shape[1], sc.stations)

    def mean_action(self, inputs: tuple) -> torch.Tensor:
        """The Gaussian mean on the unit box, unsquashed (as ``ActorCritic.mean_action``)."""
        devices, stations = inputs
        return torch.cat([self.device_actor(devices).flatten(-2), self.station_actor(stations).squeeze(-1)], dim=-1)

    def policy(self, inputs: tuple) -> torch.distributions.Normal:
        mean = self.mean_action(inputs)
        devices, stations = inputs[0].shape[-2], inputs[1].shape[-2]
        std = self.log_std.clamp(-6.0, 2.0).exp()
        scale = torch.cat([std[:-1].repeat(devices), std[-1:].expand(stations)]).expand_as(mean)
        return torch.distributions.Normal(mean, scale, validate_args=False)  # NaN is caught on the loss

    def policy_parameters(self) -> list:
        return [*self.device_actor.parameters(), *self.station_actor.parameters(), self.log_std]

    def critic_parameters(self) -> list:
        return [*self.device_critic.parameters(), *self.station_critic.parameters()]

    def value(self, inputs: tuple) -> torch.Tensor:
        """Value of each part of the P2 cost (device parts, then station parts)."""
        devices, stations = inputs
        return torch.cat([self.device_critic(devices).squeeze(-1), self.station_critic(stations).squeeze(-1)], dim=-1)


class PooledNumpyActor(NumpyActor):
    """``PooledActorCritic.mean_action`` in numpy (float32), the decision path (``NumpyActor``)."""

    def __init__(self, model: PooledActorCritic):
        super().__init__(model)
        self.parameters = model.policy_parameters()  # the critic's steps do not re-read the weights

    def sequentials(self) -> list:
        return [self.actor.device_actor, self.actor.station_actor]

    def __call__(self, inputs: tuple) -> np.ndarray:
        self._refresh()
        devices, stations = inputs
        per_device = self._mlp(self.nets[0], devices)  # (B, N, 4)
        return np.concatenate([per_device.reshape(len(devices), -1), self._mlp(self.nets[1], stations)[..., 0]],
                              axis=1)


def pooled_parameter_count(config: A3CConfig) -> int:
    """Parameters of ``PooledActorCritic(config)``: the same for every N and M."""
    width, layers = config.hidden_size, config.hidden_layers
    return (mlp_parameters(DEVICE_INPUTS, len(DEVICE_ACTIONS), width, layers) + mlp_parameters(DEVICE_INPUTS, 1, width, layers)
            + 2 * mlp_parameters(STATION_INPUTS, 1, width, layers) + len(DEVICE_ACTIONS) + 1)
