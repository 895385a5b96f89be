"""The report on a version-2 run directory (tests/rundir_fixture.py writes a synthetic one).

Expected numbers are recomputed here from the run's own JSON files with NumPy (float64), never
taken from the report code; the figure functions are wrapped to record what they were asked to
draw.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.image import imread

import matalign.plots as plots
from matalign.report import load_run, model_order, render
from rundir_fixture import (FAMILIES, MODELS, NEAR_DUPLICATES, RANDOM, SETS, TREE_ORDER,
                            make_run_v2)

PAIR_METRICS = ["cknna", "mutual_knn", "cka", "information_imbalance"]


def _contrast(rgb, text_rgb):
    def lum(c):
        c = np.asarray(c, float)
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    a, b = sorted([lum(rgb[:3]), lum(text_rgb)], reverse=True)
    return (a + 0.05) / (b + 0.05)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One render of the synthetic run, with every figure call recorded."""
    root = make_run_v2(tmp_path_factory.mktemp("v2") / "run")
    calls = {}
    wrapped = {}
    for name in ("heatmap", "difference_heatmap", "trend", "imbalance_plane",
                 "reference_vs_error", "newick_tree", "intrinsic_dimension_bars",
                 "heatmaps_side_by_side"):
        original = getattr(plots, name)

        def spy(*args, _name=name, _orig=original, **kwargs):
            calls.setdefault(_name, []).append((args, kwargs))
            return _orig(*args, **kwargs)

        wrapped[name] = original
        setattr(plots, name, spy)
    try:
        page = render(root, reference="beta-1", top=7)
    finally:
        for name, original in wrapped.items():
            setattr(plots, name, original)
    return root, page.read_text(encoding="utf-8"), calls


def _matrix(root, set_name, metric):
    data = json.loads((root / "sets" / set_name / "matrix.json").read_text())
    names = data["names"]
    pos = [names.index(m) for m in MODELS]
    return np.asarray(data["metrics"][metric], dtype=np.float64)[np.ix_(pos, pos)]


def test_load_run_reads_version_2(rendered):
    root, _, _ = rendered
    run = load_run(root)
    assert run["version"] == 2
    assert [s["kind"] for s in run["sets"]] == [k for _, _, k, _, _ in SETS]
    assert run["tree_obj"]["method"] == "nj-sqrt-jsd"
    assert run["error_functional"]["alpha-2"] == "r2SCAN"
    assert len(run["findings_obj"]) == 2
    s0 = run["sets"][0]
    stats = json.loads((root / "sets/id/stats.json").read_text())
    assert s0["id_intervals"]["beta-1"] == (stats["intrinsic_dimension"]["beta-1"]["low"],
                                            stats["intrinsic_dimension"]["beta-1"]["high"])
    assert len(s0["structures_obj"]) == s0["n"]
    assert model_order(run) == TREE_ORDER


def test_model_order_without_tree_clusters_the_id_cknna(tmp_path):
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    root = make_run_v2(tmp_path / "run", n=80, with_optional=False, sets=["id"])
    run = load_run(root)
    v = _matrix(root, "id", "cknna")
    d = 1.0 - (v + v.T) / 2
    np.fill_diagonal(d, 0.0)
    expected = [MODELS[i] for i in leaves_list(linkage(squareform(np.clip(d, 0, None)),
                                                       "average"))]
    assert model_order(run) == expected
    text = render(root).read_text()
    assert "No findings.json" in text and "no tree.json" in text
    assert "No per-model errors" in text and "No OOD or ladder set" in text


def test_every_panel_uses_one_model_order(rendered):
    _, _, calls = rendered
    orders = [list(kw["order"]) for name in ("heatmap", "difference_heatmap",
                                              "heatmaps_side_by_side")
              for _, kw in calls[name]]
    assert len(orders) == 4 * 4 + 3 * 4 + 1
    assert all(o == TREE_ORDER for o in orders)
    args, _ = calls["intrinsic_dimension_bars"][0]
    assert list(args[1]) == TREE_ORDER


