"""Embedding store and embed pipeline: throughput and overhead.

Part 1, the store, against a bare ``np.save`` of the same (N, D) float32 array (default
200,000 x 256 = 205 MB), in one process on the same data:

* write: ``np.save`` (no fsync, as most code does), ``np.save`` + fsync (what crash safety
  needs at least), the store writer alone (per chunk: rows written in place and fsync'd, an
  fsync'd journal line; at the end every chunk hash is checked, the header written and the
  file renamed into place, ids and manifest written), and the whole
  ``ma.embed`` pipeline with a trivial adapter that returns rows of the array (Structure
  records, batching, adapter checks, progress, store);
* read: ``np.load`` into RAM versus ``open_store`` (verify=False: manifest, ids, header and
  size checks; verify=True: also SHA-256 of all data) and a full copy out of the memmap.

Agreement is checked before a row is printed: the store's ``embeddings.npy`` must be
byte-identical to the ``np.save`` file and its memmap equal to the array. Reads are served
from the page cache (the file was just written); best of ``--repeat`` runs.

Part 2: structures per second through ``ma.embed`` (store included, ``skip_bad=True``) for
every offline adapter in ``matalign.adapters.list(offline=True)`` that is installed, on the
first ``--adapter-n`` structures of a shipped set of its modality (crystals: ``mptrj``;
molecules with 3D atoms: ``g2``; SMILES: ``nci``; sequences: a seeded mutant scan). Model
loading and a warm-up batch are timed separately. Part 2 runs only when asked for: all 17
offline adapters take about 5 minutes on 2 shared cores (the MLIPs run at 1-5 structures/s
there), the descriptors a few seconds.

    python bench/bench_embed.py                               # part 1 only, ~20 s
    python bench/bench_embed.py --n 1000000 --dim 512
    python bench/bench_embed.py --skip-store --adapters composition,morgan,soap
    python bench/bench_embed.py --skip-store --adapters all   # ~5 min on 2 cores

Part 3 (``--vs-package``): each model family's adapter against its package's own inference
on the same structures (the first ``--adapter-n`` of a shipped set: ``mptrj`` crystals,
HCNO ``g2`` molecules for ANI, seeded ``peptides`` for the protein models, their sequences
for ESM-2, ``nci`` SMILES for ChemBERTa), both batched the same way (groups of at most
``--max-atoms`` atoms, or ``--adapter-batch`` strings), both without gradients, on
``--device``, graph building and tokenising included on both sides. Runs alternate in ABBA
order (embed, package, package, embed, ...), best of ``--repeat`` each after a warm-up pass;
a pass shorter than a second is repeated until it is not, so that scheduling noise on a
shared machine averages out. The 1-minute load average before and after is printed.
Families that live in their own environment (``matalign env create``) are timed inside it
(this script re-runs itself with that environment's Python) with random-init weights of the
real architecture (timing does not depend on the weights' values):

    chgnet       chgnet-0.3.0 embed      vs  CHGNet.predict_structure(task="e", batch_size=B)
    sevennet     sevennet-0 embed        vs  the model's forward without force_output
    ani1ccx      ani-1ccx embed          vs  torchani model((species, coordinates)).energies
    proteinmpnn  proteinmpnn embed       vs  ProteinMPNN.forward (encoder + decoder), padded
    esm2         esm2-random embed       vs  ESM2(tokens) from the alphabet's batch converter
    antiberty    antiberty embed         vs  AntiBERTyRunner.embed (its AntiBERTy model, heads
                                             and all; built by hand under transformers 5)
    chemberta    random-chemberta embed  vs  tokenizer + RobertaModel(**enc)
    mace         random-mace embed       vs  model(batch, compute_force=False)["energy"]
    orb          random-orb embed        vs  the energy head on the GNS backbone (model.model)
    mattersim    random-mattersim        vs  M3Gnet forward (energies)
    fairchem     random-esen embed       vs  eSEN backbone + MLP energy head (batched)

    python bench/bench_embed.py --skip-store --vs-package all --adapter-n 12 --threads 1
    python bench/bench_embed.py --skip-store --vs-package chgnet,mace --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import matalign as ma  # noqa: E402
from matalign.adapters import Adapter  # noqa: E402
from matalign.datasets import Dataset  # noqa: E402
from matalign.store import _StoreWriter  # noqa: E402
from matalign.structures import Structure  # noqa: E402


class _RowAdapter(Adapter):
    """Returns row i of a fixed array for structure id 'r<i>': the pipeline's own cost."""

    name, modality, layer = "rows", "smiles", "none"

    def __init__(self, X):
        super().__init__()
        self.X = X
        self.dim = X.shape[1]

    def _embed_batch(self, batch):
        return self.X[[int(s.id[1:]) for s in batch]]


