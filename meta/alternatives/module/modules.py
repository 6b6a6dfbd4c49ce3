"""modules, as torch.nn.Module subclasses: Parameters, buffers, forward(), nn.Module's training flag.

parameters() is overridden to return a list in the lecture's order ([weight, bias], [gamma, beta],
[]), which is also the registration order nn.Module walks.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Linear(nn.Module):
    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        super().__init__()
        w = torch.randn(fan_in, fan_out, generator=generator).div_(math.sqrt(fan_in))
        self.weight = nn.Parameter(w)
        if bias:
            self.bias = nn.Parameter(torch.zeros(fan_out))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        # F.linear computes x @ A.T + b; our weight is (fan_in, fan_out), so A = weight.T
        self.out = F.linear(x, self.weight.t(), self.bias)
        return self.out

    def parameters(self, recurse=True):
        return list(super().parameters(recurse))


class BatchNorm1d(nn.Module):
    def __init__(self, dim, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x):
        if self.training:
            var, mean = torch.var_mean(x, dim=0, correction=0)
            with torch.no_grad():
                n = x.shape[0]
                unbiased = var.detach() * (n / (n - 1)) if n > 1 else torch.full_like(var, float("nan"))
                m = self.momentum
                # new tensors assigned to the registered buffers (nn.Module keeps them as buffers)
                self.running_mean = torch.add(self.running_mean * (1 - m), mean.detach(), alpha=m)
                self.running_var = torch.add(self.running_var * (1 - m), unbiased, alpha=m)
        else:
            mean, var = self.running_mean, self.running_var
        self.out = (x - mean) * torch.rsqrt(var + self.eps) * self.gamma + self.beta
        return self.out

    def parameters(self, recurse=True):
        return list(super().parameters(recurse))


class Tanh(nn.Module):
    def forward(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self, recurse=True):
        return []