def test_heatmap_titles_carry_n_k_and_preprocessing(rendered):
    root, text, calls = rendered
    for args, kw in calls["heatmap"]:
        assert "N = 120, k = 10, preprocessing: center, l2, no clip_quantile" in kw["title"]
    svg = (root / "plots" / "heatmap_molecules_cknna.svg").read_text()
    assert "N = 120, k = 10" in svg and "preprocessing: center, l2" in svg
    assert "N = 120, k = 10, preprocessing: center, l2, no clip_quantile" in text


def test_difference_maps_are_ood_minus_id(rendered):
    root, _, calls = rendered
    seen = set()
    for args, kw in calls["difference_heatmap"]:
        diff, names, metric = args
        set_name = next(s for s, label, *_ in SETS if kw["title"].split(":")[1].strip()
                        .startswith(label))
        expected = _matrix(root, set_name, metric) - _matrix(root, "id", metric)
        np.testing.assert_allclose(diff, expected, rtol=0, atol=1e-12)
        seen.add((set_name, metric))
    assert seen == {(s, m) for s, *_ in SETS[1:] for m in PAIR_METRICS}


def test_trend_lines_follow_the_ladder_with_intervals(rendered):
    root, _, calls = rendered
    (args, kw), (kargs, _) = calls["trend"]
    panels = dict(args[0])
    # The k sweep of the id set: every trained pair, values from ksweep.json.
    ksweep = json.loads((root / "sets/id/ksweep.json").read_text())
    kpanels = dict(kargs[0])
    key = next(k for k in kpanels if k.startswith("CKNNA ("))
    assert len(kpanels[key]) == 6 and key == "CKNNA (6 of 6 trained pairs)"
    ks, vals, lows, highs = kpanels[key]["beta-1, gamma-1"]
    assert [ks, vals, lows, highs] == [list(x) for x in zip(*ksweep["cknna"]["beta-1|gamma-1"])]
    trained = [m for m in TREE_ORDER if m not in RANDOM]
    steps = [("id", 0.0), ("rattle-0.1", 0.1), ("rattle-0.3", 0.3)]
    for metric in ("cknna", "information_imbalance"):
        short = plots.METRIC_LABELS[metric].split(" Δ(")[0]
        key = next(k for k in panels if k.startswith(f"mean {short}\n"))
        lv, val, lo, hi = panels[key]["mean"]
        assert lv == [0.0, 0.1, 0.3]
        for (set_name, _), v, low, high in zip(steps, val, lo, hi):
            mat = _matrix(root, set_name, metric)
            idx = [MODELS.index(m) for m in trained]
            if metric == "information_imbalance":
                cells = [mat[i, j] for i in idx for j in idx if i != j]
            else:
                cells = [mat[i, j] for a, i in enumerate(idx) for j in idx[a + 1:]]
            assert v == pytest.approx(np.mean(cells), abs=1e-12)
            assert low < v < high
    lines = panels["intrinsic dimension (TwoNN)"]
    assert set(lines) == set(trained)
    stats = json.loads((root / "sets/rattle-0.3/stats.json").read_text())
    lv, val, lo, hi = lines["gamma-1"]
    rec = stats["intrinsic_dimension"]["gamma-1"]
    assert (val[2], lo[2], hi[2]) == (rec["value"], rec["low"], rec["high"])


def test_tree_from_newick_with_families_and_random_marked(rendered):
    _, text, calls = rendered
    (args, kw), = calls["newick_tree"]
    assert kw["families"] == FAMILIES and set(kw["random"]) == set(RANDOM)
    fig = plots.newick_tree(*args, **kw)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == [m + (" (random)" if m in RANDOM else "") for m in TREE_ORDER]
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours["alpha-1"] == colours["alpha-2"] != colours["beta-1"]
    assert "nj-sqrt-jsd" in text