class _Rows(Dataset):
    name, modality = "rows", ("smiles",)

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield Structure(f"r{i}", smiles="C")

    def __len__(self):
        return self.n


def _best(fn, repeat, setup=None):
    times, result = [], None
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def _fresh(path):
    def setup():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    return setup


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def bench_store(args, work):
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    ids = [f"r{i}" for i in range(args.n)]
    nbytes = X.nbytes
    npy = os.path.join(work, "bare.npy")
    store_dir = os.path.join(work, "store")
    embed_dir = os.path.join(work, "embed")
    chunk = args.chunk_size

    def save_fsync():
        with open(npy, "wb") as f:
            np.save(f, X)
            f.flush()
            os.fsync(f.fileno())

    def write_store():
        header = {"matalign_version": ma.__version__, "dtype": "float32", "dim": args.dim,
                  "chunk_size": chunk, "batch_size": chunk, "skip_bad": False,
                  "adapter": {"adapter": "rows"}, "dataset": {"name": "rows"}}
        w = _StoreWriter(store_dir, header, resume=False)
        for a in range(0, args.n, chunk):
            b = min(a + chunk, args.n)
            w.commit(X[a:b], ids[a:b], [], b - a)
        return w.finalize()

    def run_embed():
        return ma.embed(_Rows(args.n), _RowAdapter(X), embed_dir, chunk_size=chunk,
                        batch_size=args.batch_size, progress=False)

    t_save, _ = _best(lambda: np.save(npy, X), args.repeat, _fresh(npy))
    t_save_sync, _ = _best(save_fsync, args.repeat, _fresh(npy))
    t_store, store = _best(write_store, args.repeat, _fresh(store_dir))
    t_embed, estore = _best(run_embed, 1, _fresh(embed_dir))
    # Agreement before any row: byte-identical array file, equal memmaps.
    with open(npy, "rb") as f1, open(os.path.join(store_dir, "embeddings.npy"), "rb") as f2:
        identical = f1.read() == f2.read()
    if not identical or not np.array_equal(store.embeddings, X) \
            or not np.array_equal(estore.embeddings, X) or estore.ids != tuple(ids):
        raise SystemExit("DISAGREEMENT: the store's embeddings differ from the array")
    t_load, _ = _best(lambda: np.load(npy), args.repeat)
    t_open, _ = _best(lambda: ma.open_store(store_dir, verify=False), args.repeat)
    t_verify, _ = _best(lambda: ma.open_store(store_dir, verify=True), args.repeat)
    t_copy, _ = _best(lambda: np.array(ma.open_store(store_dir, verify=False).embeddings),
                      args.repeat)
    t_mmap_sum, _ = _best(lambda: float(ma.open_store(store_dir, verify=False)
                                        .embeddings.sum(dtype=np.float64)), args.repeat)

    overhead = _dir_bytes(store_dir) - os.path.getsize(npy)
    print(f"\nstore: N={args.n:,} D={args.dim} float32 ({C.fmt_bytes(nbytes)}), chunk_size="
          f"{chunk} ({-(-args.n // chunk)} chunks), batch_size={args.batch_size}, best of "
          f"{args.repeat}; embeddings.npy byte-identical to np.save: {identical}; store size "
          f"overhead {C.fmt_bytes(overhead)} (ids.txt + manifest.json)")
    table = C.Table(["operation", "time (s)", "MB/s", "rows/s", "vs np.save", "vs np.save+fsync"])
    table.print_header()

    def row(name, t, base=True):
        table.add([name, C.fmt_s(t), f"{nbytes / t / 1e6:,.0f}", f"{args.n / t:,.0f}",
                   f"{t / t_save:.2f}x" if base else "—",
                   f"{t / t_save_sync:.2f}x" if base else "—"])

    row("write: np.save", t_save)
    row("write: np.save + fsync", t_save_sync)
    row("write: store writer (chunks + journal + seal)", t_store)
    row("write: ma.embed pipeline, trivial adapter (1 run)", t_embed)
    table.add(["read: np.load (into RAM)", C.fmt_s(t_load), f"{nbytes / t_load / 1e6:,.0f}",
               f"{args.n / t_load:,.0f}", "1.00x (reference)", "—"])
    for name, t in (("read: open_store(verify=False)", t_open),
                    ("read: open_store(verify=True), SHA-256 of all data", t_verify),
                    ("read: open (no verify) + copy memmap into RAM", t_copy),
                    ("read: open (no verify) + sum over the memmap", t_mmap_sum)):
        table.add([name, C.fmt_s(t), f"{nbytes / t / 1e6:,.0f}", f"{args.n / t:,.0f}",
                   f"{t / t_load:.2f}x np.load", "—"])


_SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"


def _structures(info, n):
    """First n structures of a shipped set for this adapter, or (None, reason)."""
    datasets = ma.datasets
    try:
        if info.modality == "smiles":
            name, data = "nci", datasets.get("nci")
        elif info.modality == "sequence":
            name, data = "mutant scan", datasets.mutant_scan({"p": _SEQUENCE}, n=n, seed=0)
        elif "molecule" in info.description or info.name.startswith("ani"):
            name, data = "g2", datasets.get("g2")
        else:
            name, data = "mptrj", datasets.get("mptrj")
        return name, list(itertools.islice(iter(data), n))
    except Exception as exc:  # a dataset that is not there: skip with the reason
        return None, f"{type(exc).__name__}: {exc}"


def bench_adapters(args, work):
    infos = ma.adapters.list(offline=True)
    if args.adapters != "all":
        wanted = args.adapters.split(",")
        known = {info.name for info in infos}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise SystemExit(f"--adapters: not offline adapters: {unknown}; choose from "
                             f"{sorted(known)}")
        infos = [info for info in infos if info.name in wanted]
    print(f"\nadapters: ma.embed (store included, skip_bad=True, batch_size="
          f"{args.adapter_batch}) on the first {args.adapter_n} structures of a shipped set; "
          f"load = building the adapter, warm-up = one batch of 4 (both excluded)")
    table = C.Table(["adapter", "modality", "D", "dataset", "embedded", "skipped", "load (s)",
                     "warm-up (s)", "embed (s)", "structures/s"])
    table.print_header()
    for info in infos:
        t0 = time.perf_counter()
        try:
            adapter = ma.adapters.get(info.name)
        except Exception as exc:
            print(f"| {info.name} | skipped: {type(exc).__name__}: {str(exc)[:150]} |",
                  flush=True)
            continue
        t_load = time.perf_counter() - t0
        dname, structures = _structures(info, args.adapter_n)
        if dname is None:
            print(f"| {info.name} | skipped: no shipped dataset ({structures}) |", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            for s in structures[:4]:
                try:
                    adapter.embed_batch([s])
                except Exception:
                    pass
        finally:
            t_warm = time.perf_counter() - t0
        out = os.path.join(work, f"adapter-{info.name}")
        t0 = time.perf_counter()
        try:
            store = ma.embed(structures, adapter, out, batch_size=args.adapter_batch,
                             skip_bad=True, progress=False)
        except Exception as exc:
            print(f"| {info.name} | failed: {type(exc).__name__}: {str(exc)[:150]} |",
                  flush=True)
            continue
        t_embed = time.perf_counter() - t0
        ok = len(store)
        if store.shape != (ok, adapter.dim) or not np.isfinite(store.embeddings).all():
            raise SystemExit(f"DISAGREEMENT: {info.name} store has shape {store.shape}")
        table.add([info.name, info.modality, str(adapter.dim), dname, str(ok),
                   str(len(store.skipped)), C.fmt_s(t_load), C.fmt_s(t_warm), C.fmt_s(t_embed),
                   f"{len(structures) / t_embed:,.1f}"])
        del adapter, store
        shutil.rmtree(out, ignore_errors=True)


# -- part 3: adapters against their package's own inference ----------------------------------

#: family -> (adapter, environment, structures, what the package's own inference is)
_VS = {
    "chgnet": ("chgnet-0.3.0", "main", "mptrj",
               'CHGNet.predict_structure(task="e", batch_size=B)'),
    "sevennet": ("sevennet-0", "main", "mptrj",
                 "the SevenNet model's forward without its force_output module (energy only)"),
    "ani1ccx": ("ani-1ccx", "main", "g2", "torchani model((species, coordinates)).energies"),
    "proteinmpnn": ("proteinmpnn", "main", "peptides",
                    "ProteinMPNN.forward (encoder + decoder -> log-probabilities), padded batch"),
    "esm2": ("esm2-random", "main", "sequences",
             "ESM2(tokens) from alphabet.get_batch_converter() (logits)"),
    "antiberty": ("antiberty", "main", "sequences",
                  "AntiBERTyRunner.embed(sequences): BertTokenizer + the package's AntiBERTy "
                  "(BERT + MLM/species/chain/graft heads), all hidden states, padded batch"),
    "chemberta": ("random-chemberta", "main", "nci",
                  "tokenizer(SMILES) + RobertaModel(**enc) (last hidden state)"),
    "mace": ("random-mace", "mace", "mptrj", 'model(batch, compute_force=False)["energy"]'),
    "orb": ("random-orb", "orb", "mptrj", "the energy head on the GNS backbone (model.model)"),
    "mattersim": ("random-mattersim", "mattersim", "mptrj", "M3Gnet forward (energies)"),
    "fairchem": ("random-esen", "fairchem", "mptrj", "eSEN backbone + MLP energy head"),
}


def _groups(structures, max_atoms):
    """Consecutive groups of at most max_atoms atoms (a larger structure goes alone)."""
    out, cur, n = [], [], 0
    for s in structures:
        k = len(s.atoms) if s.atoms is not None else len(s.sequence or s.smiles)
        if cur and n + k > max_atoms:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += k
    if cur:
        out.append(cur)
    return out


def _vs_structures(kind, n):
    if kind == "mptrj":
        return list(itertools.islice(iter(ma.datasets.get("mptrj")), n))
    if kind == "g2":   # the molecules of H, C, N, O only (what ANI-1ccx knows)
        return list(itertools.islice((s for s in ma.datasets.get("g2")
                                      if set(s.atoms.numbers) <= {1, 6, 7, 8}), n))
    if kind == "nci":
        return list(itertools.islice(iter(ma.datasets.get("nci")), n))
    if kind in ("peptides", "sequences"):   # 20-60 residues, seeded
        peps = list(ma.datasets.get("peptides", n=n, seed=0))
        if kind == "sequences":
            return [Structure(s.id, sequence=s.sequence) for s in peps]
        return peps
    raise ValueError(kind)


class _Package:
    """The package's own inference of one group, with everything it needs set up once."""

    def __init__(self, family, adapter):
        import torch

        self.family, self.adapter, self.torch = family, adapter, torch
        if family == "sevennet":
            import copy

            self.model = copy.deepcopy(adapter._model)
            self.model.delete_module_by_key("force_output")
        elif family == "esm2":
            self.convert = adapter._alphabet.get_batch_converter()
        elif family == "antiberty":
            self.runner = _antiberty_runner(adapter.device)

    def __call__(self, group):
        torch, adapter, fam = self.torch, self.adapter, self.family
        if fam == "chgnet":
            from pymatgen.io.ase import AseAtomsAdaptor

            from matalign.adapters._mlip_common import boxed

            structs = [AseAtomsAdaptor.get_structure(boxed(s.atoms, adapter.vacuum))
                       for s in group]
            return adapter._model.predict_structure(structs, task="e", batch_size=len(structs))
        if fam == "sevennet":
            import sevenn._keys as KEY
            from sevenn.atom_graph_data import AtomGraphData
            from sevenn.train.dataload import unlabeled_atoms_to_graph
            from torch_geometric.data import Batch

            graphs = [AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(s.atoms, adapter._cutoff, with_shift=False))
                for s in group]
            with torch.no_grad():
                out = self.model(Batch.from_data_list(graphs).to(adapter.device))
            return out[KEY.PRED_TOTAL_ENERGY].cpu().numpy()
        if fam == "ani1ccx":
            n_max = max(len(s.atoms) for s in group)
            species = torch.full((len(group), n_max), -1, dtype=torch.long)
            coords = torch.zeros((len(group), n_max, 3), dtype=torch.float32)
            for i, s in enumerate(group):
                species[i, :len(s.atoms)] = torch.as_tensor(s.atoms.numbers)   # Z (the
                # built-in model maps atomic numbers itself: periodic_table_index=True)
                coords[i, :len(s.atoms)] = torch.as_tensor(s.atoms.positions)
            with torch.no_grad():
                return adapter._model((species, coords)).energies.numpy()
        if fam == "proteinmpnn":
            from matalign.adapters.proteinmpnn import backbone

            bb = [backbone(s) for s in group]
            L = max(len(r) for _, r in bb)
            X = torch.zeros((len(bb), L, 4, 3))
            mask = torch.zeros((len(bb), L))
            res = torch.zeros((len(bb), L), dtype=torch.long)
            for i, (x, r) in enumerate(bb):
                X[i, :len(r)] = torch.from_numpy(x.astype(np.float32))
                mask[i, :len(r)] = 1
                res[i, :len(r)] = torch.from_numpy(r - r[0])
            S = torch.zeros((len(bb), L), dtype=torch.long)
            with torch.inference_mode():
                return adapter._model(X, S, mask, mask, res, mask.long(),
                                      torch.zeros((len(bb), L))).numpy()
        if fam == "esm2":
            _, _, toks = self.convert([(s.id, s.sequence) for s in group])
            with torch.inference_mode():
                return adapter._model(toks)["logits"].numpy()
        if fam == "antiberty":
            return self.runner.embed([s.sequence for s in group])
        if fam == "chemberta":
            with torch.inference_mode():
                enc = adapter._tokenizer([s.smiles for s in group], padding=True,
                                         truncation=True, max_length=adapter.max_length,
                                         return_tensors="pt")
                return adapter._model(**enc).last_hidden_state.numpy()
        atoms = [adapter._prepare(s) for s in group]
        return adapter.energies(atoms)


