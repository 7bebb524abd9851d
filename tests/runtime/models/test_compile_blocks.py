"""runtime.models.compile: every repeated block compiles with fullgraph=True and no graph breaks, and the
compiled model predicts what the eager one does."""

import pytest
import torch
import torch._dynamo

from runtime.models import (
    MMDiT,
    MMDiTConfig,
    QwenImageConfig,
    QwenImageMMDiT,
    UNetConfig,
    WanDiT,
    WanDiTConfig,
    compile_blocks,
)

FAMILIES = {
    "flux": (MMDiT, MMDiTConfig, "flux_kwargs", "flux_inputs"),
    "qwen_image": (QwenImageMMDiT, QwenImageConfig, "qwen_image_kwargs", "qwen_image_inputs"),
    "wan": (WanDiT, WanDiTConfig, "wan_kwargs", "wan_inputs"),
    "efficient_unet": (lambda config: config.build(), UNetConfig, "unet_kwargs", "unet_inputs"),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    model_cls, config_cls, kwargs_fixture, inputs_fixture = FAMILIES[request.param]
    torch.manual_seed(0)
    model = model_cls(config_cls(**request.getfixturevalue(kwargs_fixture))).eval()
    return model, request.getfixturevalue(inputs_fixture)


def first_block_arguments(model, inputs):
    """The (args, kwargs) each block class is called with in an eager forward."""
    calls = {}
    hooks = []
    for name in model.repeated_blocks:
        block = getattr(model, name)[0]

        def record(module, args, kwargs, name=name):
            calls[name] = (module, args, kwargs)

        hooks.append(block.register_forward_pre_hook(record, with_kwargs=True))
    with torch.no_grad():
        model(**inputs)
    for hook in hooks:
        hook.remove()
    return calls


def test_every_block_class_traces_without_graph_breaks(family):
    model, inputs = family
    for name, (block, args, kwargs) in first_block_arguments(model, inputs).items():
        with torch.no_grad():
            explanation = torch._dynamo.explain(block)(*args, **kwargs)
        assert explanation.graph_break_count == 0, (name, explanation.break_reasons)
        assert explanation.graph_count == 1, name


def test_compiled_blocks_match_eager_and_keep_state_dict_keys(family):
    model, inputs = family
    keys = list(model.state_dict())
    with torch.no_grad():
        eager = model(**inputs)
        compile_blocks(model)
        compiled = model(**inputs)
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)


def test_compile_blocks_needs_named_block_lists():
    with pytest.raises(TypeError, match="has no `repeated_blocks` attribute"):
        compile_blocks(torch.nn.Linear(2, 2))
