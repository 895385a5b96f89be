"""One Python environment per model family, for packages that cannot share the main one.

MACE pins e3nn 0.4.4 (SevenNet needs e3nn 0.6), MatterSim and fairchem require CUDA-only or
cloud packages they never import on CPU, Orb pins dm-tree: these model families cannot be
installed side by side with the rest. matalign keeps a pinned, versioned spec per family
(``matalign/envs/specs/<family>.toml``: the exact packages, installed with ``--no-deps``) and
builds each environment on demand (``matalign env create mace``):

- a ``venv`` made with ``--system-site-packages`` plus a ``.pth`` line that adds the main
  environment's site-packages *after* the family's own, so the family shares the main
  torch build (never another torch: every install runs under a constraint pinning torch and
  numpy to the main environment's versions) while its own pins (e3nn 0.4.4...) shadow the
  rest;
- under ``$MATALIGN_ENV_DIR`` (default ``~/.cache/matalign/envs``) in
  ``<family>-<hash>``, the hash covering the spec file, the Python version and the main
  environment's prefix, so an environment is reused across runs and rebuilt when its spec
  changes;
- made in a temporary directory and renamed into place once every package is installed and
  the spec's imports and checks pass, so a half-built environment is never used.

Adapters of such a family run in a worker process inside its environment
(``matalign.adapters._worker``); the embedding store is written by the calling process.

Examples
--------
>>> import matalign.envs as envs
>>> sorted(envs.families())
['fairchem', 'mace', 'mattersim', 'orb']
>>> envs.spec("mace").version >= 1
True
"""

from ._manage import (EnvSpec, ModelEnvironmentError, EnvStatus, create, env_dir, families,
                      find, python_of, remove, spec, status)

__all__ = ["EnvSpec", "EnvStatus", "ModelEnvironmentError", "create", "env_dir", "families",
           "find", "python_of", "remove", "spec", "status"]
