"""Write the small intersphinx inventories in this folder (no network needed to build docs).

The documentation is built offline (CI has no network but the package registries), so
intersphinx cannot fetch ``objects.inv`` from numpy, scipy, Python, torch, ASE or pymatgen.
Instead ``docs/conf.py`` points intersphinx at the files written here: each holds only the
external objects the pages and docstrings reference, mapped to their real URLs, in Sphinx's
inventory format version 2 (a four-line header, then zlib-compressed lines
``name domain:role priority uri display-name``; ``$`` in a URI stands for the name, ``-`` for a
display name equal to the name). To link to another external object, add it below and run::

    python docs/_inv/make_inventories.py
"""

from __future__ import annotations

import os
import zlib

# project -> (name, version, [(object, domain:role, relative URI), ...])
INVENTORIES = {
    "python": ("Python", "3", [
        ("pathlib.Path", "py:class", "library/pathlib.html#$"),
        ("os.PathLike", "py:class", "library/os.html#$"),
        ("collections.abc.Mapping", "py:class", "library/collections.abc.html#$"),
        ("KeyboardInterrupt", "py:exception", "library/exceptions.html#$"),
        ("ValueError", "py:exception", "library/exceptions.html#$"),
        ("TypeError", "py:exception", "library/exceptions.html#$"),
        ("MemoryError", "py:exception", "library/exceptions.html#$"),
    ]),
    "numpy": ("NumPy", "2", [
        ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$"),
        ("numpy.memmap", "py:class", "reference/generated/numpy.memmap.html#$"),
        ("numpy.load", "py:function", "reference/generated/numpy.load.html#$"),
        ("numpy.save", "py:function", "reference/generated/numpy.save.html#$"),
        ("numpy.random.default_rng", "py:function",
         "reference/random/generator.html#$"),
        ("numpy.float32", "py:class", "reference/arrays.scalars.html#$"),
        ("numpy.float64", "py:class", "reference/arrays.scalars.html#$"),
    ]),
    "scipy": ("SciPy", "1", [
        ("scipy.spatial.distance.cdist", "py:function",
         "reference/generated/scipy.spatial.distance.cdist.html#$"),
        ("scipy.stats.spearmanr", "py:function",
         "reference/generated/scipy.stats.spearmanr.html#$"),
    ]),
    "torch": ("PyTorch", "2", [
        ("torch.Tensor", "py:class", "tensors.html#$"),
        ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
        ("torch.from_numpy", "py:function", "generated/torch.from_numpy.html#$"),
    ]),
    "ase": ("ASE", "3", [
        ("ase.Atoms", "py:class", "ase/atoms.html#$"),
        ("ase.io.read", "py:function", "ase/io/io.html#$"),
        ("ase.io.write", "py:function", "ase/io/io.html#$"),
    ]),
    "pymatgen": ("pymatgen", "2024", [
        ("pymatgen.core.Structure", "py:class",
         "pymatgen.core.html#pymatgen.core.structure.Structure"),
    ]),
}


def write(path: str, project: str, version: str, objects: list[tuple[str, str, str]]) -> None:
    """Write one inventory file (format version 2) for ``objects``."""
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n").encode()
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in sorted(objects))
    with open(path, "wb") as f:
        f.write(header + zlib.compress(body.encode()))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for key, (project, version, objects) in INVENTORIES.items():
        write(os.path.join(here, f"{key}.inv"), project, version, objects)
        print(f"{key}.inv: {len(objects)} objects")