def _antiberty_runner(device):
    """The package's AntiBERTyRunner with the shipped weights, built by hand: under
    transformers 5 its ``from_pretrained`` fails (the class calls ``init_weights``, not
    ``post_init``) and ``BertTokenizer(vocab_file=...)`` gets an empty vocabulary, so the
    model class is constructed with ``init_weights`` skipped, every weight loaded strictly,
    and the tokenizer given the vocabulary as a dict. Its ``embed`` is then the package's."""

    import torch
    import transformers
    from antiberty import AntiBERTyRunner
    from antiberty.AntiBERTyRunner import CHECKPOINT_PATH, VOCAB_FILE
    from antiberty.model.AntiBERTy import AntiBERTy

    cfg = transformers.BertConfig.from_json_file(f"{CHECKPOINT_PATH}/config.json")
    saved = AntiBERTy.init_weights
    AntiBERTy.init_weights = lambda self: None
    try:
        model = AntiBERTy(cfg)
    finally:
        AntiBERTy.init_weights = saved
    state = torch.load(f"{CHECKPOINT_PATH}/pytorch_model.bin", map_location="cpu",
                       weights_only=True)
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("position_ids")})
    runner = object.__new__(AntiBERTyRunner)
    runner.device = torch.device(device)
    runner.model = model.to(runner.device).eval()
    with open(VOCAB_FILE) as f:
        vocab = {t.strip(): i for i, t in enumerate(f) if t.strip()}
    runner.tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=False)
    transformers.utils.logging.set_verbosity_error()   # "use_return_dict is deprecated"
    return runner


