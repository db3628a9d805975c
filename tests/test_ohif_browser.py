"""OHIF v3 (bundled with MONAI Label 0.8.5 at ``/ohif/``) in headless Chromium, driving a text prompt.

Orthanc (``scripts/pacs.sh``) holds one 4-mm phantom CT; the server runs on it with the demo checkpoint. The test
does what an annotator does in the MONAI Label panel of OHIF's ``monai-label`` mode:

1. open ``/ohif/monai-label?StudyInstanceUIDs=<study>`` (OHIF loads the pixels through the server's
   ``/proxy/dicom/`` DICOMweb proxy), type the server URL into ``#monailabelServerURL`` and press connect;
2. "Options / Configurations" -> section ``infer``, name ``textdiffseg`` -> type the prompt into the ``text_prompt``
   row (input ``#infertextdiffsegtext_prompt``) -> Confirm;
3. Auto-Segmentation tab -> Run.

It checks the request OHIF sent (``params.text_prompt`` is the typed prompt), and that OHIF's labelmap now holds the
server's answer: for each prompt, the voxels of the OHIF segment with that name equal the voxels of that value in the
returned NRRD. The Class Prompts tab (vocabulary check boxes -> ``label_prompt`` indices) is exercised too.

The Point Prompts tab (``textdiffseg_clicks``, type ``vista3d``) gets one foreground click, with the mouse, on the
liver tumour the text prompt misses (the axial viewport is moved to the tumour's plane first): OHIF's request, the
answer at the clicked voxel and the segment OHIF then shows (its size and the HU under it) are checked.

Screenshots are written to the test's temp folder, and to ``$TEXTDIFFSEG_SCREENSHOT_DIR`` when set (the README's
``docs/ohif_text_prompt.png`` and ``docs/ohif_point_prompt.png`` come from ``TEXTDIFFSEG_SCREENSHOT_DIR=docs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from pacs_harness import ROOT, Pacs, require_binary, start_pacs, tag_value

from server_harness import DEMO_CHECKPOINT, RunningServer, ServerStartError, copy_app, free_port, start_server
from textdiffseg.click_simulation import component_centre
from textdiffseg.data.label_maps import PHANTOM_TARGETS
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_ENV = "TEXTDIFFSEG_SCREENSHOT_DIR"
INDEX = PromptVocabulary.load().index_map()
PROMPT = "liver; spleen"
UI_TIMEOUT_MS = 120_000
INFER_TIMEOUT_MS = 300_000
# Chromium as root needs --no-sandbox; SwiftShader gives OHIF's cornerstone3D a WebGL context without a GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
# OHIF's segmentation service: per segment name in labelmap '1' (the one the MONAI Label panel fills), the voxel
# count and the mean CT value (HU) of the displayed series under it, both in OHIF's own voxel order.
SEGMENT_STATS_JS = """() => {
  const service = window.services.segmentationService;
  const volume = service.getLabelmapVolume('1');
  if (!volume) { return null; }
  const data = volume.voxelManager.getCompleteScalarDataArray();
  const images = window.cornerstone.cache.getVolumes().filter(
    v => v.volumeId !== volume.volumeId && v.volumeId.startsWith('cornerstoneStreamingImageVolume'));
  if (images.length !== 1) { return 'expected one CT volume, found ' + images.length; }
  const ct = images[0].voxelManager.getCompleteScalarDataArray();
  if (ct.length !== data.length) { return 'labelmap and CT sizes differ'; }
  const segments = service.getSegmentation('1').segments;
  const sums = {};
  for (let i = 0; i < data.length; i++) {
    if (data[i]) { const s = sums[data[i]] || [0, 0]; s[0] += 1; s[1] += ct[i]; sums[data[i]] = s; }
  }
  const named = {};
  for (const [index, s] of Object.entries(sums)) { named[segments[index] ? segments[index].label : index] = s; }
  return named;
}"""


@dataclass
class Viewer:
    """What the browser test needs: the server, the study to open and its series."""

    server: RunningServer
    study: str
    series: str
    liver_hu: float  # mean HU of the phantom's liver (truth label values 1 and 7)
    tumour: Tumour  # the phantom's liver tumour


@dataclass(frozen=True)
class Tumour:
    """Where an annotator clicks on the phantom's liver tumour, and what it holds."""

    world_lps: list[float]  # its deepest voxel, DICOM patient coordinates (mm)
    voxels: int
    hu: float


