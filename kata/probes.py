"""Small helpers that run in the learner process, next to learner code, for what a test cannot do
from its own side of the boundary: backpropagate through learner code, copy values into a
learner object's tensors in place, update its parameters through parameters().

A test calls them with `kata.remote.probe(name, ...)`; what they return crosses back as plain data
like any learner result. They are the kata's code, but they run among learner objects, so a
learner could change what they report: they may only ever compute values that the test then
checks on its own side (a gradient, a parameter list), never a verdict.
"""
from __future__ import annotations

import torch


def vjp(target, args, kwargs, upstream, wrt=None, grads_of=()):
    """Run target(*args, **kwargs) (or each target of a list in turn, feeding each output to the
    next) with autograd on, backpropagate sum(out * upstream), and return the output and the
    gradients: of the tensor arguments at the positions `wrt` (default: every floating-point one)
    and of each (object, attribute name) in `grads_of`."""
    args = list(args)
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()] \
        if wrt is None else list(wrt)
    with torch.enable_grad():
        for i in positions:
            args[i] = args[i].detach().requires_grad_()
        watched = []
        for obj, name in grads_of:
            t = getattr(obj, name, None)
            if isinstance(t, torch.Tensor) and t.is_leaf and t.is_floating_point():
                t.requires_grad_()
                t.grad = None
            watched.append(t)
        out = args[0] if isinstance(target, list) else None
        if isinstance(target, list):
            for layer in target:
                out = layer(out)
        else:
            out = target(*args, **kwargs)
        graph = isinstance(out, torch.Tensor) and out.requires_grad
        if graph and out.shape == upstream.shape:
            (out * upstream).sum().backward()  # a scalar backward: the same gradient as out.backward(upstream)
            grads = [args[i].grad if i in positions else None for i in range(len(args))]
            attrs = [t.grad if isinstance(t, torch.Tensor) else None for t in watched]
        else:
            grads, attrs = None, None
    return {"out": out, "graph": graph, "grads": grads, "attrs": attrs}


def assign(obj, name, value):
    """Copy `value` into obj.<name> in place, as a training loop's `p.data` update would: the
    object keeps its own tensor (a torch.nn.Parameter stays one). A missing or None attribute, or
    one of another size, is set instead."""
    current = getattr(obj, name, None)
    if isinstance(current, torch.Tensor) and current.numel() == value.numel():
        with torch.no_grad():
            current.copy_(value.reshape(current.shape))
    else:
        setattr(obj, name, value)


def step_parameters(obj, steps):
    """p.data += step for each parameter, through obj.parameters(), as the lecture's loop does."""
    for p, step in zip(obj.parameters(), steps):
        p.data += step


def attributes(objects, names):
    """[{name: getattr(obj, name, None)} for obj in objects]: several reads in one call."""
    return [{name: getattr(obj, name, None) for name in names} for obj in objects]
