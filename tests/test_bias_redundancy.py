"""Topic 8, bias_redundancy: finding and removing the biases that sit right before a BatchNorm1d,
checked on layer lists built from the implementation's own modules (so isinstance works as it does
in the learner's code), and the lecture's reason shown with autograd. Run: pytest -m bias_redundancy

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""

import pytest
import torch

from kata.remote import probe
from kata.testing import default_dtype, expect, expect_global_state_kept, fail, same_object, vjp

pytestmark = pytest.mark.bias_redundancy


F64 = torch.float64


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("bias_redundancy")


@pytest.fixture(scope="module")
def modules(impl):
    return impl.load("modules")  # the same module object bias_redundancy imports with `from .modules import`


def float64_default():
    """Build the layers in float64, so they compare with torch at float64 tolerance (and a gradient
    that is zero in exact arithmetic is ~1e-16)."""
    return default_dtype(F64)


def build(modules, gen, spec, width=4):
    """Layers from a short spec: 'L' Linear with bias, 'l' Linear(bias=False), 'B' BatchNorm1d, 'T' Tanh.
    The Linear at position k has fan_out width + k + 1, so that bias sizes differ."""
    layers, fan_in = [], width
    for k, code in enumerate(spec):
        if code in "Ll":
            fan_out = width + k + 1
            layers.append(modules.Linear(fan_in, fan_out, bias=code == "L", generator=gen))
            fan_in = fan_out
        elif code == "B":
            layers.append(modules.BatchNorm1d(fan_in))
        else:
            layers.append(modules.Tanh())
    return layers


def expected_indices(spec):
    """The rule, written out: a Linear with a bias whose next layer is a BatchNorm1d."""
    return [i for i in range(len(spec) - 1) if spec[i] == "L" and spec[i + 1] == "B"]


def find(topic, layers, spec):
    """Call redundant_biases; an IndexError (a trailing Linear read past the end) fails with the call shown."""
    shown = f"redundant_biases(layers = [{', '.join(spec_names(spec))}])"
    try:
        return topic.redundant_biases(layers), shown
    except IndexError as e:
        fail(f"{shown} raised IndexError ({e}): a Linear at the end of the list has no next layer; look at "
             "layers[i + 1] only for i < len(layers) - 1 (zip(layers, layers[1:]) does that)")


def following(spec, i):
    return spec_names(spec[i + 1])[0] if i + 1 < len(spec) else "nothing (it is the last layer)"


def spec_names(spec):
    return [{"L": "Linear", "l": "Linear(bias=False)", "B": "BatchNorm1d", "T": "Tanh"}[c] for c in spec]


def expect_indices(got, spec, shown):
    """A list of Python ints, in increasing order, equal to the rule's answer."""
    expected = expected_indices(spec)
    expect(isinstance(got, list) and all(type(i) is int for i in got),
           f"{shown} returned {got!r}, expected a list of Python ints {expected}")
    if got == expected:
        return
    fail(f"{shown} returned {got}, expected {expected}: the indices i where layers[i] is a Linear with a bias "
         "and layers[i + 1] is a BatchNorm1d, in increasing order")


# Each spec is a layer list (L: Linear, l: Linear(bias=False), B: BatchNorm1d, T: Tanh), grouped by
# what it teaches: a bias before a Tanh or at the end is not redundant; a Linear without a bias has
# none to drop; a BatchNorm followed by a Linear is not a pair; adjacent pairs are each found.
CASES = {"before_tanh_or_last": ["LTLBTL", "LBLTLB", "TLBL", "LL"], "no_bias": ["lBT", "lBTLB", "LBlBlBT"],
         "batchnorm_first": ["BLT", "BLTBL", "TBL"], "adjacent_pairs": ["LBLB", "LLB", "LBLBLBT"]}


# ---------------------------------------------------------------- drop_redundant_biases
def count(layers):
    """Parameters of a layer list, counted from the tensors themselves (read in one call)."""
    names = ("weight", "bias", "gamma", "beta")
    return sum(t.numel() for found in probe("attributes", layers, names) for t in found.values()
               if isinstance(t, torch.Tensor))


