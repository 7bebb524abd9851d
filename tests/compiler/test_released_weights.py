"""init_from naming released weights: the schema field, its checks, the bundle it compiles to, smoke scale and
preflight; and flux-kontext, whose edit stages start from the released FLUX.1 [dev]."""

import json

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.document import derive, from_document, to_document
from compiler.preflight import _model_ids
from compiler.schema import ReleasedWeights
from compiler.validate import validate

FLUX_DEV = "black-forest-labs/FLUX.1-dev"


def test_a_released_file_must_be_safetensors_inside_the_models_folder():
    with pytest.raises(ValidationError, match=r"init_from.file is 'flux1-dev.ckpt'; the runtime reads safetensors"):
        ReleasedWeights(released=FLUX_DEV, file="flux1-dev.ckpt")
    with pytest.raises(ValidationError, match=r"init_from.subfolder is '../elsewhere'; give a path inside"):
        ReleasedWeights(released=FLUX_DEV, subfolder="../elsewhere")


def test_init_from_is_a_stage_name_or_released_weights_through_a_document_round_trip(wan_spec):
    released = ReleasedWeights(released="Wan-AI/Wan2.1-T2V-1.3B", layout="wan")
    spec = derive(wan_spec, {"schedule.stages[joint].init_from": released})
    assert validate(spec) == []  # the wan layout fills a Wan-like DiT
    back = from_document(*to_document(spec))
    stages = {stage.name: stage for stage in back.schedule.stages}
    assert stages["joint"].init_from == released and stages["joint"].init_stage is None
    assert stages["joint"].init_released == released
    named = derive(wan_spec, {"schedule.stages[joint].init_from": "images"})
    assert [s.init_from for s in named.schedule.stages if s.name == "joint"] == ["images"]


@pytest.fixture(scope="module")
def kontext_bundles(tmp_path_factory):
    """flux-kontext compiled at full scale for h100-64 and at smoke scale for local-cpu."""
    root = tmp_path_factory.mktemp("kontext")
    for scale, cluster in (("full", "h100-64"), ("smoke", "local-cpu")):
        result = CliRunner().invoke(app, ["compile", "flux-kontext", "--cluster", cluster, "--scale", scale,
                                          "-o", str(root / scale)])
        assert result.exit_code == 0, result.output
    return root


def stage_yaml(bundle, stage):
    return YAML(typ="safe").load((bundle / "train" / stage / "stage.yaml").read_text())


def test_kontext_starts_from_the_released_flux1_dev_without_replaying_flux1(kontext_bundles):
    kontext = specs.load("flux-kontext")
    assert [stage.name for stage in kontext.schedule.stages] == ["kontext_flow_matching", "kontext_ladd"]
    assert [pipeline.name for pipeline in kontext.data.pipelines] == ["kontext"]
    assert kontext.schedule.stages[0].init_released.model_dump() == {
        "released": FLUX_DEV, "layout": "bfl", "subfolder": None, "file": "flux1-dev.safetensors"
    }
    document = stage_yaml(kontext_bundles / "full", "kontext_flow_matching")
    assert document["stage"]["init_from"]["released"] == FLUX_DEV and document["init_from"] is None
    jobs = json.loads((kontext_bundles / "full" / "plan.json").read_text())
    assert "timestep_shifting" not in json.dumps(jobs)


def test_the_stage_graph_shows_the_released_weights_initialising_the_stage():
    from compiler.graph.build import build

    graph = build(specs.load("flux-kontext")).graph
    edge = graph.get_edge_data(f"released:{FLUX_DEV}", "stage:kontext_flow_matching")
    assert edge["initialises"]["path"] == "schedule.stages[kontext_flow_matching].init_from"
    assert graph.nodes[f"released:{FLUX_DEV}"]["name"] == f"released {FLUX_DEV}"


def test_replaying_pretraining_stays_an_option():
    from specs.flux import FLUX_KONTEXT_REPLAYING_PRETRAINING as replay

    names = [stage.name for stage in replay.schedule.stages]
    assert names == ["pretrain", "highres_finetune", "timestep_shifting", "kontext_flow_matching", "kontext_ladd"]
    assert replay.schedule.stages[3].init_from == "timestep_shifting"
    assert validate(replay) == []


def test_smoke_scale_starts_a_released_stage_from_scratch_and_says_so(kontext_bundles):
    assert stage_yaml(kontext_bundles / "smoke", "kontext_flow_matching")["stage"]["init_from"] is None
    assumptions = (kontext_bundles / "smoke" / "assumptions.md").read_text()
    assert "smoke scale: black-forest-labs/FLUX.1-dev's weights do not fit the smoke widths" in assumptions


def test_preflight_lists_the_released_weights_among_the_models(kontext_bundles):
    needed, _ = _model_ids(kontext_bundles / "full")
    assert needed[FLUX_DEV] == "train/kontext_flow_matching/stage.yaml"
