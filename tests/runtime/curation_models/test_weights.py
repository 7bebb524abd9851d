"""Where weights come from: the full-scale error, the smoke stand-in with its note and quantile
thresholds, and every schema kind having an implementation."""

from __future__ import annotations

import io
import json
import tarfile
import typing

import pytest

from compiler.schema.data import (
    ActiveLearning,
    Aesthetic,
    AiGenerated,
    Balance,
    ClipSimilarity,
    CurationOp,
    DefectMask,
    FrameConsistency,
    OcrTextArea,
    Recaption,
    Safety,
    SemanticDedup,
    TechnicalQuality,
    VisualQuality,
    Watermark,
)
from runtime.curation.api import OpConfigError, OpContext
from runtime.curation.modelzoo.weights import SMOKE_DROP_FRACTION, Limit
from runtime.curation.registry import build, missing_kinds
from runtime.curation.runner import BoundOp

# precompute_embeddings loads its models through runtime.encoders: tests/runtime/curation_models/test_precompute.py
MODEL_OPS = [
    Aesthetic(min_score=6.5), TechnicalQuality(scorer="clip-technical-regressor"), Safety(categories=["nsfw"]),
    Watermark(), VisualQuality(), ClipSimilarity(), FrameConsistency(), OcrTextArea(), DefectMask(),
    Recaption(model="Qwen/Qwen2-VL-7B-Instruct"),
    SemanticDedup(), Balance(), AiGenerated(), ActiveLearning(scorer="difficulty-classifier"),
]


def test_every_kind_of_the_schema_has_an_implementation():
    kinds = [op.model_fields["kind"].default for op in typing.get_args(typing.get_args(CurationOp)[0])]
    assert len(kinds) == 32
    assert missing_kinds(kinds) == []


@pytest.mark.parametrize("op", MODEL_OPS, ids=lambda op: op.kind)
def test_a_missing_model_at_full_scale_names_the_model_and_the_folder(tmp_path, op):
    with pytest.raises(OpConfigError) as error:
        build(op, OpContext(tmp_path, "full"))
    message = str(error.value)
    assert str(tmp_path) in message and "must hold" in message and "smoke" in message


@pytest.mark.parametrize("op", MODEL_OPS, ids=lambda op: op.kind)
def test_a_missing_model_at_smoke_scale_is_a_reported_stand_in(smoke, op):
    impl = build(op, smoke)
    (note, *_) = impl.notes()
    assert "RANDOMLY INITIALISED" in note and op.name in note


def test_a_broken_model_folder_is_an_error_even_at_smoke_scale(tmp_path):
    (tmp_path / "laion-aesthetic-v2" / "clip").mkdir(parents=True)
    with pytest.raises(OpConfigError, match="head.safetensors"):
        build(Aesthetic(min_score=5), OpContext(tmp_path, "smoke"))


def test_real_weights_leave_no_note_and_score_apart_from_the_stand_in(full, smoke):
    real, stand_in = build(Aesthetic(min_score=5), full), build(Aesthetic(min_score=5), smoke)
    assert real.notes() == []
    assert BoundOp(real, 224).score_id != BoundOp(stand_in, 224).score_id  # cached stand-in scores never reused


def test_stand_in_thresholds_become_quantiles_of_the_observed_scores(kit, smoke):
    records = [kit.image_record(f"s{i:02d}", i) for i in range(20)]
    run = kit.run_op(Aesthetic(min_score=6.5), records, smoke)
    values = sorted(r.scores["aesthetic"]["value"] for r in run.kept + run.ended)
    assert all(r.scores["aesthetic"]["stand_in"] == "laion-aesthetic-v2" for r in run.kept)
    assert 1 <= len(run.dropped) <= round(SMOKE_DROP_FRACTION * 20)  # not all dropped on the 0-10 scale
    assert "quantile" in run.ended[0].fate.detail and "6.5" in run.ended[0].fate.detail
    assert values[0] in {r.scores["aesthetic"]["value"] for r in run.ended}


def test_an_absolute_limit_is_kept_when_real_weights_score():
    limit = Limit("op.max_score", 0.5, "max", stand_in=False)
    assert limit.failure("a", 0.4) is None
    assert limit.failure("b", 0.6) == "0.6 > op.max_score 0.5"


@pytest.mark.slow
def test_a_smoke_run_of_model_ops_completes_without_weights(kit, tmp_path):
    from runtime.curation import run

    with tarfile.open(tmp_path / "in-000000.tar", "w") as tar:
        for i in range(12):
            for ext, data in {"png": kit.png(kit.texture(i)), "txt": f"caption {i % 5}".encode()}.items():
                info = tarfile.TarInfo(f"s{i:03d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ops = [Aesthetic(min_score=6.5), Safety(categories=["nsfw"]), SemanticDedup(clusters=3), ClipSimilarity()]
    report = run(ops, str(tmp_path / "in-000000.tar"), tmp_path / "out", scale="smoke", workers=1,
                 model_dir=tmp_path / "no-models")
    assert 0 < report.kept < 12
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["scale"] == "smoke"
    # Every model op says in the report that a random stand-in scored in place of its missing weights.
    for op in ops:
        assert any(note.startswith(f"{op.name} ") and "RANDOMLY INITIALISED" in note for note in written["notes"]), \
            (op.name, written["notes"])


def _hub_cache(root, model_id: str, revisions: list[str], main: str | None):
    repo = root / f"models--{model_id.replace('/', '--')}"
    for revision in revisions:
        (repo / "snapshots" / revision).mkdir(parents=True)
        (repo / "snapshots" / revision / "config.json").write_text("{}")
    if main is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(main + "\n")
    return repo


@pytest.mark.parametrize("layout", ["nested", "dashes", "hub", "hub_under_hub"])
def test_model_dir_accepts_org_name_folders_and_the_hub_cache(tmp_path, layout):
    """One resolver for the curation ops (OpContext.model_path) and the encoders (ModelDirectory)."""
    from runtime.encoders.model_directory import ModelDirectory

    model_id = "google/siglip-so400m-patch14-384"
    if layout == "nested":
        expected = tmp_path / "google" / "siglip-so400m-patch14-384"
    elif layout == "dashes":
        expected = tmp_path / "google--siglip-so400m-patch14-384"
    else:
        cache = tmp_path / "hub" if layout == "hub_under_hub" else tmp_path
        _hub_cache(cache, model_id, ["aaa111", "bbb222"], main="bbb222")
        expected = cache / "models--google--siglip-so400m-patch14-384" / "snapshots" / "bbb222"
    expected.mkdir(parents=True, exist_ok=True)
    (expected / "config.json").write_text("{}")

    assert OpContext(tmp_path, "full").model_path("safety", model_id) == expected
    entry = ModelDirectory(tmp_path).entry(model_id)
    assert entry.path == expected and entry.present


def test_a_hub_cache_with_several_snapshots_and_no_ref_is_an_error(tmp_path):
    _hub_cache(tmp_path, "org/model", ["aaa111", "bbb222"], main=None)
    with pytest.raises(OpConfigError, match=r"snapshots \['aaa111', 'bbb222'\] and no refs/main"):
        OpContext(tmp_path, "full").model_path("safety", "org/model")
    only = _hub_cache(tmp_path / "one", "org/model", ["ccc333"], main=None)
    assert OpContext(tmp_path / "one", "full").model_path("safety", "org/model") == only / "snapshots" / "ccc333"
