"""Curation runs carry the spec's architecture and encode size to precompute_embeddings: a compiled bundle's
smoke curation writes the members the trainer reads at its first stage's size, and a rerun re-encodes when
the architecture changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.emit import render, write_bundle
from compiler.schema.bundle import read_bundle_pipeline
from compiler.scale import scaled
from compiler.schema.cluster import PRESETS
from compiler.schema.data import ExactDedup, Pipeline
from runtime.curation import run
from runtime.curation.curate import spec_encoding
from runtime.curation.layout import Layout
from runtime.curation.shards import shard_stem
from runtime.synthetic_data import make_raw
from runtime.train.batch import BatchBuilder
from runtime.train.data import load_npy, read_shard


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """flux1-dev compiled at smoke scale for local-cpu (its pipeline ends with precompute_embeddings)."""
    out = tmp_path_factory.mktemp("bundle") / "flux1-dev"
    write_bundle(render(specs.load("flux1-dev"), PRESETS["local-cpu"], "smoke"), out)
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """One shard of synthetic image_text samples (a duplicate and a truncated JPEG among them)."""
    return make_raw(tmp_path_factory.mktemp("raw"), "flux1-dev", count=12, shards=1)["image_text"][0]


def first_stage(bundle: Path) -> dict:
    """The first training stage's stage.yaml in run order (pretrain reads the pipeline's output)."""
    return YAML(typ="safe").load((bundle / "train" / "pretrain" / "stage.yaml").read_text())


def precompute_only(bundle: Path) -> Pipeline:
    """The bundle's pipeline cut to exact dedup (a barrier: two stages) and its precompute_embeddings op."""
    pipeline = read_bundle_pipeline(bundle, None).pipeline
    return pipeline.model_copy(update={"ops": [ExactDedup(), pipeline.ops[-1]]})


def kept_samples(output: Path) -> list[dict]:
    return [sample for path in sorted((output / "shards").glob("*.tar")) for sample in read_shard(path)]


def test_the_bundle_carries_the_trainers_architecture_and_first_stage_size(bundle):
    shipped = read_bundle_pipeline(bundle, None)
    stage = first_stage(bundle)
    assert shipped.architecture.model_dump(mode="json") == stage["architecture"]
    size = stage["stage"]["resolutions"][0]
    assert shipped.encode_size == (size["height"], size["width"])
    # The same as curating the spec itself at smoke scale.
    architecture, encode_size = spec_encoding(specs.load("flux1-dev"), "flux", "smoke")
    assert architecture.model_dump(mode="json") == stage["architecture"] and encode_size == shipped.encode_size
    full_architecture, full_size = spec_encoding(specs.load("flux1-dev"), "flux", "full")
    assert full_architecture == specs.load("flux1-dev").architecture
    first = specs.load("flux1-dev").schedule.stages[0].resolutions[0]
    assert full_size == (first.height, first.width) != encode_size


def test_precomputed_members_fit_the_first_stage_and_need_no_encoders(bundle, raw, tmp_path):
    shipped = read_bundle_pipeline(bundle, None)
    report = run(precompute_only(bundle), str(raw), tmp_path / "out", workers=1, scale="smoke",
                 architecture=shipped.architecture, encode_size=shipped.encode_size)
    assert report.quarantined == 1 and report.kept == 10  # the truncated JPEG cannot be encoded; the duplicate goes
    arch, (height, width) = shipped.architecture, shipped.encode_size
    space = arch.space
    encoders = {encoder.name: encoder for encoder in arch.text_encoders}
    samples = kept_samples(tmp_path / "out")
    for sample in samples:
        assert load_npy(sample["latents.npy"]).shape == (space.channels, height // space.spatial_compression,
                                                         width // space.spatial_compression)
        assert load_npy(sample["text.npy"]).shape == (encoders["t5_xxl"].max_tokens, encoders["t5_xxl"].dim)
        assert load_npy(sample["pooled.npy"]).shape == (encoders["clip_l"].dim,)
        assert load_npy(sample["text_mask.npy"]).any()
    # The trainer takes them as they are: no encoders to fall back on.
    batch = BatchBuilder(arch, mask_from=None)(samples[:2], size=(height, width))
    np.testing.assert_array_equal(batch.latents[1].numpy(), load_npy(samples[1]["latents.npy"]))
    np.testing.assert_array_equal(batch.cond.text[0].numpy(), load_npy(samples[0]["text.npy"]))
    assert any("encoded at" in note for note in report.notes)


def test_a_rerun_with_another_architecture_re_encodes_only_the_stage_that_reads_it(bundle, raw, tmp_path):
    shipped = read_bundle_pipeline(bundle, None)
    pipeline, out = precompute_only(bundle), tmp_path / "out"
    manifests = [Layout(out).manifest(stage, shard_stem(str(raw))) for stage in (0, 1)]

    def curate(architecture, encode_size=shipped.encode_size) -> list[int]:
        """Run; the manifests' modification times (a skipped stage leaves its manifest alone)."""
        run(pipeline, str(raw), out, workers=1, scale="smoke", architecture=architecture, encode_size=encode_size)
        return [path.stat().st_mtime_ns for path in manifests]

    first = curate(shipped.architecture)
    assert curate(shipped.architecture) == first  # nothing changed: both stages skipped
    t5 = next(e for e in shipped.architecture.text_encoders if e.name == "t5_xxl")
    longer = shipped.architecture.model_copy(update={"text_encoders": [
        e.model_copy(update={"max_tokens": 2 * t5.max_tokens}) if e.name == "t5_xxl" else e
        for e in shipped.architecture.text_encoders]})
    second = curate(longer)
    assert second[0] == first[0] and second[1] != first[1]  # only the stage with precompute_embeddings reran
    assert {load_npy(s["text.npy"]).shape[0] for s in kept_samples(out)} == {2 * t5.max_tokens}
    curate(longer, encode_size=(64, 32))
    assert {load_npy(s["latents.npy"]).shape[1:] for s in kept_samples(out)} == {(8, 4)}


@pytest.mark.slow
def test_genspec_curate_of_a_bundle_precomputes_with_its_architecture(bundle, raw, tmp_path):
    result = CliRunner().invoke(app, ["curate", str(bundle), "--input", str(raw), "--output", str(tmp_path / "out"),
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    stage = first_stage(bundle)
    size = stage["stage"]["resolutions"][0]
    compression = stage["architecture"]["space"]["spatial_compression"]
    samples = kept_samples(tmp_path / "out")
    assert samples and all(
        load_npy(s["latents.npy"]).shape[1:] == (size["height"] // compression, size["width"] // compression)
        and "text.npy" in s and "pooled.npy" in s for s in samples)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not any("did not reach curation" in note for note in report["notes"])
    assert scaled(specs.load("flux1-dev"), "smoke").architecture.model_dump(mode="json") == stage["architecture"]