def test_imbalance_plane_labels_every_point_and_honours_reference(rendered):
    _, _, calls = rendered
    (args, kw), = calls["imbalance_plane"]
    assert kw["reference"] == "beta-1"
    fig = plots.imbalance_plane(*args, **kw)
    texts = [t for ax in fig.axes for t in ax.texts]
    m = len(MODELS)
    assert len(args[0]) == len(SETS)
    assert len(texts) == len(args[0]) * m * (m - 1) // 2
    red = [t.get_text() for t in texts if t.get_color() == "#b00000"]
    assert len(red) == len(args[0]) * (m - 1)
    assert all("beta-1" in t for t in red)


def test_reference_vs_error_groups_by_functional(rendered):
    _, _, calls = rendered
    (args, kw), = calls["reference_vs_error"]
    assert kw["reference"] == "beta-1"
    points = args[0]
    assert [label for label, _ in points] == ["in-distribution crystals"]
    assert set(points[0][1]) == {"alpha-1", "alpha-2", "gamma-1"}
    fig = plots.reference_vs_error(*args, **kw)
    notes = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "PBE: 2 model(s), fewer than 3 comparable models" in notes
    # A group of 4 draws a trend with Spearman's rho instead of the note.
    pts = {f"m{i}": (0.1 * i, 0.9 - 0.1 * i) for i in range(4)}
    fig = plots.reference_vs_error([("id", pts)], reference="r",
                                   functional=dict.fromkeys(pts, "PBE"))
    assert not fig.axes[0].texts[4:]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("Spearman ρ = -1.00 (n = 4)" in t for t in legend)


