#!/usr/bin/env python3
"""Training with python/attn.py against PyTorch 1.13: an MHA layer (embed 16,
4 heads, self-attention on a batch of 2 sequences of 5) trained for 5 steps of
plain SGD (lr 0.1) on the MSE to a random target, once with the module
(forward_train, backward, get_params/set_params) and once with
torch.nn.MultiheadAttention(batch_first=True) and torch.optim.SGD, from the
same initial weights. The loss of every step, the gradients of every step and
the final parameters must agree.

It also checks that the flat parameter vector of attn_training.h is
nn.MultiheadAttention's named_parameters() in order, for in_proj_weight
(kdim = vdim = embed_dim) and for q/k/v_proj_weight (kdim, vdim differ).

Tolerances. Both sides compute in float32 with the same formulas but
different orders of summation (OpenBLAS's sgemm under libattn, PyTorch's own
kernels), so each result differs by a few float32 roundings: measured about
1e-7 relative on the loss and 2e-7 of the scale on gradients and parameters.
The checks allow 1e-5 (loss, relative) and 1e-5 of the largest magnitude
(gradients, parameters): 50x the measured noise, while a wrong gradient
term, a parameter out of place or a missed SGD step moves the loss by more
than 1e-3 after one step.

Exit status 77 (Meson's "skipped") when NumPy or torch is not importable.
"""
import os
import sys
import unittest

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"test_python_train_torch: {e.name} is not importable with {sys.executable}: skipped")
    sys.exit(77)

TREE_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
if os.environ.get("ATTN_TEST_MODULE") != "installed":
    sys.path.insert(0, TREE_MODULE)
import attn  # noqa: E402

E, HEADS, BATCH, LEN, STEPS, LR = 16, 4, 2, 5, 5, 0.1
TOL = 1e-5


def flat(module):
    """The module's parameters in named_parameters() order, as one float32 vector."""
    return np.concatenate([p.detach().numpy().ravel() for _, p in module.named_parameters()])


def rel(got, want):
    """Largest difference relative to the largest magnitude (0 for equal arrays)."""
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


class TrainAgainstTorch(unittest.TestCase):
    def test_flat_parameters_are_named_parameters(self):
        torch.manual_seed(1)
        for kdim, vdim in ((None, None), (5, 3)):
            ref = torch.nn.MultiheadAttention(E, HEADS, batch_first=True, kdim=kdim, vdim=vdim)
            names = [n for n, _ in ref.named_parameters()]
            with self.subTest(names=names), \
                    attn.MultiheadAttention(E, HEADS, kdim=kdim, vdim=vdim) as layer:
                self.assertEqual(layer.param_count, flat(ref).size)
                layer.set_params(flat(ref))
                q = torch.randn(BATCH, LEN, E)
                kv_k, kv_v = torch.randn(BATCH, 7, kdim or E), torch.randn(BATCH, 7, vdim or E)
                want, _ = ref(q, kv_k, kv_v, need_weights=False)
                got = layer(q.numpy(), kv_k.numpy(), kv_v.numpy())
                self.assertLessEqual(rel(got, want.detach().numpy()), TOL)

    def test_five_sgd_steps(self):
        torch.manual_seed(0)
        ref = torch.nn.MultiheadAttention(E, HEADS, batch_first=True)   # dropout 0, bias
        opt = torch.optim.SGD(ref.parameters(), lr=LR)
        x = torch.randn(BATCH, LEN, E)
        target = torch.randn(BATCH, LEN, E)
        xn, tn = x.numpy(), target.numpy().astype(np.float64)

        layer, act = attn.MultiheadAttention(E, HEADS), attn.Activations()
        params = initial = flat(ref)
        layer.set_params(params)
        losses = []
        print(f"{'step':>4} {'loss torch':>14} {'loss attn':>14} {'rel diff':>9} "
              f"{'d_params':>9} {'d_x':>9}", file=sys.stderr)
        for step in range(STEPS):
            # PyTorch: autograd through nn.MultiheadAttention, then SGD.
            opt.zero_grad()
            xt = x.clone().requires_grad_(True)
            out_t, _ = ref(xt, xt, xt, need_weights=False)
            loss_t = torch.nn.functional.mse_loss(out_t, target)
            loss_t.backward()
            grad_t = np.concatenate([p.grad.numpy().ravel() for _, p in ref.named_parameters()])
            opt.step()

            # libattn: the same step by hand. MSE = mean((out - target)²), so
            # d_out = 2·(out − target) / N.
            out = layer.forward_train(act, xn)
            loss = float(np.mean((out.astype(np.float64) - tn) ** 2))
            d_out = (2 * (out.astype(np.float64) - tn) / out.size).astype(np.float32)
            d_x, d_key, d_value, d_params = layer.backward(act, d_out)
            self.assertIsNone(d_key)   # self-attention: d_x is the sum over the three uses
            self.assertIsNone(d_value)
            params = params - np.float32(LR) * d_params   # float32, as torch's SGD
            layer.set_params(params)

            losses.append(loss)
            loss_rel = abs(loss - loss_t.item()) / abs(loss_t.item())
            grad_rel, dx_rel = rel(d_params, grad_t), rel(d_x, xt.grad.numpy())
            print(f"{step:>4} {loss_t.item():14.9f} {loss:14.9f} {loss_rel:9.2e} "
                  f"{grad_rel:9.2e} {dx_rel:9.2e}", file=sys.stderr)
            self.assertLessEqual(loss_rel, TOL, f"step {step}: loss")
            self.assertLessEqual(grad_rel, TOL, f"step {step}: d_params")
            self.assertLessEqual(dx_rel, TOL, f"step {step}: d_x")

        final_rel = rel(layer.get_params(), flat(ref))
        moved = rel(flat(ref), initial)
        print(f"final parameters: max difference {final_rel:.2e} of the largest; they moved "
              f"by {moved:.2e} of it in training", file=sys.stderr)
        self.assertLessEqual(final_rel, TOL)
        # The comparison means something: training moved the parameters far
        # beyond the tolerance and lowered the loss.
        self.assertGreater(moved, 100 * TOL)
        self.assertLess(losses[-1], losses[0])
        layer.close()
        act.close()


if __name__ == "__main__":
    unittest.main(verbosity=1)
