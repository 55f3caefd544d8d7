"""Hyper-parameters of ``a3c``: the paper's values where it gives them (Sec. V), otherwise the
reason for each default."""

from __future__ import annotations

import os
from dataclasses import dataclass

from dtnopt.solver import check_flags, check_ranges

ACTORS = ("station", "mlp", "pooled")
"""Actor-critic networks: ``DeviceActor`` (one MLP shared by the devices, fed its station's
context) with the paper's critic, the paper's single MLPs over the whole observation, and
``PooledActorCritic`` (shared per-device and per-station heads: one set of weights for any N, M)."""


def parse_range(text: str, name: str, low: int) -> tuple | None:
    """``"LO:HI"`` as (LO, HI) with ``low <= LO <= HI <= 100000`` ("": None); a ``ValueError``
    names the field."""
    if text == "":
        return None
    parts = text.split(":") if isinstance(text, str) else []
    try:
        lo, hi = (int(part) for part in parts)
    except ValueError:
        lo = hi = None
    if lo is None or not low <= lo <= hi <= 100_000:
        raise ValueError(f"{name} must be 'LO:HI' with integers {low} <= LO <= HI <= 100000, or '' "
                         f"(the scenario's own), got {text!r}")
    return lo, hi


@dataclass
class A3CConfig:
    """Hyper-parameters of ``a3c``, validated at construction (a ``ValueError`` names the field)."""

    n_workers: int = 0
    """Asynchronous worker processes (Algorithm 2); 0 means one per CPU core. 1 runs the worker in
    a thread of the caller and is deterministic under a seed."""
    envs_per_worker: int = 16
    """Environments each worker steps together (one batched replica)."""
    episodes: int = 12000
    """Default budget, environment episodes summed over workers: closes about 99% of the
    equal -> bcd gap in system cost (docs/experiments/a3c.md); more measured no better."""
    t_max: int = 5
    """Slots per rollout before an update: n of the n-step return (Algorithm 3)."""
    discount: float = 0.0
    """delta of (23); 0 is the Lyapunov-consistent per-slot choice (docs/model.md section 7), and measured best."""
    hidden_size: int = 128
    """Units per hidden layer of actor and critic (paper: 128)."""
    hidden_layers: int = 3
    """Hidden ReLU layers of actor and critic (paper: 3)."""
    learning_rate: float = 1e-3
    """Adam step size of actor and critic (the paper's best, Fig. 8), annealed linearly to 0 over
    the budget's slots (Mnih et al. 2016)."""
    entropy_coef: float = 1e-3
    """Weight of the policy entropy bonus in the policy loss (26)."""
    value_coef: float = 0.5
    """Weight of the critic loss (27) in the joint loss."""
    bound_coef: float = 10.0
    """Weight of the penalty on a policy mean beyond the unit box (``bound_loss``)."""
    max_grad_norm: float = 1.0
    """Actor and critic gradients are each clipped to this norm per update."""
    initial_std: float = 0.3
    """Initial standard deviation of the Gaussian policy, in units of the unit box."""
    normalize_advantage: bool = True
    """Standardise each update's advantages per action entry."""
    counterfactual_credit: bool = True
    """Entries by which a device claims a share of its station get its own cost part plus the
    effect it had on the others (``externality``, a difference reward) instead of the station's
    total: less noise from the other devices' actions."""
    gate_idle: bool = True
    """No bandwidth or edge CPU for a device whose power entry is 0 (``dtnopt.features.gate_unit``):
    the station's band and CPU go to the devices that send."""
    actor: str = "station"
    """"station": ``DeviceActor``, one MLP shared by the devices and fed the mean and max of its
    station's devices' features; "mlp": the paper's single MLP over the whole observation;
    "pooled": ``PooledActorCritic``, whose checkpoint runs at any N and M."""
    devices_range: str = ""
    """With ``actor="pooled"``: "LO:HI", each training episode draws N uniformly from LO..HI
    ("": the scenario's N)."""
    sbs_range: str = ""
    """With ``actor="pooled"``: "LO:HI", each training episode draws M uniformly from LO..HI
    ("": the scenario's M)."""
    offloaders_per_station: int = 1
    """With ``gate_idle``: at most this many devices per station send, those of largest claim (0: no
    limit). One sender is the structure of P2's optimum: a station's edge energy (11) is least
    when its bits come from one device."""
    keep_best: bool = True
    """End with the evaluated weights of least validation system cost (all-stable ones first)
    rather than the last ones: long runs can collapse late."""

    def __post_init__(self) -> None:
        ranges = {
            "n_workers": (0, 1024, int), "envs_per_worker": (1, 4096, int), "episodes": (1, 10**9, int),
            "t_max": (1, 100_000, int), "discount": (0.0, 1.0, float), "hidden_size": (1, 65_536, int),
            "hidden_layers": (1, 64, int), "learning_rate": (1e-12, 10.0, float),
            "entropy_coef": (0.0, 100.0, float), "value_coef": (0.0, 100.0, float), "bound_coef": (0.0, 1e6, float),
            "max_grad_norm": (1e-9, 1e9, float), "initial_std": (1e-6, 10.0, float),
            "offloaders_per_station": (0, 1_000_000, int),
        }
        check_ranges(self, ranges)
        check_flags(self, ("normalize_advantage", "counterfactual_credit", "gate_idle", "keep_best"))
        if self.offloaders_per_station and not self.gate_idle:
            raise ValueError("offloaders_per_station (default 1) needs gate_idle=True; "
                             "set offloaders_per_station=0 with gate_idle=False")
        if self.actor not in ACTORS:
            raise ValueError(f"actor must be one of {', '.join(ACTORS)}, got {self.actor!r}")
        for name, low in (("devices_range", 1), ("sbs_range", 0)):
            if parse_range(getattr(self, name), name, low) is not None and self.actor != "pooled":
                raise ValueError(f"{name} needs actor='pooled' (the {self.actor!r} actor's inputs are sized by N "
                                 f"and M), as solver a3c-any has")

    @property
    def sizes(self) -> tuple:
        """((N low, N high) or None, (M low, M high) or None): the training ranges."""
        return parse_range(self.devices_range, "devices_range", 1), parse_range(self.sbs_range, "sbs_range", 0)

    @property
    def workers(self) -> int:
        return self.n_workers or os.cpu_count() or 1
