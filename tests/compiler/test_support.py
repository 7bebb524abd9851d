"""compiler/schema/support.py from the compiler's side: what it reports for a spec, and what field_support
says for the field reference. (tests/runtime/test_support.py checks the declaration against the runtime.)"""

import specs
from compiler.document import derive
from compiler.schema import support
from compiler.schema.architecture import DiT, MMDiT, SpacetimeDiT
from compiler.schema.data import Blur, MotionScore
from compiler.schema.schedule import Stage
from compiler.schema.spec import InferenceSpec


def test_every_shipped_spec_is_supported():
    assert {name: support.unsupported(specs.load(name)) for name in specs.SHIPPED} == {
        name: [] for name in specs.SHIPPED}


def test_each_unsupported_value_is_named_by_its_path_with_what_exists():
    spec = derive(specs.load("wan2.1-t2v-1.3b"), {
        "architecture.backbone.modulation": "adaln_per_block", "architecture.backbone.qk_norm": "layernorm_per_head",
        "inference.sampler": "ddim",
    })
    found = support.unsupported(spec)
    assert [(u.path, u.value) for u in found] == [
        ("architecture.backbone.qk_norm", "layernorm_per_head"), ("architecture.backbone.modulation", "adaln_per_block"),
        ("inference.sampler", "ddim")]
    assert "rmsnorm_per_head, rmsnorm_across_heads, none" in found[0].missing
    assert "euler, heun, dpm_solver, unipc" in found[2].missing


def test_field_support_states_narrower_runtime_support_and_none_otherwise():
    assert support.field_support(DiT, "modulation") == "adaln_single, adaln_expert"
    assert support.field_support(SpacetimeDiT, "text_conditioning") == (  # found on a base class
        "cross_attention with adaln_single, in_context with adaln_expert")
    assert "MMDiTs: rmsnorm_per_head, and none in the sd3 block style" in support.field_support(MMDiT, "qk_norm")
    assert support.field_support(MotionScore, "scorer") == "farneback, raft, unimatch (smoke scale only)"
    assert "flow_matching: euler, heun, dpm_solver, unipc" in support.field_support(InferenceSpec, "sampler")
    assert support.field_support(Stage, "steps") is None and support.field_support(Blur, "min_laplacian_var") is None


def test_op_lookups():
    assert support.op_implemented("blur") and support.op_implemented("motion_score", "farneback")
    assert support.op_implemented("motion_score", "raft")  # torchvision's RAFT, ported (runtime/curation/modelzoo/raft.py)
    assert not support.op_implemented("motion_score", "pwc-net") and not support.op_implemented("no_such_kind")
    assert support.op_smoke_only("technical_quality", "dover") and not support.op_smoke_only("blur")
