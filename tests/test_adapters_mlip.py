"""MLIP adapters (issue 5): real shipped weights for CHGNet, SevenNet, ANI-1x, DIEP and the
random-init baselines; error paths of the bring-your-own-checkpoint adapters.

Each model is loaded once per module; structures are small (ase.build), so the file runs in
well under a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import matalign as ma
from matalign.structures import Structure

pytest.importorskip("ase")

REAL = ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0", "sevennet-l3i5",
        "sevennet-mf-0", "ani-1x", "diep", "random-chgnet", "random-sevennet"]
PACKAGE = {"chgnet": "chgnet", "sevennet": "sevenn", "ani": "torchani", "diep": "diep",
           "random-chgnet": "chgnet", "random-sevennet": "sevenn"}
DIM = {"chgnet": 64, "sevennet": 128, "ani": 96, "diep": 64, "random-chgnet": 64,
       "random-sevennet": 128}


def _family(name: str) -> str:
    return name if name.startswith("random-") else name.split("-")[0]


def _needs(name: str):
    pkg = PACKAGE[_family(name)]
    if importlib.util.find_spec(pkg) is None:
        pytest.skip(f"package {pkg!r} for adapter {name!r} is not installed")


@pytest.fixture(scope="module")
def adapters():
    """Lazily built adapters, one per name, shared by the whole module."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache: dict = {}

    def get(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            _needs(name)
            cache[key] = ma.adapters.get(name, **options)
        return cache[key]

    yield get
    torch.set_num_threads(threads)


def _crystals(seed: int = 0) -> list[Structure]:
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    mgo = bulk("MgO", "rocksalt", a=4.21) * (2, 1, 1)
    mgo.positions += rng.normal(0, 0.05, mgo.positions.shape)
    gaas = bulk("GaAs", "zincblende", a=5.65)
    return [Structure("si16", atoms=bulk("Si") * (2, 2, 2)),
            Structure("nacl", atoms=bulk("NaCl", "rocksalt", a=5.64)),
            Structure("cu", atoms=bulk("Cu")),
            Structure("mgo-rattled", atoms=mgo),
            Structure("gaas", atoms=gaas)]


def _molecules() -> list[Structure]:
    from ase.build import molecule

    return [Structure(f"mol:{n}", atoms=molecule(n))
            for n in ("H2O", "CH4", "CH3CH2OH", "HCN", "C6H6")]


def _inputs(name: str) -> list[Structure]:
    if _family(name) == "ani":
        return _molecules()
    return _crystals() + _molecules()[:2]


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _rotated_permuted(s: Structure, rng) -> Structure:
    at = s.atoms.copy()
    rot = _rotation(rng)
    at.positions = at.positions @ rot.T
    if at.pbc.any():
        at.set_cell(np.asarray(at.cell) @ rot.T, scale_atoms=False)
    at = at[rng.permutation(len(at))]
    return Structure(s.id + ":rot", atoms=at)


def _close(a, b, rtol=1e-4):
    scale = max(float(np.abs(a).max()), 1e-3)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL)
def test_registry_entry(name):
    entry = ma.adapters.info(name)
    assert entry.offline and entry.modality == "atoms"
    assert entry.dim == DIM[_family(name)]
    assert entry.family == ("random" if name.startswith("random-") else "mlip")


@pytest.mark.parametrize("name", REAL)
def test_shape_metadata_and_determinism(adapters, name):
    ad = adapters(name)
    xs = _inputs(name)
    a = ad.embed(xs)
    assert a.shape == (len(xs), DIM[_family(name)]) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.abs(a).max() > 0
    np.testing.assert_array_equal(ad.embed(xs), a)          # same output across calls
    meta = ad.metadata
    assert meta["adapter"] == name and meta["dim"] == ad.dim and meta["layer"]
    assert meta["pooling"] == "mean" and meta["package_version"]
    if name.startswith("random-"):
        assert meta["random_init"] is True and meta["seed"] == 0
        assert meta["checkpoint"] is None and meta["architecture_from"].endswith(".pth.tar")\
            or meta["architecture_from"].endswith(".pth")
    else:
        assert len(meta["checkpoint_sha256"]) == 64
        assert meta["checkpoint"].endswith((".pth.tar", ".pth", "state.pt", ".nnf"))


