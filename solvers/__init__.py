"""Built-in per-slot P2 solvers. Each is declared in the ``dtnopt.solvers`` entry-point group
(``pyproject.toml``), the group third-party solvers use too, and ``dtnopt.registry`` imports its
module the first time the registry is asked for a solver; a module that fails to import then
costs only its own solvers."""
