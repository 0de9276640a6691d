"""Our FPN Faster R-CNN state-dict keys -> GluonCV's parameter names.

GluonCV's ``FPNFeatureExpander`` is a ``SymbolBlock``: its parameters (the ResNet's included) are
saved under flat MXNet symbol names, ``features.<prefix>_<block>_<leaf>``, where ``<prefix>`` is
the ResNet builder's (``resnetv1b`` for ``resnet50_v1b``, ``resnetv1d`` for ``resnet101_v1d``)
and convs / norms are counted per stage across blocks (a bottleneck has 3 of each, so block
``i``'s ``conv{j}`` is ``layers{s}_conv{3i + j - 1}``); the shortcut is ``down{s}_conv0`` /
``down{s}_batchnorm0``; the deep stem's convs are ``conv0..2`` and its norms ``batchnorm0..1``,
``bn1`` following as ``batchnorm2`` (``batchnorm0`` with the 7x7 stem). FPN convs keep their
symbol names (``P2_conv_lat``), and symbolic norms store ``moving_mean``/``moving_var``.
GluonCV names a norm block after its class: ``batchnorm`` in the plain models' frozen backbones,
``syncbatchnorm`` in the SyncBN variants (``norm='syncbatchnorm'``; their FPN norms are symbols
and keep the ``P{n}_..._bn`` names either way).
Verified against ``_collect_params_with_prefix()`` of GluonCV's faster_rcnn_fpn_resnet50_v1b_coco
(302 names), faster_rcnn_fpn_resnet101_v1d_coco (567) and their ``fpn_syncbn`` variants (332,
612), tests/model_zoo/test_fpn.py and test_fpn_syncbn.py. The mapping holds for bottleneck
ResNets (GluonCV's FPN zoo).
"""
import re

__all__ = ["fpn_to_gluoncv"]

_BACKBONE = re.compile(r"^features\.(?P<net>resnetv1[a-z])\.(?P<rest>.+)\.(?P<leaf>[a-z_]+)$")


def _resnet_name(net: str, rest: str, leaf: str, bn: str = "batchnorm") -> str:
    """GluonCV's flat symbol name of a bottleneck ResNetV1b parameter (3 convs per block);
    ``bn``: GluonCV's name of the norm blocks."""
    deep = not net.endswith("v1b")
    norm = leaf != "weight"
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)", rest)
    if m:
        s, i, kind, j = m.groups()
        return f"{net}_layers{s}_{'conv' if kind == 'conv' else bn}" \
               f"{3 * int(i) + int(j) - 1}_{leaf}"
    m = re.fullmatch(r"layer(\d)\.0\.downsample\.\d", rest)
    if m:
        return f"{net}_down{m.group(1)}_{bn + '0' if norm else 'conv0'}_{leaf}"
    if rest == "conv1":
        return f"{net}_conv0_{leaf}"
    m = re.fullmatch(r"conv1\.(\d)", rest)
    if m:  # deep stem: conv, norm, relu, conv, norm, relu, conv
        return f"{net}_{bn if norm else 'conv'}{int(m.group(1)) // 3}_{leaf}"
    if rest == "bn1":
        return f"{net}_{bn}{2 if deep else 0}_{leaf}"
    return f"{net}_{rest.replace('.', '_')}_{leaf}"


def fpn_to_gluoncv(key: str, norm: str = "batchnorm") -> str:
    """Our state-dict key (norm weight/bias already gamma/beta) -> GluonCV's FPN name, e.g.
    ``features.resnetv1b.layer1.2.conv3.weight`` -> ``features.resnetv1b_layers1_conv8_weight``,
    ``features.P5_lat_bn.running_mean`` -> ``features.P5_lat_bn_moving_mean``; keys outside
    ``features`` are GluonCV's already (``rpn.rpn_head.conv1.0.weight``). ``norm``: GluonCV's
    name of the backbone's norm blocks (``'syncbatchnorm'`` for the SyncBN variants)."""
    m = _BACKBONE.match(key)
    if m:
        return "features." + _resnet_name(m["net"], m["rest"], m["leaf"], norm)
    m = re.fullmatch(r"features\.(P\d_[a-z0-9_]+)\.([a-z_]+)", key)
    if m:
        leaf = m.group(2).replace("running_", "moving_")
        return f"features.{m.group(1)}_{leaf}"
    return key
