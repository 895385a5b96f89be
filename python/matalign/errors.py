"""Model errors against the labels a structure set carries (for "alignment vs error").

Each trained interatomic potential predicts the energy and forces of the labelled structures
through its package's own ASE calculator, from the checkpoint file the adapter uses (shipped in
the package's wheel: nothing is downloaded). The errors are

- **force MAE** (eV/Å): mean over all atoms and components of |F_model − F_label|; it needs no
  reference-energy convention, so it is comparable across every model;
- **energy MAE** (eV/atom): mean over structures of |E_model − E_label| / atoms; comparable
  only between models trained on the labels' functional (MPtrj and Alexandria are PBE/PBE+U),
  so each model carries its training functional and the report groups by it.

Random-init networks and descriptors have no prediction; :data:`PREDICTORS` lists what can
predict.

Examples
--------
>>> from matalign.errors import PREDICTORS, functional
>>> "chgnet-0.3.0" in PREDICTORS, functional("chgnet-r2scan")
(True, 'r2SCAN')
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

__all__ = ["PREDICTORS", "functional", "model_errors"]

#: Adapter name -> (family, training functional of its energies).
PREDICTORS = {
    "chgnet-0.3.0": ("chgnet", "PBE"),
    "chgnet-0.2.0": ("chgnet", "PBE"),
    "chgnet-r2scan": ("chgnet", "r2SCAN"),
    "sevennet-0": ("sevennet", "PBE"),
    "sevennet-l3i5": ("sevennet", "PBE"),
}


def functional(model: str) -> str | None:
    """The functional a model's energies were trained on, or None when it predicts none."""
    entry = PREDICTORS.get(model)
    return None if entry is None else entry[1]


def _calculator(model: str):
    family, _ = PREDICTORS[model]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if family == "chgnet":
            import torch
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator

            from .adapters._mlip_common import package_file
            from .adapters.chgnet import CHECKPOINTS

            version = model.split("-", 1)[1]
            path = package_file("chgnet", *CHECKPOINTS[version])
            state = torch.load(path, map_location="cpu", weights_only=False)["model"]
            net = CHGNet.from_dict(state, mlp_out_bias=version == "0.2.0", version=version)
            return CHGNetCalculator(model=net, use_device="cpu")
        from sevenn.calculator import SevenNetCalculator

        from .adapters._mlip_common import package_file
        from .adapters.sevennet import CHECKPOINTS

        key = {"sevennet-0": "7net-0", "sevennet-l3i5": "7net-l3i5"}[model]
        return SevenNetCalculator(model=package_file("sevenn", *CHECKPOINTS[key]),
                                  device="cpu")


def model_errors(structures, model: str) -> dict:
    """Force and energy errors of ``model`` on labelled structures.

    Parameters
    ----------
    structures : iterable of Structure
        Structures whose ``atoms`` carry DFT labels (an ASE calculator with energy and forces,
        as the shipped ``mptrj`` crystals do); unlabelled ones are skipped and counted.
    model : str
        An adapter name in :data:`PREDICTORS`.

    Returns
    -------
    dict
        ``force_mae`` (eV/Å), ``energy_mae`` (eV/atom), ``n`` (structures used),
        ``skipped`` (unlabelled), ``functional``.

    Raises
    ------
    ValueError
        For a model that predicts nothing (random-init networks, descriptors), or when no
        structure carries labels.
    """
    if model not in PREDICTORS:
        raise ValueError(f"{model!r} has no energy/force prediction in matalign; models that "
                         f"predict: {sorted(PREDICTORS)}")
    calc = _calculator(model)
    force_err, energy_err, skipped = [], [], 0
    for s in structures:
        atoms = getattr(s, "atoms", None)
        if atoms is None or atoms.calc is None:
            skipped += 1
            continue
        try:
            e_ref = float(atoms.get_potential_energy())
            f_ref = np.asarray(atoms.get_forces(), dtype=np.float64)
        except Exception:  # a calculator without these labels
            skipped += 1
            continue
        work = atoms.copy()
        work.calc = calc
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            e = float(work.get_potential_energy())
            f = np.asarray(work.get_forces(), dtype=np.float64)
        energy_err.append(abs(e - e_ref) / len(atoms))
        force_err.append(np.abs(f - f_ref).ravel())
    if not energy_err:
        raise ValueError(f"none of the structures carries energy and force labels "
                         f"({skipped} skipped)")
    return {"force_mae": float(np.mean(np.concatenate(force_err))),
            "energy_mae": float(np.mean(energy_err)), "n": len(energy_err),
            "skipped": skipped, "functional": functional(model)}