def test_disagreement_tables_name_structures_and_every_pair(rendered):
    root, text, _ = rendered
    with open(root / "sets/molecules/scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    worst = min(rows, key=lambda r: int(r["rank"]))
    structures = json.loads((root / "sets/molecules/structures.json").read_text())
    smiles = next(s["smiles"] for s in structures if s["id"] == worst["id"])
    assert f"<td class=\"name\">{worst['id']}</td><td class=\"name\">{smiles}</td>" in text
    pairs = [f"{a} vs {b}" for i, a in enumerate(MODELS) for b in MODELS[i + 1:]]
    section = text[text.index("Most disagreed structures per pair — molecules"):]
    section = section[:section.index("</table>")]
    for p in pairs:
        assert f'<td class="name">{p}</td>' in section, p
    assert "Table truncated to the top 7 of 120 structures" in text
    assert "the first 8 of 10 pairs" in text


def test_findings_table(rendered):
    root, text, _ = rendered
    findings = json.loads((root / "findings.json").read_text())
    section = text[text.index(">Findings</h2>"):]
    for f in findings:
        assert html_escape(f["finding"]) in section and f["test"] in section
    assert '<td class="holds">holds</td>' in section
    assert '<td class="inconclusive">inconclusive</td>' in section
    assert " ~ ".join(NEAR_DUPLICATES[0]) in section
    assert "[-0.04, 0.08]" in section


def html_escape(s):
    import html

    return html.escape(s)


def test_files_png_and_svg_and_a_clean_page(rendered):
    root, text, _ = rendered
    names = {s for s, *_ in SETS}
    expected = {f"heatmap_{s}_{m}.png" for s in names for m in PAIR_METRICS}
    expected |= {f"diff_{s}_{m}.png" for s in names - {"id"} for m in PAIR_METRICS}
    expected |= {"trend_rattle.png", "ksweep_id.png", "tree.png", "imbalance_plane.png",
                 "reference_vs_error.png",
                 "intrinsic_dimension.png", "sets_cknna.png"}
    expected |= {f"disagreement_{s}.png" for s in names - {"id"}}
    pngs = {p.name for p in (root / "plots").glob("*.png")}
    assert pngs == expected
    svgs = {p.name for p in (root / "plots").glob("*.svg")}
    assert svgs == {n[:-4] + ".svg" for n in expected}
    for name in svgs:
        assert ET.parse(root / "plots" / name).getroot().tag.endswith("svg"), name
    uris = re.findall(r'<img src="data:image/png;base64,([^"]*)"', text)
    assert len(uris) == len(expected)
    for data in uris:
        img = imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert img.reshape(-1, img.shape[-1]).std(axis=0).max() > 0.05
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "{'" not in text and "{&#x27;" not in text  # no raw dicts printed
    assert "<nav>" in text and "<style>" in text


@pytest.mark.parametrize("cmap,rng", [("viridis", (0.0, 1.0)), ("viridis", (0.0, 1.2)),
                                      ("PuOr", (-0.5, 0.5))])
def test_annotation_colour_has_the_better_contrast(cmap, rng):
    norm = Normalize(*rng)
    for v in np.linspace(rng[0], rng[1], 101):
        rgba = colormaps[cmap](norm(v))
        chosen = plots.text_colour(rgba)
        c_black, c_white = _contrast(rgba, (0, 0, 0)), _contrast(rgba, (1, 1, 1))
        best = "black" if c_black >= c_white else "white"
        assert chosen == best or abs(c_black - c_white) < 0.05, (v, chosen)
        assert max(c_black, c_white) >= 4.5


def test_heatmap_fixed_range_and_annotations():
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    # Values in a narrow band (one run's information imbalance): the scale stays 0-1.2.
    narrow = 0.05 + 0.0025 * rng.random((4, 4))
    fig = plots.heatmap(narrow, names, "information_imbalance", order=names)
    im = fig.axes[0].images[0]
    assert im.get_clim() == (0.0, 1.2) and im.get_cmap().name == "viridis"
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts] == [f"{v:.2f}" for v in narrow.ravel()]
    assert len({t.get_color() for t in texts}) == 1  # equal printed values, equal colours
    v = rng.uniform(-0.1, 1.0, size=(4, 4))
    fig = plots.heatmap(v, names, "cknna", order=["d", "b", "a", "c"])
    im = fig.axes[0].images[0]
    assert im.get_clim() == (0.0, 1.0)
    pos = [3, 1, 0, 2]
    np.testing.assert_array_equal(im.get_array(), v[np.ix_(pos, pos)])
    norm = Normalize(0.0, 1.0, clip=True)
    for t, val in zip(fig.axes[0].texts, v[np.ix_(pos, pos)].ravel()):
        rgba = colormaps["viridis"](norm(val))
        assert _contrast(rgba, (0, 0, 0) if t.get_color() == "black" else (1, 1, 1)) >= 4.5


