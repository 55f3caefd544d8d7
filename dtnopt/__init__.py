"""dtnopt: stochastic computation offloading in digital-twin IIoT networks.

The model layer of the toolkit: scenario, plant, digital twin, the Lyapunov loop, and the
per-slot P2 solver interface. Solvers live in the ``solvers`` package, studies in ``studies``.

Imported before numpy, it asks BLAS for one thread (unless ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set): the toolkit's linear algebra is per-slot
matrices of a few hundred rows, and on a loaded 2-core machine OpenBLAS threads spin against the
other processes once a matrix passes its threading threshold (a learned policy's decision at
N = 100 took 32 ms per slot instead of 0.15 ms). Parallelism comes from processes: the studies'
``--jobs`` and the trainers' workers.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

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
