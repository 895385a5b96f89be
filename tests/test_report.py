"""The run directory (write_run / load_run) and the HTML report (render).

The page is rendered in headless Chromium: every <img> must decode (naturalWidth > 0), no
script error or console error may occur and nothing may be fetched from outside the page.
The Chromium test is skipped only when /usr/bin/chromium is absent (CI installs the Debian
package ``chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import matalign as ma
from matalign.report import load_run, render, write_run
from matalign.score import score

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium"
                                        if shutil.os.path.exists("/usr/bin/chromium") else None)

_CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message || (e.target && e.target.tagName) || e.type)); }, true);
(function () { var ce = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt; });
  var ext = performance.getEntriesByType('resource').map(function (r) { return r.name; })
                .filter(function (n) { return n.indexOf('data:') !== 0; });
  var out = document.createElement('pre'); out.id = 'matalign-check';
  out.textContent = JSON.stringify({images: imgs.length, bad: bad, errors: window.__errors,
                                    external: ext});
  document.body.appendChild(out);
});
</script>"""


def _spaces(latent, rng, sigmas=(0.0, 0.2, 0.6)):
    d = latent.shape[1]
    out = {}
    for i, s in enumerate(sigmas):
        w = rng.normal(size=(d, 16)) / np.sqrt(d)
        out[f"m{i}"] = np.tanh((latent + s * rng.normal(size=latent.shape)) @ w)
    out["rand"] = rng.normal(size=(latent.shape[0], 16))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    metrics = ["cknna", "mutual_knn", "cka", "information_imbalance", "intrinsic_dimension"]
    sets, scores = {}, {}
    for name, latent in (("id", rng.normal(size=(400, 4))),
                         ("ood-strain-0.05", 3 + 2 * rng.normal(size=(400, 4)))):
        spaces = _spaces(latent, rng)
        sets[name] = ma.alignment_matrix(spaces, metrics=metrics, k=10)
        ext = ".parquet" if name == "id" else ".csv"
        scores[name] = score(spaces, root / f"scores-{name}{ext}", k=10).path
    write_run(root / "run", sets, scores=scores, errors={"m0": 0.01, "m1": 0.2, "m2": 0.6},
              error_label="energy MAE (eV/atom)", labels={"id": "in-distribution"},
              title="test run")
    return root / "run"


def test_layout_and_index(run_dir):
    index = json.loads((run_dir / "run.json").read_text())
    assert index["format"] == "matalign.run" and index["version"] == 1
    assert index["models"] == ["m0", "m1", "m2", "rand"]
    assert index["reference"] == "m0"  # lowest error
    assert [s["name"] for s in index["sets"]] == ["id", "ood-strain-0.05"]
    assert index["sets"][0]["scores"] == "sets/id/scores.parquet"
    assert index["sets"][1]["scores"] == "sets/ood-strain-0.05/scores.csv"
    run = load_run(run_dir)
    assert set(run["sets"][0]["id_values"]) == {"m0", "m1", "m2", "rand"}
    assert run["error_label"] == "energy MAE (eV/atom)"


def test_render_writes_nontrivial_pngs_and_a_self_contained_page(run_dir):
    from matplotlib.image import imread

    page = render(run_dir)
    text = page.read_text()
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    expected = {"tree_id.png", "tree_ood-strain-0.05.png", "imbalance_plane.png",
                "reference_vs_error.png", "intrinsic_dimension.png", "sets_cknna.png",
                "disagreement_id.png", "disagreement_ood-strain-0.05.png"}
    expected |= {f"heatmap_{s}_{m}.png" for s in ("id", "ood-strain-0.05")
                 for m in ("cknna", "mutual_knn", "cka", "information_imbalance")}
    assert set(pngs) == expected
    for name in pngs:
        img = imread(run_dir / "plots" / name)
        assert img.shape[0] > 200 and img.shape[1] > 200, name
        flat = img.reshape(-1, img.shape[-1])
        assert flat.std(axis=0).max() > 0.05, f"{name} is (nearly) constant"
        assert len(np.unique(flat[::7], axis=0)) > 20, f"{name} has too few colours"
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert len(srcs) == len(pngs)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)
    # What the page must say.
    assert "1 − CKNNA" in text and "Average linkage (UPGMA)" in text
    assert "Most disagreed structures" in text
    assert "in-distribution" in text and "ood-strain-0.05" in text