def test_parse_newick_errors():
    with pytest.raises(ValueError, match="must end with ';'"):
        plots.parse_newick("(a,b)")
    with pytest.raises(ValueError, match="expected '\\)'"):
        plots.parse_newick("((a,b);")
    with pytest.raises(ValueError, match="bad branch length 'x'"):
        plots.parse_newick("(a:x,b);")
    t = plots.parse_newick("((a:1,b:2)ab:3,'c d':-0.5);")
    assert plots.newick_leaves(t) == ["a", "b", "c d"]
    assert t["children"][0]["name"] == "ab" and t["children"][1]["length"] == -0.5


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A small, untouched run; each corruption test edits its own copy."""
    return make_run_v2(tmp_path_factory.mktemp("pristine") / "run", n=80)


def _corrupt(root, rel, fn):
    path = root / rel
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("rel,mutate,message", [
    ("run.json", lambda d: d["sets"][1].update(kind="far"),
     r"run\.json: sets\[1\]\.kind: must be one of \['id', 'ood', 'ladder'\]"),
    ("run.json", lambda d: d["sets"][2].update(level=None),
     r"run\.json: sets\[2\]\.level: a ladder set needs a numeric level"),
    ("run.json", lambda d: d.pop("preprocessing"), r"run\.json: preprocessing: must be"),
    ("run.json", lambda d: d.update(random=["nope"]), r"run\.json: random: must be a list"),
    ("sets/id/stats.json", lambda d: d["cknna"].update({"nope|alpha-1": {"value": 1.0}}),
     r"stats\.json: cknna\.nope\|alpha-1: pair keys must be 'a\|b'"),
    ("sets/id/stats.json", lambda d: d["cka"]["alpha-1|beta-1"].update(low="x"),
     r"stats\.json: cka\.alpha-1\|beta-1\.low: must be a number or null"),
    ("sets/molecules/ksweep.json", lambda d: d["cknna"].update({"alpha-1|beta-1": [[5, 1]]}),
     r"ksweep\.json: cknna\.alpha-1\|beta-1: must be a list of \[k, value, low, high\]"),
    ("sets/rattle-0.1/structures.json", lambda d: d.pop(),
     r"structures\.json: \(top level\): holds 79 structures; run\.json sets\[2\]\.n says 80"),
    ("tree.json", lambda d: d.update(newick="(alpha-1,zeta);"),
     r"tree\.json: newick: names leaves that are not models of the run: \['zeta'\]"),
    ("tree.json", lambda d: d.update(newick="(alpha-1,beta-1"),
     r"tree\.json: newick: newick must end with ';'"),
    ("errors.json", lambda d: d["values"].update({"beta-1": "big"}),
     r"errors\.json: values\.beta-1: must be a number"),
    ("findings.json", lambda d: d[0].update(verdict="maybe"),
     r"findings\.json: \[0\]\.verdict: must be one of \['holds'"),
    ("findings.json", lambda d: d[1].pop("p_value"), r"findings\.json: \[1\]\.p_value: is missing"),
])
def test_load_run_names_file_and_key(pristine, tmp_path, rel, mutate, message):
    root = shutil.copytree(pristine, tmp_path / "run")
    load_run(root)
    _corrupt(root, rel, mutate)
    with pytest.raises(ValueError, match=message):
        load_run(root)


def test_load_run_missing_file_and_bad_json(pristine, tmp_path):
    root = shutil.copytree(pristine, tmp_path / "run")
    (root / "sets/molecules/stats.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"stats\.json \(named in run\.json at "
                                                 r"sets\[1\]\.stats\) not found"):
        load_run(root)
    (root / "sets/molecules/stats.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"stats\.json \(named in run\.json at sets\[1\]\.stats\)"
                                         r" is not valid JSON"):
        load_run(root)
    _corrupt(root, "run.json", lambda d: d.update(version=3))
    with pytest.raises(ValueError, match=r"has version 3; this matalign reads versions \[1, 2\]"):
        load_run(root)


def test_render_argument_errors(rendered):
    root, _, _ = rendered
    with pytest.raises(ValueError, match=r"reference 'nope' is not one of the models"):
        render(root, reference="nope")
    with pytest.raises(ValueError, match=r"top must be a positive integer; got 0"):
        render(root, top=0)


def test_preprocessing_text_and_a_run_without_an_id_set(tmp_path):
    from matalign.report import _prep_text

    assert _prep_text({"center": True, "l2": False, "clip_quantile": 0.99}) == (
        "preprocessing: center, no l2, clip_quantile 0.99")
    assert _prep_text({"center": True, "text": "center + L2"}) == "preprocessing: center + L2"
    assert _prep_text(None) == "preprocessing not recorded"
    root = make_run_v2(tmp_path / "run", n=60, with_optional=False, sets=["molecules"])
    _corrupt(root, "run.json", lambda d: d["preprocessing"].update(text="center + L2"))
    text = render(root).read_text()
    assert "N = 60, k = 10, preprocessing: center + L2" in text
    assert "No OOD or ladder set" in text  # the only set is the comparison baseline
