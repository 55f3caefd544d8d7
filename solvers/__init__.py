"""Built-in per-slot P2 solvers. Importing this package registers them with
``dtnopt.registry``; third-party solvers register through the ``dtnopt.solvers`` entry points."""

from . import heuristics  # noqa: F401
from . import bcd, dqn, reference  # noqa: F401
from . import a3c  # noqa: F401