@pytest.mark.parametrize("name", REAL)
def test_batching_does_not_change_results(adapters, name):
    ad = adapters(name)
    xs = _inputs(name)
    _close(ad.embed(xs, batch_size=1), ad.embed(xs, batch_size=8))


@pytest.mark.parametrize("name", REAL)
def test_invariant_to_rotation_and_permutation(adapters, name):
    ad = adapters(name)
    rng = np.random.default_rng(7)
    xs = _inputs(name)
    ys = [_rotated_permuted(s, rng) for s in xs]
    _close(ad.embed(xs), ad.embed(ys))


@pytest.mark.parametrize("name", ["chgnet-0.3.0", "sevennet-0", "ani-1x", "diep"])
def test_poolings(adapters, name):
    xs = _inputs(name)[:3]
    ad = adapters(name)
    mean = ad.embed(xs)
    try:                       # same loaded model, other poolings (no reload)
        ad.pooling = "sum"
        total = ad.embed(xs)
        ad.pooling = "max"
        peak = ad.embed(xs)
    finally:
        ad.pooling = "mean"
    n = np.array([len(s.atoms) for s in xs])[:, None]
    _close(total, mean * n)
    assert (peak >= mean - 1e-5).all()


def test_chgnet_layer_option(adapters):
    last = adapters("chgnet-0.3.0")
    pen = adapters("chgnet-0.3.0", layer=-2)
    assert "atom_conv_layers[3]" in last.layer and "atom_conv_layers[2]" in pen.layer
    xs = _crystals()[:2]
    assert not np.allclose(last.embed(xs), pen.embed(xs))
    with pytest.raises(ValueError, match="layer must be an integer index"):
        adapters("chgnet-0.3.0", layer=4)


def test_chgnet_checkpoints_differ_but_correlate(adapters):
    xs = _crystals()
    a = adapters("chgnet-0.3.0").embed(xs)
    b = adapters("chgnet-0.2.0").embed(xs)
    assert not np.allclose(a, b)


def test_molecule_box_matches_isolated_molecule(adapters):
    """A bigger vacuum changes nothing once images are beyond the cutoff."""
    xs = _molecules()[:2]
    _close(adapters("chgnet-0.3.0").embed(xs), adapters("chgnet-0.3.0", vacuum=9.0).embed(xs))


def test_sevennet_mf_modal(adapters):
    xs = _crystals()[:2]
    pbe = adapters("sevennet-mf-0")
    r2 = adapters("sevennet-mf-0", modal="R2SCAN")
    assert pbe.metadata["modal"] == "PBE" and r2.metadata["modal"] == "R2SCAN"
    assert not np.allclose(pbe.embed(xs), r2.embed(xs))
    _needs("sevennet-mf-0")
    with pytest.raises(ValueError, match="unknown modal 'HSE'"):
        ma.adapters.get("sevennet-mf-0", modal="HSE")


def test_ani_energy_aev_and_elements(adapters):
    torch = pytest.importorskip("torch")
    ad = adapters("ani-1x")
    from ase.build import bulk, molecule

    h2o = molecule("H2O")
    z = torch.as_tensor(h2o.get_atomic_numbers()[None])
    pos = torch.tensor(h2o.positions[None], dtype=torch.float32)
    with torch.no_grad():
        energy = ad._model((z, pos)).energies.item()
    assert energy == pytest.approx(-76.3885, abs=1e-3)      # the hand-built ensemble is ANI-1x
    aev = adapters("ani-1x", features="aev")
    assert aev.dim == 384 and aev.embed(_molecules()).shape == (5, 384)
    one = adapters("ani-1x", member=3).embed(_molecules())
    assert not np.allclose(one, ad.embed(_molecules()))
    with pytest.raises(ValueError, match=r"structure 'nacl' contains element\(s\) Na, Cl"):
        ad.embed([Structure("nacl", atoms=bulk("NaCl", "rocksalt", a=5.64))])
    with pytest.raises(ValueError, match="features must be 'learned' or 'aev'"):
        ma.adapters.get("ani-1x", features="soap")


