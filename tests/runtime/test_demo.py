"""The end-to-end demo (runtime/demo.py) for flux1-dev at smoke scale: a full run, then a rerun that resumes."""

from __future__ import annotations

import re
import tarfile
import time

import pytest

from runtime import demo


def test_make_raw_is_deterministic_and_has_the_curation_cases(tmp_path):
    first = demo.make_raw(tmp_path / "a", "flux1-dev", count=24, seed=3)
    second = demo.make_raw(tmp_path / "b", "flux1-dev", count=24, seed=3)
    assert list(first) == ["image_text"]
    for one, two in zip(first["image_text"], second["image_text"]):
        assert one.read_bytes() == two.read_bytes()
    names = []
    for path in first["image_text"]:
        with tarfile.open(path) as tar:
            names += tar.getnames()
    keys = {name.split(".")[0] for name in names}
    assert len(keys) == 24 and {n.split(".", 1)[1] for n in names} == {"jpg", "txt", "json"}
    kinds = demo.raw_samples(24, 3, 0)
    assert {kind for kind, *_ in kinds} == {"clean", "duplicate", "near_duplicate", "corrupt", "blurry", "tiny"}


def test_unsupported_specs_are_refused_naming_what_is_missing(tmp_path):
    with pytest.raises(NotImplementedError, match="video"):
        demo.main("wan2.1-t2v-14b", tmp_path / "wan")
    with pytest.raises(NotImplementedError, match="image_edit_triplet"):
        demo.main("flux-kontext", tmp_path / "kontext")
    with pytest.raises(NotImplementedError, match="bilingual-llm"):
        demo.main("seedream-3.0", tmp_path / "seedream")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    workdir = tmp_path / "demo"
    started = time.perf_counter()
    report = demo.main("flux1-dev", workdir)
    first = time.perf_counter() - started
    assert report == workdir / "report.md" and report.exists()
    text = report.read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for picture in pictures:
        assert (workdir / picture).is_file(), picture
        assert (workdir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
    assert any(p.endswith("graph.png") for p in pictures)
    assert any("/curated/" in p and "/report/" in p for p in pictures), "no curation histogram"
    assert any(p.startswith("run/samples/") for p in pictures)
    bundle, run_root = workdir / "bundle", workdir / "run"
    stages = demo.stage_order(bundle)
    assert stages
    finals = {}
    for stage in stages:
        assert f"figures/loss_{stage}.png" in pictures
        output = run_root / demo.stage_output(bundle, stage)
        records = demo.read_metrics(output / "metrics.jsonl")
        assert any(r.get("loss") is not None for r in records), stage
        finals[stage] = (output / "final" / "model.safetensors").stat().st_mtime_ns
    assert "report:" in capsys.readouterr().out

    started = time.perf_counter()
    demo.main("flux1-dev", workdir)
    second = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "reusing bundle" in out and "raw data present" in out
    for stage in stages:
        assert f"stage {stage}: already trained" in out
        output = run_root / demo.stage_output(bundle, stage)
        assert (output / "final" / "model.safetensors").stat().st_mtime_ns == finals[stage], stage
    assert second < first
