"""Registry entries of the MLIP adapters (issue 5): offline CHGNet, SevenNet, ANI-1x, DIEP;
random-init baselines; bring-your-own-checkpoint MACE, Orb, MatterSim, fairchem."""

from __future__ import annotations

from . import register

_MLIP = dict(modality="atoms", family="mlip", extra="mlip")

for _tag, _model, _desc in (
        ("0.3.0", "0.3.0", "CHGNet 0.3.0 (MPtrj)"),
        ("0.2.0", "0.2.0", "CHGNet 0.2.0 (MPtrj, older)"),
        ("r2scan", "r2scan", "CHGNet r2SCAN transfer-learned (MP-r2SCAN)")):
    register(f"chgnet-{_tag}", dim=64, offline=True, package="chgnet",
             target="chgnet:chgnet", model=_model,
             description=f"{_desc}; last atom-conv layer, 64-d",
             parent="chgnet-0.3.0" if _tag == "r2scan" else "",
             layer_desc="atom_conv_layers[-1] output (last atom-conv layer, 64-d)", **_MLIP)

register("sevennet-0", dim=128, offline=True, package="sevenn", target="sevennet:sevennet",
         model="7net-0", description="SevenNet-0 (11Jul2024, MPtrj); 128x0e node features "
         "entering reduce_input_to_hidden", layer_desc="input of reduce_input_to_hidden (last interaction block, 128x0e)", **_MLIP)
register("sevennet-0-22may2024", dim=128, offline=True, package="sevenn",
         target="sevennet:sevennet", model="7net-0_22May2024",
         parent="sevennet-0", description="SevenNet-0 22May2024: the earlier release of "
         "SevenNet-0, same architecture and data (a replicate; the control for near-duplicate "
         "checkpoints); 128x0e node features entering reduce_input_to_hidden", layer_desc="input of reduce_input_to_hidden (last interaction block, 128x0e)", **_MLIP)
register("sevennet-l3i5", dim=128, offline=True, package="sevenn", target="sevennet:sevennet",
         model="7net-l3i5", description="SevenNet-l3i5 (lmax 3, 5 layers, MPtrj); 128x0e node "
         "features entering reduce_input_to_hidden", layer_desc="input of reduce_input_to_hidden (last interaction block, 128x0e)", **_MLIP)
register("sevennet-mf-0", dim=128, offline=True, package="sevenn", target="sevennet:sevennet",
         model="7net-mf-0", modal="PBE", description="SevenNet-MF-0 multi-fidelity (modal "
         "'PBE' or 'R2SCAN'); 128x0e node features entering reduce_input_to_hidden",
         parent="sevennet-0", layer_desc="input of reduce_input_to_hidden (last interaction block, 128x0e)", **_MLIP)
register("ani-1x", dim=96, offline=True, package="torchani==2.2.4", target="ani:ani1x",
         description="ANI-1x 8-model ensemble (torchani 2.2.4 resources); H C N O molecules; "
         "last hidden layer of the element MLPs, ensemble mean (features='aev': 384-d)",
         layer_desc="last hidden layer of the element MLPs (input of the 96->1 readout), "
         "ensemble mean", **_MLIP)
register("ani-1ccx", dim=96, offline=True, package="torchani==2.2.4", target="ani:ani1ccx",
         parent="ani-1x", description="ANI-1ccx 8-model ensemble (ANI-1x transfer-learned to "
         "CCSD(T)/CBS), read from a torchani 0.3-2.0 wheel file (wheel=PATH or "
         "MATALIGN_TORCHANI_WHEEL; `pip download --no-deps torchani==2.0`); H C N O",
         layer_desc="last hidden layer of the element MLPs (input of the 96->1 readout), "
         "ensemble mean", **_MLIP)
register("diep", dim=64, offline=True, package="diep", target="diep:diep_adapter",
         description="DIEP fold1 (MatPES r2SCAN; new 2026 package); gc_3 node features",
         layer_desc="gc_3 node features (last graph-convolution block)", **_MLIP)

register("random-chgnet", modality="atoms", dim=64, offline=True, family="random",
         package="chgnet", extra="mlip", target="random_init:random_chgnet", seed=0,
         description="CHGNet 0.3.0 architecture, random weights from seed= (baseline)",
         layer_desc="atom_conv_layers[-1] output (last atom-conv layer, 64-d)")
register("random-sevennet", modality="atoms", dim=128, offline=True, family="random",
         package="sevenn", extra="mlip", target="random_init:random_sevennet", seed=0,
         description="SevenNet-0 architecture, random weights from seed= (baseline)",
         layer_desc="input of reduce_input_to_hidden (last interaction block, 128x0e)")

# Families in their own environments (``matalign env create FAMILY``; run in a worker).
register("mace", dim=None, offline=False, package="mace-torch", target="byo_mlip:mace",
         environment="mace", description="MACE-MP/OFF/OMAT from checkpoint=PATH (.model); "
         "l=0 node features of every interaction layer (features='equivariant': all irreps)",
         **_MLIP)
register("mace-mp-0-small", dim=None, offline=False, package="mace-torch",
         target="byo_mlip:mace", environment="mace", adapter_name="mace-mp-0-small",
         model_size="small", description="MACE-MP-0 small from checkpoint=PATH "
         "(2023-12-10-mace-128-L0_energy_epoch-249.model; allow_download=True fetches it)",
         **_MLIP)
register("random-mace", modality="atoms", dim=None, offline=True, family="random",
         package="mace-torch", extra="mlip", target="byo_mlip:mace", environment="mace",
         random_init=True, seed=0, description="MACE-MP-0 medium architecture (128x0e+128x1o, "
         "2 interactions), random weights from seed= (baseline)")
register("orb", dim=None, offline=False, package="orb-models", target="byo_mlip:orb",
         environment="orb", description="Orb v2/v3 from checkpoint=PATH (.ckpt) and "
         "architecture=; node_features", **_MLIP)
register("random-orb", modality="atoms", dim=256, offline=True, family="random",
         package="orb-models", extra="mlip", target="byo_mlip:orb", environment="orb",
         random_init=True, seed=0, description="Orb-v3 conservative (inf, omat) architecture, "
         "random weights from seed= (baseline)")
register("mattersim", dim=None, offline=False, package="mattersim",
         target="byo_mlip:mattersim", environment="mattersim",
         description="MatterSim 1M/5M from checkpoint=PATH (.pth); input of the final "
         "per-atom readout", **_MLIP)
register("random-mattersim", modality="atoms", dim=128, offline=True, family="random",
         package="mattersim", extra="mlip", target="byo_mlip:mattersim",
         environment="mattersim", random_init=True, seed=0,
         description="MatterSim M3GNet architecture (package defaults), random weights from "
         "seed= (baseline)")
register("fairchem", dim=None, offline=False, package="fairchem-core",
         target="byo_mlip:fairchem", environment="fairchem",
         description="UMA/eSEN from checkpoint=PATH; l=0 node embeddings", **_MLIP)
register("random-esen", modality="atoms", dim=128, offline=True, family="random",
         package="fairchem-core", extra="mlip", target="byo_mlip:fairchem",
         environment="fairchem", random_init=True, seed=0,
         description="eSEN backbone (fairchem eSCNMDBackbone, 4 layers, 128 channels, lmax 2), "
         "random weights from seed= (baseline)")