def lecture_deep_net(modules, gen):
    layers, fan_in = [], 30
    for fan_out in [100] * 5 + [27]:
        layers += [modules.Linear(fan_in, fan_out, generator=gen), modules.BatchNorm1d(fan_out)]
        layers += [modules.Tanh()] if fan_out != 27 else []
        fan_in = fan_out
    return layers


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("spec", ["", "L", "B", "T", "LT"])
def test_redundant_biases_returns_an_empty_list_when_nothing_is_redundant(topic, modules, gen, spec):
    got, shown = find(topic, build(modules, gen, spec), spec)
    expect(got == [] and type(got) is list, f"{shown} returned {got!r}, expected [] (an empty list)")


def test_redundant_biases_finds_every_linear_before_batchnorm_in_the_lecture_deep_net(topic, modules, gen):
    spec = "LBT" * 5 + "LB"  # the deep net built with the default bias=True
    got, shown = find(topic, build(modules, gen, spec), spec)
    expect_indices(got, spec, shown)
    expect(got == [0, 3, 6, 9, 12, 15], f"{shown} returned {got}, expected [0, 3, 6, 9, 12, 15]")


@pytest.mark.parametrize("spec", [pytest.param(spec, id=f"{what}:{spec}") for what, specs in CASES.items()
                                  for spec in specs])
def test_redundant_biases_finds_exactly_the_linears_with_a_bias_right_before_a_batchnorm(topic, modules, gen, spec):
    got, shown = find(topic, build(modules, gen, spec), spec)
    expect_indices(got, spec, shown)


@pytest.mark.parametrize("case", range(5))
def test_redundant_biases_matches_the_rule_on_random_layer_lists(topic, modules, gen, case):
    length = int(torch.randint(2, 12, (), generator=gen))
    spec = "".join("LlBT"[int(k)] for k in torch.randint(0, 4, (length,), generator=gen))
    layers = build(modules, gen, spec)
    biases = [getattr(layer, "bias", None) for layer in layers]
    got, shown = find(topic, layers, spec)
    expect_indices(got, spec, shown)
    expect(all(same_object(getattr(layer, "bias", None), b) for layer, b in zip(layers, biases)),
           f"{shown} changed a layer's bias: redundant_biases only finds them; drop_redundant_biases removes them")


def test_drop_redundant_biases_removes_527_scalars_from_the_lecture_deep_net(topic, modules, gen):
    layers = lecture_deep_net(modules, gen)
    embedding = 27 * 10  # C
    before = count(layers) + embedding
    shown = "drop_redundant_biases(the lecture's deep net with bias=True)"
    removed = topic.drop_redundant_biases(layers)
    expect(type(removed) is int, f"{shown} returned {type(removed).__name__} {removed!r}, expected a Python int")
    expect(removed != 6, f"{shown} returned 6, expected 527: count the scalars removed (5 * 100 + 27), not the "
                         "layers")
    expect(removed == 527, f"{shown} returned {removed}, expected 527 = 5 * 100 + 27 (the six biases before a "
                           "BatchNorm1d)")
    after = count(layers) + embedding
    expect(after == 47_024, f"after {shown} the net has {after} parameters (it had {before}), expected the "
                            "lecture's 47,024")


def test_drop_redundant_biases_sets_exactly_those_biases_to_none(topic, modules, gen):
    spec = "LBTLTLlBLB"
    layers = build(modules, gen, spec)
    kept = {i: layer.bias for i, layer in enumerate(layers) if spec[i] == "L" and i not in expected_indices(spec)}
    sizes = sum(layers[i].bias.numel() for i in expected_indices(spec))
    shown = f"drop_redundant_biases(layers = [{', '.join(spec_names(spec))}])"
    original, weights = list(layers), [getattr(layer, "weight", None) for layer in layers]
    removed = topic.drop_redundant_biases(layers)
    expect(len(layers) == len(original) and all(a is b for a, b in zip(layers, original))
           and all(same_object(getattr(a, "weight", None), w) for a, w in zip(layers, weights)),
           f"after {shown} the list no longer holds the same layers with the same weights: set layers[i].bias = "
           "None on the existing Linear (in place); do not rebuild, remove or reorder layers")
    for i in expected_indices(spec):
        bias = layers[i].bias
        expect(bias is None, f"after {shown}, layers[{i}].bias is {type(bias).__name__}, expected None: remove the "
                             "bias (bias = None) so it is no longer a parameter; a zero tensor is still trained")
    for i, bias in kept.items():
        expect(same_object(layers[i].bias, bias),
               f"after {shown}, layers[{i}].bias (a Linear followed by {following(spec, i)}) was changed: only "
               "a bias right before a BatchNorm1d is redundant")
    expect(type(removed) is int and removed == sizes,
           f"{shown} returned {removed!r}, expected {sizes}: the number of scalars in the removed biases")


