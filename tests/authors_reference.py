"""The authors' CGCNN/CrysXPP forward pass, re-derived for parity tests (padded layout)."""

import numpy as np
import torch
from torch.nn import functional as F


def authors_forward(state, atom_fea, nbr_idx, nbr_dist):
    """CrystalGraphConvNet.forward of one crystal in eval mode, from a state dict.

    Every atom has ``nbr_idx.shape[1]`` neighbour slots; a ``mask`` entry in the state (the
    CrysXPP feature selector) multiplies the atom features first.
    """

    def bn(x, name):
        stats = [state[f"{name}.{k}"] for k in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(x, *stats, training=False)

    centres = torch.from_numpy(np.arange(0, 8 + 0.2, 0.2))  # the authors' GaussianDistance
    nbr_fea = torch.exp(-((nbr_dist[..., None] - centres) ** 2) / 0.2**2).float()
    if "mask" in state:
        atom_fea = atom_fea * state["mask"]
    x = F.linear(atom_fea, state["embedding.weight"], state["embedding.bias"])
    n, m = nbr_idx.shape
    n_conv = sum(key.endswith("fc_full.weight") for key in state)
    for k in range(n_conv):
        total = torch.cat([x[:, None].expand(n, m, -1), x[nbr_idx], nbr_fea], dim=2)
        gated = F.linear(
            total, state[f"convs.{k}.fc_full.weight"], state[f"convs.{k}.fc_full.bias"]
        )
        gated = bn(gated.view(n * m, -1), f"convs.{k}.bn1").view(n, m, -1)
        gate, core = gated.chunk(2, dim=2)
        summed = (torch.sigmoid(gate) * F.softplus(core)).sum(dim=1)
        x = F.softplus(x + bn(summed, f"convs.{k}.bn2"))
    hidden = F.linear(F.softplus(x.mean(0)), state["conv_to_fc.weight"], state["conv_to_fc.bias"])
    return F.linear(F.softplus(hidden), state["fc_out.weight"], state["fc_out.bias"])