def _liver_tumour(phantom: Path, case: str) -> Tumour:
    """The liver tumour of a phantom case: its deepest voxel in LPS world coordinates, size and mean HU."""
    nifti = nib.load(phantom / "labelsTr" / f"{case}.nii.gz")
    tumour = np.isin(np.asarray(nifti.dataobj), PHANTOM_TARGETS["liver tumor"])
    ras = nifti.affine @ np.array([*component_centre(tumour), 1.0])
    image = np.asarray(nib.load(phantom / f"{case}.nii.gz").dataobj, dtype=float)
    return Tumour([-float(ras[0]), -float(ras[1]), float(ras[2])], int(tumour.sum()), float(image[tumour].mean()))


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    """Orthanc with one phantom CT + the app server on it."""
    _require_playwright()
    require_binary(CHROMIUM, "apt-get install -y chromium")
    tmp = tmp_path_factory.mktemp("ohif")
    pacs: Pacs = start_pacs(tmp / "orthanc", free_port())
    try:
        pacs.script("load", PACS_CASES="1", PACS_SEED="0", PACS_SPACING="4 4 4")
        (series,) = pacs.series(Modality="CT")
        app_dir = copy_app(tmp / "app", DEMO_CHECKPOINT)
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp / "dicom_cache")}
        try:
            server = start_server(app_dir, pacs.dicomweb, tmp, env=env)
        except ServerStartError as err:
            pytest.fail(str(err))
        try:
            phantom = tmp / "orthanc" / "phantom"
            liver_hu = _mean_hu(phantom, "phantom_000", PHANTOM_TARGETS["liver"])
            tumour = _liver_tumour(phantom, "phantom_000")
            yield Viewer(server, tag_value(series, "0020000D"), tag_value(series, "0020000E"), liver_hu, tumour)
        finally:
            server.stop()
    finally:
        pacs.stop()


def _mean_hu(phantom: Path, case: str, values: tuple[int, ...]) -> float:
    """Mean HU of the phantom image over the given truth label values."""
    image = np.asarray(nib.load(phantom / f"{case}.nii.gz").dataobj, dtype=float)
    label = np.asarray(nib.load(phantom / "labelsTr" / f"{case}.nii.gz").dataobj)
    return float(image[np.isin(label, values)].mean())