def vs_package_inner(family, args):
    """Time one family here (this interpreter has its package); returns a result dict."""
    import torch

    name, env, kind, _ = _VS[family]
    torch.set_num_threads(max(1, args.threads or torch.get_num_threads()))
    opts = {"device": args.device} if family not in ("esm2", "chemberta") else {}
    if env != "main":
        opts["max_atoms"] = args.max_atoms
    t0 = time.perf_counter()
    adapter = ma.adapters.get(name, _in_process=True, **opts) if env != "main" \
        else ma.adapters.get(name, **opts)
    t_load = time.perf_counter() - t0
    structures = _vs_structures(kind, args.adapter_n)
    if kind in ("nci", "sequences"):   # text: groups of --adapter-batch strings
        groups = [structures[i:i + args.adapter_batch]
                  for i in range(0, len(structures), args.adapter_batch)]
    else:
        groups = _groups(structures, args.max_atoms)
    n_atoms = sum(len(s.atoms) if s.atoms is not None else len(s.sequence or s.smiles)
                  for s in structures)
    package = _Package(family, adapter)

    inner = 1

    def embed():
        for _ in range(inner):
            for g in groups:
                adapter.embed_batch(g)

    def pkg():
        for _ in range(inner):
            for g in groups:
                package(g)

    # Warm-up (lazy initialisation, caches); a pass shorter than a second is repeated
    # `inner` times per timing, so that scheduling noise on a shared machine averages out.
    inner = max(1, int(np.ceil(1.0 / min(_timed(embed), _timed(pkg)))))
    t_embed, t_pkg = [], []
    load = [os.getloadavg()[0]]
    for r in range(args.repeat):     # alternating, ABBA: embed, package, package, embed, ...
        with torch.inference_mode() if family == "chgnet" else _null():
            for which in ((embed, pkg) if r % 2 == 0 else (pkg, embed)):
                (t_embed if which is embed else t_pkg).append(_timed(which))
    load.append(os.getloadavg()[0])
    return {"family": family, "adapter": name, "dim": int(adapter.dim), "n": len(structures),
            "atoms": n_atoms, "groups": len(groups), "device": args.device, "data": kind,
            "load_s": t_load, "embed_s": min(t_embed) / inner,
            "package_s": min(t_pkg) / inner, "inner": inner,
            "embed_all": t_embed, "package_all": t_pkg, "loadavg": load,
            "torch_threads": torch.get_num_threads()}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spread(times):
    """Slowest over fastest run, as a percentage above 1 (the noise of that side)."""
    return f"+{100 * (max(times) / min(times) - 1):.0f}%"


