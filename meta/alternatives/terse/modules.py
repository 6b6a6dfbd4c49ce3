"""modules, terse style: addmm, rsqrt, in-place buffer updates on detached stats."""
import math

import torch


class Linear:
    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        self.weight = torch.randn(fan_in, fan_out, generator=generator).mul_(1.0 / math.sqrt(fan_in))
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x.matmul(self.weight) if self.bias is None else torch.addmm(self.bias, x, self.weight)
        return self.out

    def parameters(self):
        return [p for p in (self.weight, self.bias) if p is not None]


class BatchNorm1d:
    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        if self.training:
            var, mean = torch.var_mean(x, dim=0, correction=0)
            xd = x.detach()
            self.running_mean.lerp_(xd.mean(0), self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(xd.var(0, correction=1), alpha=self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        self.out = torch.addcmul(self.beta, (x - mean) * (var + self.eps).rsqrt(), self.gamma)
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:
    def __call__(self, x):
        self.out = x.tanh()
        return self.out

    def parameters(self):
        return []