def test_drop_redundant_biases_counts_scalars_not_layers(topic, modules, gen):
    spec = "LBTLB"  # biases of 5 and 8 scalars (build widens each Linear)
    layers = build(modules, gen, spec)
    expected = layers[0].bias.numel() + layers[3].bias.numel()
    shown = f"drop_redundant_biases(layers = [{', '.join(spec_names(spec))}])"
    removed = topic.drop_redundant_biases(layers)
    expect(removed != 2, f"{shown} returned 2, expected {expected}: count the scalars removed "
                         "(bias.numel() of each), not the layers")
    expect(type(removed) is int and removed == expected, f"{shown} returned {removed!r}, expected {expected}")


def test_drop_redundant_biases_is_idempotent(topic, modules, gen):
    spec = "LBTLBTL"
    layers = build(modules, gen, spec)
    shown = f"drop_redundant_biases(layers = [{', '.join(spec_names(spec))}])"
    first = topic.drop_redundant_biases(layers)
    expect(layers[-1].bias is not None, f"after {shown}, the last Linear (followed by no BatchNorm1d) lost its "
                                        "bias: only a bias right before a BatchNorm1d is redundant")
    expect(first == 5 + 8, f"{shown} returned {first!r}, expected 13 (biases of 5 and 8 scalars)")
    second = topic.drop_redundant_biases(layers)
    expect(second == 0 and type(second) is int,
           f"calling {shown} a second time returned {second!r}, expected 0: the first call already removed them")


def test_redundant_biases_are_exactly_those_whose_gradient_is_zero(topic, modules, gen):
    spec = "LBTLTLB"
    with float64_default():
        layers = build(modules, gen, spec)
    linears = [i for i, c in enumerate(spec) if c == "L"]
    for i in linears:  # not zeros: the bias's value must not matter either
        probe("assign", layers[i], "bias", torch.randn(layers[i].bias.shape, generator=gen, dtype=F64))
    x = torch.randn(16, 4, generator=gen, dtype=F64)
    fan_out = 4 + linears[-1] + 1  # build() widens the Linear at position k to width + k + 1
    upstream = torch.randn(16, fan_out, generator=gen, dtype=F64)  # not all-ones: a sum hides errors
    ours = vjp(layers, (x,), upstream, grads_of=[(layers[i], "bias") for i in linears])  # there, through every layer
    grads = dict(zip(linears, ours.attrs or [None] * len(linears)))
    expect(all(g is not None for g in grads.values()), "the layers' forward pass gave no gradient to some bias: "
                                                       "your modules' forward or backward differs from the lecture's")
    # In exact arithmetic the gradient is 0; in float64 each of the 16 summed terms carries ~1e-16 error.
    zero = [i for i in linears if grads[i].abs().max().item() < 1e-10]
    expect(zero == [0, 5] and grads[3].abs().max().item() > 1e-6,
           f"biases with zero gradient at {zero}, expected [0, 5] (the Linears before a BatchNorm1d; the one before "
           "the Tanh does learn): your modules' forward or backward differs from the lecture's")
    got, shown = find(topic, layers, spec)
    expect_indices(got, spec, shown)
    expect(got == zero, f"{shown} returned {got}; the biases whose gradient is zero (they never learn, because "
                        f"BatchNorm1d subtracts the batch mean and with it any bias) are at {zero}")


def test_redundant_biases_leaves_grad_mode_and_default_dtype_as_found(topic, modules, gen):
    spec = "LBTLT"
    layers = build(modules, gen, spec)
    shown = f"redundant_biases(layers = [{', '.join(spec_names(spec))}])"
    expect_global_state_kept(lambda: topic.redundant_biases(layers), shown,
                             lambda got: expect(isinstance(got, list), f"{shown} returned {got!r}, expected a list"))


def test_drop_redundant_biases_leaves_grad_mode_and_default_dtype_as_found(topic, modules, gen):
    spec = "lBTLBL"
    shown = f"drop_redundant_biases(layers = [{', '.join(spec_names(spec))}])"

    def run():  # a fresh net each time: a second drop has nothing left to remove
        return topic.drop_redundant_biases(build(modules, gen, spec))

    expect_global_state_kept(run, shown, lambda removed: expect(type(removed) is int,
                                                                f"{shown} returned {removed!r}, expected an int"))