def bench_vs_package(args):
    import importlib.util
    import json
    import subprocess

    import matalign.envs as envs

    fams = list(_VS) if args.vs_package == "all" else args.vs_package.split(",")
    unknown = [f for f in fams if f not in _VS]
    if unknown:
        raise SystemExit(f"--vs-package: unknown families {unknown}; choose from {list(_VS)}")
    print(f"\nadapters vs their package's own inference: first {args.adapter_n} structures "
          f"of each set, groups of <= {args.max_atoms} atoms (residues) or of "
          f"{args.adapter_batch} strings, device {args.device}, torch threads "
          f"{args.threads or 'default'}, alternating embed/package runs (ABBA order), best of "
          f"{args.repeat} (after a warm-up pass); random-init weights outside "
          f"the main environment; spread = slowest over fastest run of each side; loadavg = "
          f"1-minute load average before/after")
    table = C.Table(["family", "adapter", "data", "D", "N", "atoms", "groups", "load (s)",
                     "embed (structures/s)", "package (structures/s)", "embed / package",
                     "spread embed / package", "loadavg"])
    table.print_header()
    for fam in fams:
        env = _VS[fam][1]
        try:
            if env == "main" or importlib.util.find_spec(envs.spec(env).module) is not None:
                res = vs_package_inner(fam, args)
            else:
                py = envs.find(env)
                cmd = [str(py), os.path.abspath(__file__), "--skip-store", "--inner", fam,
                       "--adapter-n", str(args.adapter_n), "--max-atoms", str(args.max_atoms),
                       "--adapter-batch", str(args.adapter_batch), "--repeat",
                       str(args.repeat), "--device", args.device, "--threads", str(args.threads)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip()
                                       else f"exit code {r.returncode}")
                res = json.loads(r.stdout.strip().splitlines()[-1])
        except Exception as exc:  # noqa: BLE001  (a family that cannot run: say why)
            print(f"| {fam} | skipped: {type(exc).__name__}: {str(exc)[:200]} |", flush=True)
            continue
        e_rate, p_rate = res["n"] / res["embed_s"], res["n"] / res["package_s"]
        table.add([fam, res["adapter"], res["data"], str(res["dim"]), str(res["n"]),
                   str(res["atoms"]), str(res["groups"]), C.fmt_s(res["load_s"]),
                   f"{e_rate:,.1f}", f"{p_rate:,.1f}", f"{e_rate / p_rate:.2f}x",
                   f"{_spread(res['embed_all'])} / {_spread(res['package_all'])}",
                   "/".join(f"{x:.1f}" for x in res["loadavg"])])
    for fam in fams:
        print(f"  {fam}: package = {_VS[fam][3]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapter-n", type=int, default=32)
    parser.add_argument("--adapter-batch", type=int, default=16)
    parser.add_argument("--adapters", default=None, metavar="all|NAME,NAME",
                        help="also time these offline adapters (part 2); default: none")
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--vs-package", default=None, metavar="all|FAMILY,FAMILY",
                        help="part 3: adapters vs their package's energy-only prediction")
    parser.add_argument("--max-atoms", type=int, default=1024,
                        help="atoms per forward pass in part 3")
    parser.add_argument("--device", default="cpu", help="torch device for part 3")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmpdir", default=None, help="where to write (default: $TMPDIR)")
    args = parser.parse_args(argv)
    if args.inner:   # one family, inside its environment: print one JSON line
        import json

        print(json.dumps(vs_package_inner(args.inner, args)))
        return
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: no CUDA device is available here")
    for line in C.header_lines():
        print(line)
    print(f"command: {C.command_line()}")
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as work:
        if not args.skip_store:
            bench_store(args, work)
        if args.adapters:
            bench_adapters(args, work)
        if args.vs_package:
            bench_vs_package(args)


if __name__ == "__main__":
    main()
