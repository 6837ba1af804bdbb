"""The frame encoder of a study's MGF / Learn2Diss rows as one setting (``paravox study mgf
--frame-encoder ...``, ``paravox study learn2diss --frame-encoder ...``):

- ``transformer`` (default): the recipes as shipped, paravox's Transformer over log-mel;
- ``wav2vec2`` / ``hubert`` / ``wavlm``: a randomly initialised transformers model of that
  type (its CNN trained too) and of the study's size (``demo``: width 192, 4 layers, 4 heads,
  feed-forward 768 as the ``transformer`` rows, over wav2vec 2.0's 7-layer CNN with 64
  channels: 20 ms frames; measured about twice a ``transformer`` step's time on CPU;
  ``tiny``: width 32, 2 layers, a 3-layer CNN with the same 20 ms shift) reading the waveform;
- a folder written by ``save_pretrained`` (a pretrained checkpoint on disk): that model,
  trained on at a fine-tuning learning rate (5e-5 with layer-wise decay 0.75); Learn2Diss's
  units then come from its layer at three quarters of the depth (``start_layer``).

The study's recipe with the frame encoder swapped is written to ``<out>/recipes/`` (the
recipe's own encoder settings replaced, not merged into) and trained from there.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from paravox.errors import ConfigError
from paravox.training.recipes import find_recipe
from paravox.utils.atomic_files import write_text
from paravox.utils.config import load_yaml

HF_TYPES = ("wav2vec2", "hubert", "wavlm")
DEFAULT = "transformer"
# random-init transformers configs per study size: the demo size matches the transformer rows
HF_SIZES = {
    "demo": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 4,
             "intermediate_size": 768, "conv_dim": [64] * 7,
             "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
             "num_conv_pos_embeddings": 64, "num_conv_pos_embedding_groups": 16,
             "feat_extract_norm": "layer", "do_stable_layer_norm": True},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "conv_dim": [32, 32, 32], "conv_kernel": [10, 8, 8],
             "conv_stride": [5, 8, 8], "num_conv_pos_embeddings": 16,
             "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer",
             "do_stable_layer_norm": True},
}
HELP = ("the MGF / Learn2Diss frame encoder: transformer (log-mel, default), wav2vec2, hubert "
        "or wavlm (random init at the study's size, waveform), or the folder of a pretrained "
        "save_pretrained checkpoint")


def describe(choice: str | None) -> str:
    """The choice as the results file records it (a folder as its absolute path)."""
    choice = choice or DEFAULT
    if choice in (DEFAULT, *HF_TYPES):
        return choice
    return str(Path(choice).resolve())


def _hf_settings(choice: str, size: str, embedding_dim: int) -> tuple[dict, int]:
    """The ``hf`` encoder settings of ``choice`` and its number of transformer layers."""
    if choice in HF_TYPES:
        conf = {"model_type": choice, **HF_SIZES[size]}
        # from scratch the CNN learns too (frozen at random weights it would stay noise)
        return ({"hf_config": conf, "layers": "weighted", "embedding_dim": embedding_dim,
                 "freeze_feature_encoder": False}, conf["num_hidden_layers"])
    folder = Path(choice)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"--frame-encoder {choice}: not one of {[DEFAULT, *HF_TYPES]} and "
                          f"not a folder with a config.json (a transformers save_pretrained "
                          f"checkpoint)")
    layers = int(json.loads((folder / "config.json").read_text()).get("num_hidden_layers", 12))
    return ({"path": str(folder.resolve()), "layers": "weighted",
             "embedding_dim": embedding_dim}, layers)


def swap_frame_encoder(recipe: str, section: str, choice: str | None, size: str,
                       out: Path) -> str:
    """``recipe`` (a name or file) with its frame encoder set to ``choice``: the recipe itself
    for ``transformer``, else the path of a derived recipe in ``<out>/recipes/``. ``section``
    is the method's key (``mgf`` or ``learn2diss``)."""
    choice = choice or DEFAULT
    if choice == DEFAULT:
        return recipe
    conf = OmegaConf.to_container(load_yaml(find_recipe(recipe)))
    method = conf[section]
    enc_key, settings_key = (("encoder", "encoder_settings") if section == "mgf"
                             else ("frame_encoder", "frame_encoder_settings"))
    dim = 32 if size == "tiny" else int(method.get(settings_key, {}).get("embedding_dim", 192))
    settings, layers = _hf_settings(choice, size, dim)
    method[enc_key], method[settings_key] = "hf", settings
    method["features"] = {**method.get("features", {}), "kind": "waveform"}
    if section == "learn2diss":
        method["utterance_input"] = "frames"  # one front end: the utterance encoder reads layers
        if choice not in HF_TYPES:  # units of the starting checkpoint (HuBERT's next iteration)
            method["cluster_source"], method["cluster_layer"] = "start_layer", layers * 3 // 4
    if choice not in HF_TYPES:  # a pretrained model: a fine-tuning learning rate
        method["optim"] = {**method.get("optim", {}), "lr": 5.0e-5, "min_lr": 1.0e-6,
                           "layer_decay": 0.75}
    tag = choice if choice in HF_TYPES else "pretrained"
    path = out / "recipes" / f"{Path(str(recipe)).stem}_{tag}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, OmegaConf.to_yaml(OmegaConf.create(conf)))
    return str(path)


def keep_overrides(overrides: list[str], section: str, choice: str | None) -> list[str]:
    """A preset's overrides without those that size the log-mel ``transformer`` (its
    ``encoder_settings``), which do not apply to an ``hf`` frame encoder."""
    if (choice or DEFAULT) == DEFAULT:
        return list(overrides)
    key = f"{section}.{'encoder_settings' if section == 'mgf' else 'frame_encoder_settings'}"
    return [o for o in overrides if not o.startswith((f"{key}=", f"{key}."))]