def _require_playwright() -> None:
    """Playwright is a dev requirement: skip locally without it, fail in CI."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed: requirements-dev.txt pins it")
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")


def _label_counts(nrrd_bytes: bytes, tmp: Path) -> dict[int, int]:
    """Voxels per non-zero value of an NRRD label map."""
    path = tmp / "answer.nrrd"
    path.write_bytes(nrrd_bytes)
    data, _ = nrrd.read(str(path))
    values, counts = np.unique(data, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if v}


def _infer_calls(page, action) -> tuple[dict, bytes, str]:  # noqa: ANN001 - playwright Page / callable
    """Run ``action`` and return (params sent, body received, query) of the ``/infer`` request it triggers."""
    with page.expect_response(lambda r: "/infer/textdiffseg" in r.url, timeout=INFER_TIMEOUT_MS) as answer:
        action()
    response = answer.value
    assert response.status == 200, response.text()[:300]
    body = response.request.post_data or ""
    params = json.loads(body.split('name="params"', 1)[1].split("\r\n\r\n", 1)[1].split("\r\n--", 1)[0])
    return params, response.body(), response.url


def test_ohif_runs_a_text_prompt_and_shows_the_segments(viewer: Viewer, tmp_path: Path) -> None:
    with connected_page(viewer) as (page, errors):
        assert page.evaluate(SEGMENT_STATS_JS) in (None, {}), "labelmap not empty before inference"

        page.click("text=Options / Configurations")
        page.fill("#infertextdiffsegtext_prompt", PROMPT)
        page.get_by_role("button", name="Confirm", exact=True).click()
        params, body, query = _infer_calls(page, lambda: page.click("button[title='Run Segmentation']"))
        page.wait_for_selector("text=Running Segmentation - Successful", timeout=UI_TIMEOUT_MS)
        page.wait_for_timeout(1500)  # let the viewports repaint the labelmap before the screenshot

        assert params["text_prompt"] == PROMPT and f"image={viewer.series}" in query
        returned = _label_counts(body, tmp_path)
        assert set(returned) == {INDEX["liver"], INDEX["spleen"]}, returned
        stats = page.evaluate(SEGMENT_STATS_JS)
        shown = {name: count for name, (count, _) in stats.items()}
        assert shown == {"liver": returned[INDEX["liver"]], "spleen": returned[INDEX["spleen"]]}, shown
        # the overlay sits on the liver: a flipped or shifted one would average fat/gas/muscle (about 10-20 HU)
        liver_hu = stats["liver"][1] / stats["liver"][0]
        message = f"mean HU under OHIF's liver segment {liver_hu:.1f}, phantom liver {viewer.liver_hu:.1f}"
        print(message)
        assert abs(liver_hu - viewer.liver_hu) < 25, message
        _screenshot(page, tmp_path)

        # Class Prompts tab: tick "left kidney" and run. OHIF sends its vocabulary index as label_prompt plus the
        # options set above (text_prompt), so the app segments all three; OHIF then writes only the ticked class,
        # into voxels that are background or that class (override mode): liver and spleen stay as they were.
        page.click("text=Class Prompts")
        page.locator("tr", has_text="left kidney").locator("input[type=checkbox]").first.check()
        run_class = page.locator("button[title='Run Segmentation VISTA']")
        params, body, _ = _infer_calls(page, run_class.click)
        assert params["label_prompt"] == [INDEX["left kidney"]] and params["text_prompt"] == PROMPT, params
        returned = _label_counts(body, tmp_path)
        assert set(returned) == {INDEX["liver"], INDEX["spleen"], INDEX["left kidney"]}, returned
        page.wait_for_timeout(1500)
        after = {name: count for name, (count, _) in page.evaluate(SEGMENT_STATS_JS).items()}
        assert {k: after.get(k) for k in ("liver", "spleen")} == shown, after
        assert 0 < after.get("left kidney", 0) <= returned[INDEX["left kidney"]], after
        assert not errors, errors


# Moves the axial viewport to the plane of a world point (LPS mm) and returns where that point is on the page.
AXIAL_POINT_ON_PAGE_JS = """(world) => {
  const viewports = window.cornerstone.getRenderingEngines()[0].getViewports();
  const axial = viewports.find(v => Math.abs(v.getCamera().viewPlaneNormal[2]) > 0.9);
  const camera = axial.getCamera();
  const n = camera.viewPlaneNormal;
  const d = [0, 1, 2].reduce((sum, i) => sum + (world[i] - camera.focalPoint[i]) * n[i], 0);
  axial.setCamera({
    focalPoint: camera.focalPoint.map((f, i) => f + d * n[i]),
    position: camera.position.map((p, i) => p + d * n[i]),
  });
  axial.render();
  const [x, y] = axial.worldToCanvas(world);
  const box = axial.canvas.getBoundingClientRect();
  return [box.left + x, box.top + y];
}"""


PROBE_DRAWN_JS = "() => document.querySelectorAll('svg.svg-layer circle').length > 0"


def test_ohif_point_prompts_one_click_on_a_missed_tumour_segments_it(viewer: Viewer, tmp_path: Path) -> None:
    """Point Prompts tab: the liver tumour the text prompt misses, one foreground click on it, Run: OHIF sends the
    click as ``points``/``point_labels``/``label_prompt`` to ``textdiffseg_clicks`` and shows the answer on the
    tumour."""
    tumour = viewer.tumour
    with connected_page(viewer) as (page, errors):
        page.locator("label.tab-label", has_text="Point Prompts").click()
        page.locator("tr.clickable-row").filter(has=page.get_by_text("liver tumor", exact=True)).click()
        x, y = page.evaluate(AXIAL_POINT_ON_PAGE_JS, tumour.world_lps)
        page.mouse.click(x, y)
        # Run reads the probe annotations: wait until the click's marker is drawn (its circle in the SVG layer)
        page.wait_for_function(PROBE_DRAWN_JS, timeout=UI_TIMEOUT_MS)
        run = page.locator("button[title='Run PointPrompts']")
        params, body, query = _infer_calls(page, run.click)
        page.wait_for_selector("text=Running Inference for Point Prompts - Successful", timeout=UI_TIMEOUT_MS)
        page.wait_for_timeout(1500)

        assert "/infer/textdiffseg_clicks" in query, query
        assert params["label_prompt"] == [INDEX["liver tumor"]] and params["point_labels"] == [1], params
        (point,) = params["points"]
        path = tmp_path / "clicked.nrrd"
        path.write_bytes(body)
        answer, _ = nrrd.read(str(path))
        assert answer[tuple(point)] == INDEX["liver tumor"], (point, answer[tuple(point)])
        returned = int((answer == INDEX["liver tumor"]).sum())
        stats = page.evaluate(SEGMENT_STATS_JS)
        count, hu_sum = stats["liver tumor"]
        message = (
            f"OHIF's liver tumor segment: {count} voxels (answer {returned}, truth {tumour.voxels}), "
            f"mean {hu_sum / count:.1f} HU (tumour {tumour.hu:.1f}, liver {viewer.liver_hu:.1f})"
        )
        print(message)
        assert count == returned and 0.4 * tumour.voxels <= count <= 2.5 * tumour.voxels, message
        # on the tumour, not the liver around it: its mean HU is nearer the tumour's than the liver's
        assert abs(hu_sum / count - tumour.hu) < abs(hu_sum / count - viewer.liver_hu), message
        assert not errors, errors
        _screenshot(page, tmp_path, "ohif_point_prompt.png")


@contextlib.contextmanager
def connected_page(viewer: Viewer) -> Iterator[tuple[object, list[str]]]:
    """A Chromium page on OHIF's MONAI Label mode, connected to the viewer's server, and the page errors it raised."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            connect_monai_label(page, viewer.server.url, viewer.study)
            yield page, errors
        finally:
            browser.close()