def test_random_init_seeds(adapters):
    torch = pytest.importorskip("torch")
    xs = _crystals()[:3]
    trained = adapters("chgnet-0.3.0").embed(xs)
    r0 = adapters("random-chgnet").embed(xs)
    state = torch.random.get_rng_state()
    again = ma.adapters.get("random-chgnet", seed=0).embed(xs)
    assert torch.equal(torch.random.get_rng_state(), state)   # caller's RNG untouched
    np.testing.assert_array_equal(r0, again)
    r1 = adapters("random-chgnet", seed=1).embed(xs)
    assert not np.allclose(r0, r1) and not np.allclose(r0, trained)
    assert adapters("random-chgnet", seed=1).metadata["seed"] == 1
    s0 = adapters("random-sevennet").embed(xs)
    assert not np.allclose(s0, adapters("sevennet-0").embed(xs))


def test_missing_atoms_is_a_clear_error(adapters):
    ad = adapters("chgnet-0.3.0")
    with pytest.raises(ValueError, match="reads 'atoms' but structure 'x' has none"):
        ad.embed([Structure("x", smiles="CCO")])


# -- bring-your-own checkpoints: error paths ---------------------------------------------------
BYO = {"mace": ("mace", "mace-torch", r"MACE \.model file"),
       "orb": ("orb_models", "orb-models", r"Orb weights file"),
       "mattersim": ("mattersim", "mattersim", r"mattersim-v1\.0\.0-1M\.pth"),
       "fairchem": ("fairchem.core", "fairchem-core", r"uma-s-1p1\.pt")}


@pytest.mark.parametrize("name", sorted(BYO))
def test_byo_needs_checkpoint(name):
    entry = ma.adapters.info(name)
    assert entry.offline is False and entry.dim is None
    with pytest.raises(ValueError, match=f"needs checkpoint=PATH: .*{BYO[name][2]}"):
        ma.adapters.get(name)


@pytest.mark.parametrize("name", sorted(BYO))
def test_byo_nonexistent_checkpoint(name, tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=f"nope.ckpt' does not exist; expected .*"
                                                f"{BYO[name][2]}"):
        ma.adapters.get(name, checkpoint=missing)


@pytest.mark.parametrize("name", sorted(BYO))
def test_byo_package_absent(name, tmp_path, monkeypatch):
    module, pip_name, _ = BYO[name]
    ckpt = tmp_path / "weights.bin"
    ckpt.write_bytes(b"\0")
    parts = module.split(".")
    for i in range(len(parts)):      # make the package unimportable even where installed
        monkeypatch.setitem(sys.modules, ".".join(parts[:i + 1]), None)
    # in this interpreter: ImportError naming the pip package
    with pytest.raises(ImportError, match=f"needs the package '{pip_name}'.*pip install "
                                          f"{pip_name}"):
        ma.adapters.get(name, checkpoint=ckpt, _in_process=True)
    # through the registry: the family's own environment, which does not exist here
    monkeypatch.setenv("MATALIGN_ENV_DIR", str(tmp_path / "no-envs"))
    family = ma.adapters.info(name).environment
    with pytest.raises(ma.envs.ModelEnvironmentError,
                       match=f"the '{family}' model environment does not exist at .*run "
                             f"`matalign env create {family}`"):
        ma.adapters.get(name, checkpoint=ckpt)
