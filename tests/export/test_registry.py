"""The registry: exact published names, unique keys, helpful errors, metadata that agrees with the module."""

from __future__ import annotations

import pytest
from torch import nn

from export.zoo import build_model, get_spec, list_models, register_model
from export.zoo.registry import UnknownModelError
from service.manifest import Paper, Reference

# The catalogue of the survey, as published: these names are a contract and never change.
PUBLISHED = """
lenet5 lenet5_digits alexnet zfnet zfnet_wide vgg16 vgg19 googlenet
highway_mlp highway_cifar resnet18 resnet34 resnet50 resnet101 resnet152 resnet110_cifar
preact_resnet164_cifar preact_resnet1001_cifar bn_inception inception_v3 inception_v4
inception_resnet_v1 inception_resnet_v2
wrn_16_8 wrn_28_10 wrn_40_4 wide_resnet50_2 pyramidnet110_a48 pyramidnet110_a84 pyramidnet110_a270
pyramidnet164_bottleneck_a270 xception resnext50_32x4d resnext101_32x4d
se_resnet50 se_resnet101 se_resnet152 cmpe_se_resnet50 cmpe_se_resnet50_fc cmpe_se_resnet50_conv2x1
cmpe_se_resnet50_conv1x1 cb_cnn cbam_resnet50 scse_resnet50 residual_attention56 residual_attention92
mobilenet_v1 mobilenet_v2 mobilenet_v3_large mobilenet_v3_small
shufflenet_v1_g1 shufflenet_v1_g2 shufflenet_v1_g3 shufflenet_v1_g4 shufflenet_v1_g8
shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0
""".split()


def test_every_published_name_is_registered():
    missing = sorted(set(PUBLISHED) - set(list_models()))
    assert not missing, f"not registered: {missing}"


def test_names_are_unique_and_duplicates_raise():
    names = list_models()
    assert len(names) == len(set(names))
    spec = get_spec(names[0])
    with pytest.raises(ValueError, match="already registered"):
        register_model(name=names[0], family=spec.family, paper=spec.paper, reference=spec.reference)(spec.builder)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownModelError) as err:
        get_spec("resnet5O")
    message = str(err.value)
    assert "resnet50" in message and "Did you mean" in message and "lenet5" in message


def test_builder_arguments_override_spec_kwargs():
    model = build_model("resnet18", num_classes=7)
    assert isinstance(model, nn.Module) and model.fc.out_features == 7


@pytest.mark.parametrize("name", list_models())
def test_spec_metadata_is_complete(name):
    spec = get_spec(name)
    assert isinstance(spec.paper, Paper) and 1989 <= spec.paper.year <= 2020
    assert isinstance(spec.reference, Reference) and spec.reference.params > 0 and spec.reference.source
    c, h, w = spec.input_size
    assert (c, h, w) == (spec.preprocessing.crop and c, spec.preprocessing.crop, spec.preprocessing.crop)
    assert len(spec.preprocessing.mean) == len(spec.preprocessing.std) == c
    assert spec.preprocessing.color_mode == ("L" if c == 1 else "RGB")
    assert spec.builder.__name__ == name
    for library in spec.pretrained:
        assert library in ("torchvision", "timm")
