"""dtnopt: stochastic computation offloading in digital-twin IIoT networks.

The model layer of the toolkit: scenario, plant, digital twin, the Lyapunov loop, and the
per-slot P2 solver interface. Solvers live in the ``solvers`` package, studies in ``studies``.
"""

from .action import Action, InfeasibleAction, check_feasible, is_feasible, project
from .config import MBIT, MODEL_VERSION, Scenario
from .loop import (KPI_NAMES, Episode, NonFiniteSlot, Slot, held_out_seeds, run_episode, run_seeds, slots,
                   validation_seeds)
from .environments import Environments
from .registry import available, make, register
from .solver import ABLATIONS, Ablation, Solver, fixed_allocation
from .twin import Observation
from .gym_ids import register_environments

register_environments()

__all__ = [
    "ABLATIONS", "Ablation", "Action", "Episode", "InfeasibleAction", "KPI_NAMES", "MBIT", "MODEL_VERSION",
    "Environments", "NonFiniteSlot", "Observation", "Scenario", "Slot", "Solver", "available", "check_feasible",
    "fixed_allocation", "held_out_seeds", "is_feasible", "make", "project", "register", "run_episode",
    "run_seeds", "slots", "validation_seeds",
]
__version__ = "0.1.0"
