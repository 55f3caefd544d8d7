"""The actor and critic of ``a3c`` and the numpy copy of the actor that decides.

Both are ``hidden_layers`` x ``hidden_size`` ReLU MLPs (paper: 3 x 128). The critic is the
paper's MLP over the observation vector, predicting the value of each device's and each station's
part of the P2 cost (20). The default actor (``DeviceActor``) applies one MLP to every device:
P2 is a sum of per-device problems coupled only through the stations (``dtnopt.blocks``), so one
shared per-device map learns from every device's samples at once and generalises over devices.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import nn

from dtnopt.config import Scenario
from dtnopt.features import DEVICE_ACTIONS, action_size, device_feature_size, observation_features, observation_size
from dtnopt.learned import mlp_parameters

from .config import A3CConfig

MARGIN = 0.1
"""How far beyond the unit box the policy mean may go before ``bound_loss`` pulls it back: a
mean far outside would clip every sample to the bound and stop exploration, and a squashing
function would saturate there instead (vanishing gradient)."""


def mlp(inputs: int, outputs: int, config: A3CConfig) -> nn.Sequential:
    """``config.hidden_layers`` ReLU layers of ``config.hidden_size`` units, then a linear head."""
    layers, width = [], inputs
    for _ in range(config.hidden_layers):
        layers += [nn.Linear(width, config.hidden_size), nn.ReLU()]
        width = config.hidden_size
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def _context_size(scenario: Scenario) -> int:
    """Input of the stations' MLP: the stations' and global features and the mean device's."""
    return scenario.stations + 3 + device_feature_size(scenario)


class DeviceActor(nn.Module):
    """Actor whose per-device entries come from one MLP shared by all devices. Its input is the
    device's own features, the context (the stations' and global features and the mean of all
    devices' features) and the mean and max of the features of the devices at its own station
    (itself included): enough to tell whether it has the best link or the longest queue there,
    which a shared map needs to let one device of a station offload and the others not. The
    stations' departures come from a second MLP of the context. Same depth and width as the
    paper's actor."""

    def __init__(self, scenario: Scenario, config: A3CConfig):
        super().__init__()
        self.devices, self.width, self.stations = scenario.devices, device_feature_size(scenario), scenario.stations
        context = _context_size(scenario)
        self.device_net = mlp(3 * self.width + context, len(DEVICE_ACTIONS), config)
        self.station_net = mlp(context, scenario.stations, config)

    def heads(self) -> list:
        return [self.device_net[-1], self.station_net[-1]]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead, split = features.shape[:-1], self.devices * self.width
        own = features[..., :split].reshape(*lead, self.devices, self.width)
        context = torch.cat([features[..., split:], own.mean(-2)], dim=-1)
        shared = context.unsqueeze(-2).expand(*lead, self.devices, context.shape[-1])
        per_device = self.device_net(torch.cat([own, shared, *self._station_context(own)], dim=-1))
        return torch.cat([per_device.flatten(-2), self.station_net(context)], dim=-1)

    def _station_context(self, own: torch.Tensor) -> list:
        """(mean, max) over each device's station of the devices' features, per device. The
        station is read from the one-hot at the end of each device's features."""
        member = own[..., -self.stations:]  # (..., N, M+1) one-hot
        count = member.sum(-2).clamp(min=1.0)  # (..., M+1)
        mean = (member.transpose(-1, -2) @ own) / count.unsqueeze(-1)  # (..., M+1, W)
        masked = own.unsqueeze(-2).masked_fill(member.unsqueeze(-1) == 0, float("-inf"))  # (..., N, M+1, W)
        peak = masked.amax(-3).nan_to_num(neginf=0.0)  # (..., M+1, W); 0 at an empty station
        return [member @ mean, member @ peak]


def bound_loss(mean: torch.Tensor) -> torch.Tensor:
    """Squared distance of the mean beyond [-MARGIN, 1 + MARGIN], per sample."""
    return (torch.relu(mean - 1.0 - MARGIN).pow(2) + torch.relu(-MARGIN - mean).pow(2)).sum(-1)


def parameter_count(scenario: Scenario, config: A3CConfig) -> int:
    """Parameters of ``ActorCritic(scenario, config)``, without building it."""
    width, layers = config.hidden_size, config.hidden_layers
    if config.actor == "station":
        context = _context_size(scenario)
        actor = (mlp_parameters(3 * device_feature_size(scenario) + context, len(DEVICE_ACTIONS), width, layers)
                 + mlp_parameters(context, scenario.stations, width, layers))
    else:
        actor = mlp_parameters(observation_size(scenario), action_size(scenario), width, layers)
    critic = mlp_parameters(observation_size(scenario), scenario.devices + scenario.stations, width, layers)
    return actor + critic + action_size(scenario)