def connect_monai_label(page, url: str, study: str) -> None:  # noqa: ANN001 - playwright Page
    """Open ``study`` in OHIF's MONAI Label mode, connect the panel to the server at ``url``, wait for its options."""
    page.goto(f"{url}/ohif/monai-label?StudyInstanceUIDs={study}", timeout=UI_TIMEOUT_MS)
    page.wait_for_selector("#monailabelServerURL", timeout=UI_TIMEOUT_MS)
    page.wait_for_selector(".cornerstone-canvas", timeout=UI_TIMEOUT_MS)
    _hide_banner(page)
    page.fill("#monailabelServerURL", f"{url}/")
    page.click(".settingsTable .actionButton")
    page.wait_for_selector("text=Options / Configurations", timeout=UI_TIMEOUT_MS)


def _hide_banner(page) -> None:  # noqa: ANN001 - playwright Page
    """Dismiss OHIF's "for investigational use only" banner (it appears a moment after the viewer)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # not shown: nothing covers the viewer
        page.get_by_role("button", name="Confirm and Hide").click(timeout=15_000)


def _screenshot(page, tmp_path: Path, name: str = "ohif_text_prompt.png") -> None:  # noqa: ANN001 - playwright Page
    """Save the viewer to the test's folder, and to ``$TEXTDIFFSEG_SCREENSHOT_DIR`` when set."""
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        folder = Path(target) if Path(target).is_absolute() else ROOT / target
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, folder / shot.name)
