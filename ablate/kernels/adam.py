"""Adam (Kingma & Ba 2015), in place on a flat parameter vector, as torch.optim.Adam computes it.

    m ← β₁ m + (1 − β₁) g          v ← β₂ v + (1 − β₂) g²
    θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)       t = step ≥ 1
"""

import numpy as np

from ablate.kernels.jit import kernel


@kernel
def adam_step(params, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update of params [P] in place from grad [P]; m, v [P] are the moments."""
    bias1 = 1.0 - beta1**step
    bias2_sqrt = np.sqrt(1.0 - beta2**step)
    step_size = lr / bias1
    for k in range(params.size):
        g = grad[k]
        m[k] = beta1 * m[k] + (1.0 - beta1) * g
        v[k] = beta2 * v[k] + (1.0 - beta2) * g * g
        params[k] -= step_size * m[k] / (np.sqrt(v[k]) / bias2_sqrt + eps)
