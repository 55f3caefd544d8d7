"""The Gymnasium ids of the DTN environments, registered when ``dtnopt`` is imported.

Registration names the entry points by string, so it imports Gymnasium but not the environment
module (and its compiled features) until an environment is made.
"""

from __future__ import annotations

ENV_ID = "dtnopt/Offload-v0"
ALIAS_IDS = ("dtnopt/DTN-v0",)
"""Earlier ids of the same environment."""


def register_environments() -> None:
    """Register ``ENV_ID`` and ``ALIAS_IDS`` (once): ``gymnasium.make`` builds a
    ``dtnopt.env.OffloadEnv`` under a ``TimeLimit`` of the scenario's slots, ``gymnasium.make_vec``
    (``vectorization_mode="vector_entry_point"``) a batched ``dtnopt.env.OffloadVectorEnv``."""
    import gymnasium

    for env_id in (ENV_ID, *ALIAS_IDS):
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="dtnopt.env:make_env",
                               vector_entry_point="dtnopt.env:OffloadVectorEnv")
