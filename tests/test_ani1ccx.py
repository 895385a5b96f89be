"""ANI-1ccx read from a torchani 0.3-2.0 wheel file (real weights there; 0-byte placeholders in
the installed torchani 2.2.4). CI downloads the torchani 2.0 wheel before the tests and sets
MATALIGN_TORCHANI_WHEEL; the embedding tests skip where it is not set, the error tests run
everywhere."""

from __future__ import annotations

import importlib.util
import os
import zipfile

import numpy as np
import pytest

import matalign as ma

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchani") is None,
                                reason="torchani is not installed")
WHEEL = os.environ.get("MATALIGN_TORCHANI_WHEEL")
needs_wheel = pytest.mark.skipif(not WHEEL, reason="MATALIGN_TORCHANI_WHEEL is not set (CI "
                                 "sets it to `pip download --no-deps torchani==2.0`)")


def _mols():
    from ase.build import molecule

    from matalign.structures import Structure
    return [Structure(n, atoms=molecule(n)) for n in ("H2O", "CH4", "C6H6", "CH3CH2OH")]


@needs_wheel
def test_ani1ccx_embeds_offline_and_is_its_own_model():
    import torch
    from ase.build import molecule

    ccx, x1 = ma.adapters.get("ani-1ccx"), ma.adapters.get("ani-1x")
    e, e1 = ccx.embed(_mols()), x1.embed(_mols())
    assert e.shape == (4, 96) and np.isfinite(e).all()
    assert not np.allclose(e, e1, atol=1e-4)                  # different weights ...
    assert ccx.metadata["checkpoint_sha256"] != x1.metadata["checkpoint_sha256"]
    # ... of a model of the same chemistry: water's energies agree to ~0.01 Ha (CCSD(T) vs DFT)
    h2o = molecule("H2O")
    z = torch.as_tensor(h2o.get_atomic_numbers()[None])
    xyz = torch.as_tensor(h2o.positions[None], dtype=torch.float32)
    e_ccx = ccx._model((z, xyz)).energies.item()
    e_1x = x1._model((z, xyz)).energies.item()
    assert -76.5 < e_ccx < -76.3 and abs(e_ccx - e_1x) < 0.02 and e_ccx != e_1x
    assert ma.adapters.info("ani-1ccx").parent == "ani-1x"


def test_ani1ccx_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("MATALIGN_TORCHANI_WHEEL", raising=False)
    with pytest.raises(ValueError, match="adapter 'ani-1ccx' needs wheel=PATH"):
        ma.adapters.get("ani-1ccx")
    with pytest.raises(FileNotFoundError, match="wheel '.*nope.whl' does not exist"):
        ma.adapters.get("ani-1ccx", wheel=str(tmp_path / "nope.whl"))
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a wheel \\(zip\\) file"):
        ma.adapters.get("ani-1ccx", wheel=str(bad))
    empty = tmp_path / "torchani-2.2.4-py3-none-any.whl"     # 0-byte placeholders, as 2.2.4
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("torchani/resources/ani-1ccx_8x/sae_linfit.dat", b"")
        z.writestr("torchani/resources/ani-1ccx_8x/train0/networks/ANN-H.nnf", b"")
    with pytest.raises(ValueError, match="has no real torchani/resources/ani-1ccx_8x/ files"):
        ma.adapters.get("ani-1ccx", wheel=str(empty))
    with pytest.raises(FileNotFoundError, match="is missing or empty"):
        ma.adapters.get("ani-1ccx", resources=str(tmp_path))
    with pytest.raises(ValueError, match="wheel= and resources= are for model='1ccx'"):
        ma.adapters.get("ani-1x", wheel=str(empty))
