"""ANI-1x adapter (``torchani==2.2.4``, whose wheel ships the ANI-1x 8-model ensemble).

``torchani.models.ANI1x()`` would try to download (its ``.info`` files are empty in 2.2.4), so
the ensemble is assembled by hand from ``torchani/resources/ani-1x_8x``: the AEV constants
``rHCNO-5.2R_16-3.5A_a4-8.params``, the self-energies ``sae_linfit.dat`` and the eight
networks ``train0..7``. Nothing is downloaded.

Features (``features=``):

- ``'learned'`` (default, 96-d): each atom's AEV through its element's MLP up to the **last
  hidden layer** (the CELU output of the 128→96 layer, i.e. the input of the final 96→1
  energy readout), averaged over the 8 ensemble members (or one member with ``member=i``).
- ``'aev'`` (384-d): the atomic environment vector itself (a fixed physics descriptor).

**ANI-1ccx** (``ani-1ccx``: ANI-1x transfer-learned to CCSD(T)/CBS, same architecture): its
files are 0-byte placeholders in torchani 2.2-2.2.4 (and absent from 2.7+), but the wheels
of torchani 0.3 to 2.0 ship them for real (``torchani/resources/ani-1ccx_8x``, 8 members,
33.8 MB). The adapter reads them from such a wheel file, never installing it: pass
``wheel=PATH`` (or set ``MATALIGN_TORCHANI_WHEEL``) to e.g. the file fetched by
``pip download --no-deps torchani==2.0``; the ensemble is extracted once into the user cache
folder (``$MATALIGN_CACHE_DIR``, else ``~/.cache/matalign``), or pass ``resources=DIR`` for
an already extracted ``ani-1ccx_8x`` folder. ANI-2x ships in no torchani release on PyPI
(placeholders in 2.2-2.2.4, absent elsewhere), so matalign has no ANI-2x adapter.

ANI-1x knows H, C, N and O only; anything else raises a ValueError naming the structure and
the element. Molecules are the intended input; periodic structures are supported (the AEV
uses the cell) and run one at a time.

Examples
--------
>>> import matalign as ma
>>> ma.adapters.info("ani-1x").dim
96
>>> from ase.build import molecule
>>> from matalign.structures import Structure
>>> ad = ma.adapters.get("ani-1x")   # doctest: +SKIP
>>> ad.embed([Structure("h2o", atoms=molecule("H2O"))]).shape   # doctest: +SKIP
(1, 96)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter, pool, require
from ._mlip_common import atoms_of, check_elements, package_file, quiet

__all__ = ["ANIAdapter", "load_ani1x", "ani1ccx_resources"]

_RESOURCES = ("resources", "ani-1x_8x")
_N_MEMBERS = 8


_CCX = "ani-1ccx_8x"
_CCX_WHEEL_HINT = ("a torchani 0.3-2.0 wheel, e.g. from `pip download --no-deps torchani==2.0 "
                   "-d DIR` (its ani-1ccx_8x resources are real; 2.2-2.2.4 ship empty "
                   "placeholders)")


def _check_ensemble(root: str, what: str) -> str:
    needed = ["rHCNO-5.2R_16-3.5A_a4-8.params", "sae_linfit.dat"] + [
        os.path.join(f"train{i}", "networks", "ANN-H.nnf-l1.wparam") for i in range(_N_MEMBERS)]
    for rel in needed:
        path = os.path.join(root, rel)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise FileNotFoundError(f"{what}: {path} is missing or empty (0-byte placeholder); "
                                    f"expected a full 8-member ANI ensemble folder")
    return root


def ani1ccx_resources(wheel: str | os.PathLike | None = None) -> str:
    """The ANI-1ccx ensemble folder, extracted (once) from a torchani 0.3-2.0 wheel file.

    Parameters
    ----------
    wheel : path, optional
        The ``torchani-<version>-py3-none-any.whl`` file; default ``$MATALIGN_TORCHANI_WHEEL``.

    Returns
    -------
    str
        A folder ``ani-1ccx_8x`` under the user cache folder, keyed by the wheel's SHA-256.

    Examples
    --------
    >>> from matalign.adapters.ani import ani1ccx_resources
    >>> ani1ccx_resources("torchani-2.0-py3-none-any.whl")   # doctest: +SKIP
    '/home/me/.cache/matalign/torchani-1a2b3c4d5e6f/ani-1ccx_8x'
    """
    import zipfile

    from ._base import sha256_file
    from ._status import cache_dir

    wheel = wheel or os.environ.get("MATALIGN_TORCHANI_WHEEL")
    if not wheel:
        raise ValueError(f"adapter 'ani-1ccx' needs wheel=PATH (or MATALIGN_TORCHANI_WHEEL): "
                         f"{_CCX_WHEEL_HINT}; or resources=DIR of an extracted ani-1ccx_8x")
    wheel = os.fspath(wheel)
    if not os.path.isfile(wheel):
        raise FileNotFoundError(f"adapter 'ani-1ccx': wheel {wheel!r} does not exist; expected "
                                f"{_CCX_WHEEL_HINT}")
    dest = cache_dir() / f"torchani-{sha256_file(wheel)[:12]}"
    root = dest / _CCX
    if not (root / "train7").is_dir():
        prefix = f"torchani/resources/{_CCX}/"
        try:
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.infolist()
                           if m.filename.startswith(prefix) and not m.is_dir()]
                if not members or not any(m.file_size for m in members):
                    raise ValueError(f"adapter 'ani-1ccx': wheel {wheel!r} has no real "
                                     f"{prefix} files (empty or absent); expected "
                                     f"{_CCX_WHEEL_HINT}")
                tmp = dest / f".partial-{os.getpid()}"
                for m in members:
                    rel = m.filename[len("torchani/resources/"):]
                    if ".." in rel.split("/"):
                        raise ValueError(f"wheel {wheel!r}: unsafe member name {m.filename!r}")
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(m))
        except zipfile.BadZipFile as exc:
            raise ValueError(f"adapter 'ani-1ccx': {wheel!r} is not a wheel (zip) file: "
                             f"{exc}") from None
        _check_ensemble(str(tmp / _CCX), f"wheel {wheel!r}")
        try:
            os.replace(tmp / _CCX, root)
        except OSError:
            if not (root / "train7").is_dir():       # not a concurrent extraction: re-raise
                raise
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return _check_ensemble(str(root), f"wheel {wheel!r}")


def load_ani1x(root: str | None = None):
    """The ANI-1x ensemble as a ``torchani.models.BuiltinEnsemble``, built from the files in
    the torchani 2.2.4 wheel (no download), or an ensemble of the same format from ``root``
    (ANI-1ccx). Needs ``setuptools<81`` for ``pkg_resources``."""
    with quiet():
        require("torchani", pip_name="torchani==2.2.4", extra="mlip")
    with quiet():
        from torchani import neurochem
        from torchani.aev import AEVComputer
        from torchani.models import BuiltinEnsemble
        from torchani.nn import SpeciesConverter

    root = root or package_file("torchani", *_RESOURCES)
    with quiet():
        consts = neurochem.Constants(os.path.join(root, "rHCNO-5.2R_16-3.5A_a4-8.params"))
        shifter, sae = neurochem.load_sae(os.path.join(root, "sae_linfit.dat"),
                                          return_dict=True)
        nets = neurochem.load_model_ensemble(consts.species, os.path.join(root, "train"),
                                             _N_MEMBERS)
        model = BuiltinEnsemble(SpeciesConverter(consts.species), AEVComputer(**consts), nets,
                                shifter, consts.species_to_tensor, consts, sae, True)
    return model.eval()


class ANIAdapter(Adapter):
    """ANI-1x per-atom features (learned last hidden layer or AEV), pooled per structure.

    Parameters
    ----------
    features : {'learned', 'aev'}
    member : int or None
        Ensemble member 0..7 for ``'learned'``; None averages all eight.
    pooling : {'mean', 'sum', 'max'}
    device : str
    name : str or None
    """

    modality = "atoms"
    package = "torchani"

    def __init__(self, *, model: str = "1x", features: str = "learned",
                 member: int | None = None, pooling: str = "mean", device: str = "cpu",
                 name: str | None = None, wheel: str | None = None,
                 resources: str | None = None) -> None:
        super().__init__(pooling=pooling)
        if model not in ("1x", "1ccx"):
            raise ValueError(f"model must be '1x' or '1ccx', got {model!r}")
        if model == "1x" and (wheel is not None or resources is not None):
            raise ValueError("wheel= and resources= are for model='1ccx' (ANI-1x ships in the "
                             "installed torchani 2.2.4)")
        if features not in ("learned", "aev"):
            raise ValueError(f"features must be 'learned' or 'aev', got {features!r}")
        if member is not None and (isinstance(member, bool) or member not in range(_N_MEMBERS)):
            raise ValueError(f"member must be None or an integer 0..{_N_MEMBERS - 1}, "
                             f"got {member!r}")
        if member is not None and features == "aev":
            raise ValueError("member= selects an ensemble network; the AEV has none")
        self.features = features
        self.member = member
        self.device = device
        if model == "1ccx":
            root = (_check_ensemble(os.fspath(resources), "adapter 'ani-1ccx'")
                    if resources is not None else ani1ccx_resources(wheel))
        else:
            root = package_file("torchani", *_RESOURCES)
        self.model_name = model
        self._root = root
        self._model = load_ani1x(root).to(device)
        self._species = list(self._model.consts.species)          # ['H', 'C', 'N', 'O']
        from ase.data import atomic_numbers
        self._z_to_index = {atomic_numbers[s]: i for i, s in enumerate(self._species)}
        self.dim = 384 if features == "aev" else 96
        self.name = name or f"ani-{model}" + ("-aev" if features == "aev" else "")
        self.layer = ("AEV (atomic environment vector, radial 5.2 Å + angular 3.5 Å)"
                      if features == "aev" else
                      "last hidden layer of the element MLPs (CELU output of the 128->96 "
                      "Linear, input of the energy readout), "
                      + ("mean over the 8 ensemble members" if member is None
                         else f"ensemble member {member}"))
        self.checkpoint = os.path.join(root, "train0", "networks", "ANN-H.nnf")

    def _extra_metadata(self) -> dict[str, Any]:
        return {"features": self.features, "member": self.member,
                "elements": self._species,
                "model": self.model_name, "resources": self._root}

    def _aevs(self, batch: list[Structure]) -> tuple[list, list]:
        """Per-structure (species indices tensor, AEV tensor)."""
        import torch

        species_list, aevs = [], []
        periodic, molecules = [], []
        for i, s in enumerate(batch):
            atoms = atoms_of(s, self.name)
            z = atoms.get_atomic_numbers()
            check_elements(s, z, self._z_to_index, self.name)
            (periodic if atoms.pbc.any() else molecules).append(i)
        out: dict[int, tuple] = {}
        aev_computer = self._model.aev_computer
        if molecules:
            n_max = max(len(batch[i].atoms) for i in molecules)
            species = torch.full((len(molecules), n_max), -1, dtype=torch.long)
            coords = torch.zeros((len(molecules), n_max, 3), dtype=torch.float32)
            for row, i in enumerate(molecules):
                at = batch[i].atoms
                species[row, :len(at)] = torch.tensor(
                    [self._z_to_index[int(z)] for z in at.get_atomic_numbers()])
                coords[row, :len(at)] = torch.as_tensor(at.get_positions(), dtype=torch.float32)
            _, aev = aev_computer((species.to(self.device), coords.to(self.device)))
            for row, i in enumerate(molecules):
                n = len(batch[i].atoms)
                out[i] = (species[row, :n], aev[row, :n])
        for i in periodic:
            at = batch[i].atoms
            species = torch.tensor([[self._z_to_index[int(z)] for z in at.get_atomic_numbers()]])
            coords = torch.as_tensor(at.get_positions()[None], dtype=torch.float32)
            cell = torch.as_tensor(np.asarray(at.cell), dtype=torch.float32)
            pbc = torch.as_tensor(at.pbc, dtype=torch.bool)
            _, aev = aev_computer((species.to(self.device), coords.to(self.device)),
                                  cell=cell.to(self.device), pbc=pbc.to(self.device))
            out[i] = (species[0], aev[0])
        for i in range(len(batch)):
            species_list.append(out[i][0])
            aevs.append(out[i][1])
        return species_list, aevs

    def _hidden(self, member: int, element: str):
        """The element network of an ensemble member without its last (energy) layer."""
        cache = self.__dict__.setdefault("_hidden_nets", {})
        if (member, element) not in cache:
            import torch

            net = self._model.neural_networks[member][element]
            cache[(member, element)] = torch.nn.Sequential(*list(net.children())[:-1])
        return cache[(member, element)]

    def atom_features(self, batch: list[Structure]) -> tuple[np.ndarray, list[int]]:
        """Per-atom features of a batch (all atoms concatenated) and the atoms per structure."""
        import torch

        with torch.inference_mode():
            species_list, aevs = self._aevs(batch)
            species = torch.cat(species_list).to(self.device)
            aev = torch.cat(aevs)
            if self.features == "aev":
                feats = aev
            else:
                members = (range(_N_MEMBERS) if self.member is None else [self.member])
                feats = torch.zeros((len(species), 96), dtype=aev.dtype, device=aev.device)
                for idx, element in enumerate(self._species):
                    # each element's rows are gathered once and scattered once; the members'
                    # outputs are summed in member order, then divided (as before: bitwise)
                    rows = (species == idx).nonzero().squeeze(1)
                    if rows.numel() == 0:
                        continue
                    x = aev.index_select(0, rows)
                    acc = None
                    for m in members:
                        h = self._hidden(m, element)(x)
                        acc = h if acc is None else acc.add_(h)
                    feats.index_copy_(0, rows, acc)
                feats /= len(members)
        return feats.cpu().numpy(), [len(s) for s in species_list]

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        feats, counts = self.atom_features(batch)
        return pool(feats, counts, self.pooling)


def ani1x(**options: Any) -> ANIAdapter:
    """Factory used by the registry (``ani-1x``)."""
    return ANIAdapter(**options)


def ani1ccx(**options: Any) -> ANIAdapter:
    """Factory used by the registry (``ani-1ccx``): ``wheel=`` or ``resources=``."""
    return ANIAdapter(model="1ccx", **options)
