"""Starting a CGCNN-shaped regressor from a pretrained encoder (CrysAE, CrysGNN)."""

from __future__ import annotations

import torch


def copy_encoder_weights(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    encoder_settings: tuple | None,
    regressor_settings: tuple,
    name: str,
    transfer_embedding: bool = True,
) -> tuple[str, ...]:
    """Copy an encoder's convolutions (and its embedding) into a CGCNN-shaped ``module``.

    Parameters
    ----------
    module : CGCNN or a subclass
        The regressor's freshly built network; changed in place.
    state : dict of tensors
        The encoder's state dict (parameter names ``embedding.*`` and ``convs.*``).
    encoder_settings, regressor_settings : tuple
        The graph settings ``(cutoff, max_neighbors, atom_features, neighbor_rule)`` the
        encoder was pretrained on (None when unknown: an authors' checkpoint) and those
        of the regressor's graphs; cutoff and atom features must agree.
    name : str
        How messages name the encoder.
    transfer_embedding : bool, default=True
        Also copy the input embedding when its shape matches (a bias-free encoder
        embedding gives the regressor's a bias of 0).

    Returns
    -------
    tuple of str
        The names of the parameters and buffers copied.

    Raises
    ------
    ValueError
        When the settings or the convolutions' number or shapes differ, saying which.
    """
    if encoder_settings is not None:
        ours = regressor_settings
        if (encoder_settings[0], encoder_settings[2]) != (ours[0], ours[2]):
            raise ValueError(
                f"{name} was pretrained on graphs with cutoff={encoder_settings[0]} and "
                f"atom features {encoder_settings[2]!r}, but the regressor gets "
                f"cutoff={ours[0]} and {ours[2]!r}; build both with the same "
                "CrystalGraphTransformer"
            )
    target = module.state_dict()
    n_conv = sum(key.startswith("convs.") and key.endswith(".fc_full.weight") for key in state)
    if n_conv != len(module.convs):
        raise ValueError(
            f"{name} has {n_conv} convolutions but the regressor has "
            f"n_conv={len(module.convs)}; set n_conv={n_conv}"
        )
    conv_keys = [key for key in target if key.startswith("convs.")]
    for key in conv_keys:
        if key not in state or state[key].shape != target[key].shape:
            found = tuple(state[key].shape) if key in state else "nothing"
            raise ValueError(
                f"{name} does not fit the regressor's convolutions: {key} has shape "
                f"{tuple(target[key].shape)} in the regressor and {found} in the encoder; "
                "set atom_fea_len and n_conv to the encoder's (and the same cutoff)"
            )
    update = {key: state[key] for key in conv_keys}
    own = module.embedding
    weight = state.get("embedding.weight")
    if transfer_embedding and weight is not None and weight.shape == own.weight.shape:
        update["embedding.weight"] = weight
        bias = state.get("embedding.bias")
        update["embedding.bias"] = torch.zeros_like(own.bias) if bias is None else bias
    with torch.no_grad():
        for key, value in update.items():
            target[key].copy_(value)
    return tuple(update)
