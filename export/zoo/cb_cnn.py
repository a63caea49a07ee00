"""Channel-Boosted CNN (Khan, Sohail, Ali 2018, arXiv 1804.08528), as one image classifier.

The paper's idea: transfer learning at two stages. First, auto-encoders trained separately on the data
(stacked, sparse: a KL penalty holds their mean activations at a small target) turn the input into extra
"boosted" channels. Then these channels are concatenated with the original ones into a channel-boosted image,
and a pre-trained Inception-v3, whose first conv is widened to take the boosted channel count, is fine-tuned
on it (its final FC trained from scratch).

The paper applies this to telecom churn (tabular features reshaped into a one-channel image, two classes) and
does not publish the auto-encoder sizes. For the zoo, CB-CNN is built as an ImageNet classifier on RGB
299x299 images, with choices of ours where the paper is silent:

* each auto-encoder contributes its stacked encoder: two 3x3 conv layers with sigmoid units (the sparsity
  penalty needs activations in (0, 1)) and no downsampling, so its codes are maps at the input's resolution
  (`boost_channels` of them, 3 by default: one "boosted image" per auto-encoder). The decoders serve only the
  separate, unsupervised training stage and are not part of the deployed network;
* `num_autoencoders` (2 by default) encoders run side by side on the image; their codes follow the three
  original channels, so Inception-v3 sees 3 + num_autoencoders * boost_channels channels;
* the backbone is torchvision's `Inception3` without its auxiliary head, whose `Conv2d_1a_3x3` is replaced by
  the same conv-BN-ReLU (torchvision's `BasicConv2d`, 3x3 stride 2) taking the boosted channels. To start from
  ImageNet weights, copy the RGB filters into its first three input channels.

The whole pipeline (boosting and classification) is one module: one graph from the 3-channel image to logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.inception import BasicConv2d, Inception3

from export.zoo.layers import ConvNormAct
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

# ------------------------------------------------------------------------------------------------ blocks


class BoostEncoder(nn.Sequential):
    """The stacked encoder of one sparse convolutional auto-encoder: its codes are the boosted channels."""

    def __init__(
        self,
        in_channels: int = 3,
        hidden_channels: int = 16,
        boost_channels: int = 3,
        act_layer: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__(
            ConvNormAct(in_channels, hidden_channels, 3, norm_layer=None, act_layer=act_layer),
            ConvNormAct(hidden_channels, boost_channels, 3, norm_layer=None, act_layer=act_layer),
        )
        self.out_channels = boost_channels


class ChannelBooster(nn.Module):
    """Concatenates the original channels with the codes of each auto-encoder (the channel-boosted image)."""

    def __init__(self, encoders: list[nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(encoder(x) for encoder in self.encoders)], dim=1)


# ----------------------------------------------------------------------------------------------- network


class ChannelBoostedCNN(nn.Module):
    """booster (image -> image + boosted channels) -> backbone (any classifier taking the widened input)."""

    def __init__(self, booster: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.booster = booster
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.booster(x))


# -------------------------------------------------------------------------------------- private factory


def _inception_v3_backbone(in_channels: int, num_classes: int) -> Inception3:
    """torchvision Inception-v3 (no auxiliary head) whose first conv takes `in_channels` channels."""
    backbone = Inception3(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)
    backbone.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
    # The same truncated-normal init torchvision gives every other conv of the network.
    nn.init.trunc_normal_(backbone.Conv2d_1a_3x3.conv.weight, std=0.1, a=-2, b=2)
    return backbone


def _cb_cnn(
    num_autoencoders: int = 2,
    boost_channels: int = 3,
    hidden_channels: int = 16,
    in_channels: int = 3,
    num_classes: int = 1000,
) -> ChannelBoostedCNN:
    encoders = [BoostEncoder(in_channels, hidden_channels, boost_channels) for _ in range(num_autoencoders)]
    backbone = _inception_v3_backbone(in_channels + num_autoencoders * boost_channels, num_classes)
    return ChannelBoostedCNN(ChannelBooster(encoders), backbone)


# ------------------------------------------------------------------------------------ paper, constants

PAPER = Paper(
    title="A New Channel Boosted Convolutional Neural Network using Transfer Learning",
    authors="Khan, Sohail, Ali",
    year=2018,
    url="https://arxiv.org/abs/1804.08528",
)
# Inception-v3 without its aux head (23,834,568) + 2 encoders of (3*16*9 + 16) + (16*3*9 + 3) = 883
# + the widened first conv's 6 extra input channels (32*6*9 = 1,728).
REFERENCE = Reference(
    params=23_838_062,
    source="computed: torchvision Inception-v3 without AuxLogits (23,834,568) + two auto-encoder encoders "
    "(2 x 883) + the first conv widened from 3 to 9 input channels (1,728); the paper publishes no count",
)


# ------------------------------------------------------------------------------------------------ builder


@register_model(
    family="CB-CNN",
    paper=PAPER,
    reference=REFERENCE,
    input_size=(3, 299, 299),
    # Inception-v3's preprocessing (torchvision weights: resize 342, crop 299, inputs in [-1, 1]).
    preprocessing=imagenet_preprocessing(crop=299, resize=342, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
)
def cb_cnn(**kwargs) -> ChannelBoostedCNN:
    return _cb_cnn(**kwargs)