def test_render_without_optional_parts(tmp_path):
    rng = np.random.default_rng(1)
    spaces = _spaces(rng.normal(size=(200, 4)), rng)
    m = ma.alignment_matrix(spaces, metrics=["cknna"], k=5)
    write_run(tmp_path, {"only": m})
    text = render(tmp_path).read_text()
    assert "No per-model errors" in text
    assert "information_imbalance" in text and "plane skipped" in text
    assert "No intrinsic dimensions" in text
    assert "No per-structure scores" in text
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {"heatmap_only_cknna.png",
                                                                     "tree_only.png"}


def test_write_run_errors(tmp_path):
    rng = np.random.default_rng(2)
    spaces = _spaces(rng.normal(size=(100, 3)), rng)
    m = ma.alignment_matrix(spaces, metrics=["cknna"], k=5)
    other = ma.alignment_matrix({"x": spaces["m0"], "y": spaces["m1"]}, metrics=["cknna"], k=5)
    with pytest.raises(ValueError, match="same models"):
        write_run(tmp_path / "a", {"id": m, "ood": other})
    with pytest.raises(ValueError, match="set name"):
        write_run(tmp_path / "b", {"bad/name": m})
    with pytest.raises(ValueError, match="not in the run"):
        write_run(tmp_path / "c", {"id": m}, errors={"nope": 1.0})
    with pytest.raises(ValueError, match="reference"):
        write_run(tmp_path / "d", {"id": m}, reference="nope")
    write_run(tmp_path / "e", {"id": m})
    with pytest.raises(FileExistsError):
        write_run(tmp_path / "e", {"id": m})
    write_run(tmp_path / "e", {"id": m}, overwrite=True)
    with pytest.raises(FileNotFoundError, match="run.json"):
        render(tmp_path / "missing")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "run.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a matalign run"):
        load_run(tmp_path / "f")


def _chromium_check(html_path, tmp_path):
    checked = tmp_path / "checked.html"
    text = html_path.read_text()
    checked.write_text(text.replace("<head>", "<head>\n" + _CHECK_SCRIPT, 1))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="matalign-check">([^<]*)</pre>', proc.stdout)
    assert match, f"the check script did not run; stderr: {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    return json.loads(match.group(1).replace("&quot;", '"')), console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                              "chromium); CI installs it")
def test_page_renders_in_headless_chromium(run_dir, tmp_path):
    page = render(run_dir)
    n_png = len(list((run_dir / "plots").glob("*.png")))
    result, console = _chromium_check(page, tmp_path)
    assert result["images"] == n_png
    assert result["bad"] == []
    assert result["errors"] == []
    assert result["external"] == []
    assert console == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                              "chromium); CI installs it")
def test_chromium_check_detects_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                    '<img alt="broken" src="data:image/png;base64,AAAA"></body></html>')
    result, _ = _chromium_check(page, tmp_path)
    assert result["bad"] == ["broken"]


@pytest.fixture(scope="module")
def run_v2(tmp_path_factory):
    from rundir_fixture import make_run_v2

    root = make_run_v2(tmp_path_factory.mktemp("v2") / "run", n=100)
    return root, render(root)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                              "chromium); CI installs it")
def test_version_2_page_renders_in_headless_chromium(run_v2, tmp_path):
    root, page = run_v2
    n_png = len(list((root / "plots").glob("*.png")))
    assert n_png > 20
    result, console = _chromium_check(page, tmp_path)
    assert result["images"] == n_png
    assert result["bad"] == []
    assert result["errors"] == []
    assert result["external"] == []
    assert console == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                              "chromium); CI installs it")
def test_screenshot_of_the_page_is_not_blank(run_v2, tmp_path):
    from matplotlib.image import imread

    _, page = run_v2
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1280,2400", "--virtual-time-budget=10000",
           f"--screenshot={shot}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    flat = img[..., :3].reshape(-1, 3)
    # Not blank: many distinct colours (text, heatmap cells) and a good share of non-white.
    assert len(np.unique(np.round(flat[::5] * 255), axis=0)) > 100
    assert (flat.min(axis=1) < 0.9).mean() > 0.05
    # A blank page of the same size fails the same checks (the test can fail).
    blank = tmp_path / "blank.html"
    blank.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body></body>'
                     '</html>')
    shot2 = tmp_path / "blank.png"
    cmd[-2:] = [f"--screenshot={shot2}", blank.as_uri()]
    subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)
    flat2 = imread(shot2)[..., :3].reshape(-1, 3)
    assert len(np.unique(np.round(flat2[::5] * 255), axis=0)) <= 100
