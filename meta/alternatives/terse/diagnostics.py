"""diagnostics, terse style: float64 statistics on detached tensors."""


def activation_stats(t, threshold=0.97):
    td = t.detach().double()
    return {"mean": float(td.mean()), "std": float(td.std()),
            "saturated": float(td.abs().gt(threshold).double().mean())}


def grad_to_data_ratio(param, grad):
    return float(grad.detach().double().std() / param.detach().double().std())