class ActorCritic(nn.Module):
    """Separate actor (Gaussian mean on the unit action box, state-independent log std) and
    critic (value of each device's and each station's part of the P2 cost; their sum is the
    state value)."""

    def __init__(self, scenario: Scenario, config: A3CConfig):
        super().__init__()
        outputs = action_size(scenario)
        if config.actor == "station":
            self.actor = DeviceActor(scenario, config)
        else:
            self.actor = mlp(observation_size(scenario), outputs, config)
        self.critic = mlp(observation_size(scenario), scenario.devices + scenario.stations, config)
        self.log_std = nn.Parameter(torch.full((outputs,), math.log(config.initial_std)))
        # Start from the centre of the box with small, state-independent noise in the mean.
        for head in (self.actor.heads() if isinstance(self.actor, DeviceActor) else [self.actor[-1]]):
            nn.init.uniform_(head.weight, -1e-3, 1e-3)
            nn.init.constant_(head.bias, 0.5)

    @staticmethod
    def inputs(observation) -> np.ndarray:
        """The networks' input for a batch of observations: the observation vector (float32)."""
        return observation_features(observation)

    def mean_action(self, features: torch.Tensor) -> torch.Tensor:
        """The Gaussian mean on the unit box, unsquashed: the map clips it, so the bounds are
        reached exactly (a vanishing but positive edge-CPU share would make the edge energy
        c D^e / f^e of (11) explode). ``bound_loss`` keeps it near the box."""
        return self.actor(features)

    def policy(self, features: torch.Tensor) -> torch.distributions.Normal:
        mean = self.mean_action(features)
        scale = self.log_std.clamp(-6.0, 2.0).exp().expand_as(mean)
        return torch.distributions.Normal(mean, scale, validate_args=False)  # NaN is caught on the loss

    def policy_parameters(self) -> list:
        return [*self.actor.parameters(), self.log_std]

    def critic_parameters(self) -> list:
        return list(self.critic.parameters())

    def value(self, features: torch.Tensor) -> torch.Tensor:
        """Value of each part of the P2 cost (device parts, then station parts)."""
        return self.critic(features)


class NumpyActor:
    """``ActorCritic.mean_action`` computed with numpy (float32) from the actor's current weights:
    the decision path. At batch 1 a network this small costs torch more in per-call overhead
    than in arithmetic; training stays in torch. The weights are re-read whenever a parameter
    changed in place (``Tensor._version``: an optimizer step or ``load_state_dict``), so it never
    acts on stale weights."""

    def __init__(self, actor: nn.Module):
        self.actor, self.parameters, self.version, self.nets = actor, list(actor.parameters()), None, None

    def _layers(self, sequential: nn.Sequential) -> list:
        return [(module.weight.detach().numpy().T.copy(), module.bias.detach().numpy().copy())
                for module in sequential if isinstance(module, nn.Linear)]

    def sequentials(self) -> list:
        """The MLPs whose weights the decision reads."""
        return [self.actor.device_net, self.actor.station_net] if isinstance(self.actor, DeviceActor) else [self.actor]

    def _refresh(self) -> None:
        version = [param._version for param in self.parameters]
        if version != self.version:
            self.nets, self.version = [self._layers(net) for net in self.sequentials()], version

    @staticmethod
    def _mlp(layers: list, inputs: np.ndarray) -> np.ndarray:
        hidden = inputs
        for weight, bias in layers[:-1]:
            hidden = hidden @ weight
            hidden += bias
            np.maximum(hidden, 0.0, out=hidden)
        weight, bias = layers[-1]
        return hidden @ weight + bias

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self._refresh()
        features = np.asarray(features, dtype=np.float32)
        if not isinstance(self.actor, DeviceActor):
            return self._mlp(self.nets[0], features)
        actor = self.actor
        batch, devices, width = len(features), actor.devices, actor.width
        context = np.empty((batch, features.shape[1] - devices * width + width), dtype=np.float32)
        device_inputs = np.empty((batch, devices, 3 * width + context.shape[1]), dtype=np.float32)
        station_actor_inputs(features, devices, width, actor.stations, context, device_inputs)
        per_device = self._mlp(self.nets[0], device_inputs)
        return np.concatenate([per_device.reshape(batch, -1), self._mlp(self.nets[1], context)], axis=1)


@numba.njit(cache=True)
def station_actor_inputs(features, devices, width, stations, context, out):
    """``DeviceActor``'s inputs as one compiled loop (at batch 1 numpy's per-call cost, not its
    arithmetic, is the price of a decision). From observation vectors ``features`` (B, N W + C0)
    float32, fill ``context`` (B, C0 + W) with their tail and the mean of the devices' features,
    and ``out`` (B, N, 3 W + C0 + W) with each device's own features, the context and the mean and
    max of the features of its station's devices (the station read from the one-hot at the end
    of its features; its station always has a member, itself). Sums run over the devices in
    order, in float32, as numpy's do, so the result is numpy's bit for bit."""
    batch = features.shape[0]
    split = devices * width
    tail = features.shape[1] - split
    size = tail + width
    station = np.empty(devices, dtype=np.int64)
    count = np.empty(stations, dtype=np.float32)
    sums = np.empty((stations, width), dtype=np.float32)
    peak = np.empty((stations, width), dtype=np.float32)
    for b in range(batch):
        for k in range(tail):
            context[b, k] = features[b, split + k]
        for k in range(width):
            total = np.float32(0.0)
            for i in range(devices):
                total += features[b, i * width + k]
            context[b, tail + k] = total / np.float32(devices)
        count[:] = 0
        sums[:] = 0
        for i in range(devices):
            j = 0
            for k in range(stations):
                if features[b, i * width + width - stations + k] > 0:
                    j = k
            station[i] = j
            for k in range(width):
                value = features[b, i * width + k]
                sums[j, k] += value
                peak[j, k] = value if count[j] == 0 else max(peak[j, k], value)
            count[j] += 1
        for i in range(devices):
            j = station[i]
            for k in range(width):
                out[b, i, k] = features[b, i * width + k]
                out[b, i, width + size + k] = sums[j, k] / count[j]
                out[b, i, 2 * width + size + k] = peak[j, k]
            for k in range(size):
                out[b, i, width + k] = context[b, k]
    return out
