"""Every DeepSpeed JSON and accelerate YAML in ds_configs/ loads and is accepted by accelerate.

The YAMLs go through accelerate's own launcher code (argument parser, config-file merge, validation and
the environment it would hand the training processes) without starting any process; the DeepSpeed
plugin is then built from exactly that environment, as the training script would build it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DS_DIR = REPO / "ds_configs"
JSONS = sorted(DS_DIR.glob("*.json"))
YAMLS = sorted((DS_DIR / "accelerate").glob("*.yaml"))
EXPECTED_JSONS = {"zero2_fp16.json", "zero2_bf16.json", "zero3_fp16.json", "zero3_bf16.json"}
EXPECTED_YAMLS = {
    "single_gpu.yaml", "single_gpu_fp16.yaml", "multi_gpu_zero2_bf16.yaml", "multi_gpu_zero2_fp16.yaml",
    "multi_gpu_zero3_bf16.yaml", "multi_node_template.yaml", "ddp.yaml", "cpu_2proc_zero2.yaml",
    "cpu_2proc_zero3.yaml",
}  # fmt: skip
# file -> (distributed_type, zero stage or None, mixed precision, processes)
YAML_EXPECT = {
    "single_gpu.yaml": ("NO", None, "bf16", 1),  # one GPU: nothing to shard, no ZeRO
    "single_gpu_fp16.yaml": ("NO", None, "fp16", 1),
    "multi_gpu_zero2_bf16.yaml": ("DEEPSPEED", 2, "bf16", 8),
    "multi_gpu_zero2_fp16.yaml": ("DEEPSPEED", 2, "fp16", 8),
    "multi_gpu_zero3_bf16.yaml": ("DEEPSPEED", 3, "bf16", 8),
    "multi_node_template.yaml": ("DEEPSPEED", 3, "bf16", 16),
    "ddp.yaml": ("MULTI_GPU", None, "bf16", 8),
    "cpu_2proc_zero2.yaml": ("DEEPSPEED", 2, "no", 2),
    "cpu_2proc_zero3.yaml": ("DEEPSPEED", 3, "bf16", 2),
}
AUTO_KEYS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
)
# "auto" would make these hidden_size² elements (~0.15 M for a 384-wide model): many tiny collectives.
BUCKETS = {
    2: {"reduce_bucket_size": 200_000_000, "allgather_bucket_size": 200_000_000},
    3: {
        "reduce_bucket_size": 50_000_000,
        "stage3_prefetch_bucket_size": 50_000_000,
        "stage3_param_persistence_threshold": 100_000,
    },
}


def test_the_expected_files_exist():
    assert {p.name for p in JSONS} == EXPECTED_JSONS
    assert {p.name for p in YAMLS} == EXPECTED_YAMLS == set(YAML_EXPECT)


@pytest.mark.parametrize("path", JSONS, ids=lambda p: p.name)
def test_deepspeed_json(path):
    from accelerate.utils import DeepSpeedPlugin

    raw = json.loads(path.read_text())
    stage, precision = int(path.stem[4]), path.stem.split("_")[1]
    assert all(raw[key] == "auto" for key in AUTO_KEYS), (
        "batch sizes/accumulation/clipping come from our config"
    )
    assert "optimizer" not in raw and "scheduler" not in raw, "our loop builds AdamW + schedule itself"

    zero = raw["zero_optimization"]
    assert {key: zero.get(key) for key in BUCKETS[stage]} == BUCKETS[stage]
    assert not [key for key, value in zero.items() if value == "auto"], "no bucket size left to accelerate"

    plugin = DeepSpeedPlugin(hf_ds_config=str(path))
    plugin.set_mixed_precision(precision)  # raises when the other half precision is enabled in the file
    config = plugin.deepspeed_config
    assert plugin.zero_stage == stage == config["zero_optimization"]["stage"]
    assert config["fp16"]["enabled"] is (precision == "fp16")
    assert config["bf16"]["enabled"] is (precision == "bf16")
    if precision == "fp16":
        # dynamic loss scaling: loss_scale 0 means "dynamic"; overflow halves the scale and skips the step
        fp16 = config["fp16"]
        assert fp16["loss_scale"] == 0 and fp16["initial_scale_power"] == 16
        assert fp16["loss_scale_window"] >= 100 and fp16["hysteresis"] >= 1 and fp16["min_loss_scale"] >= 1
    if stage == 3:
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert plugin.zero3_save_16bit_model is True
    other = "bf16" if precision == "fp16" else "fp16"
    with pytest.raises(ValueError, match="cannot be set"):
        DeepSpeedPlugin(hf_ds_config=str(path)).set_mixed_precision(other)


def _launch_env(path: Path) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file path train.py` resolves, without launching anything."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        # as accelerate's launch_command does: lets the plugin refuse settings a JSON file overrides
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _cmd, env = prepare_deepspeed_cmd_env(args)
    elif args.multi_gpu:
        env = prepare_multi_gpu_env(args)
    else:  # one process: accelerate's simple launcher
        _cmd, env = prepare_simple_launcher_cmd_env(args)
    return args, env


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_accelerate_yaml_is_accepted(path, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    dist_type, stage, precision, processes = YAML_EXPECT[path.name]
    config = load_config_from_file(str(path))
    assert (config.distributed_type.value, config.num_processes) == (dist_type, processes)
    uses_json = bool((config.deepspeed_config or {}).get("deepspeed_config_file"))
    # accelerate refuses mixed_precision next to a deepspeed_config_file: the JSON decides the precision
    assert config.mixed_precision == (None if uses_json else precision)
    assert not config.use_cpu, "use_cpu starts only one process under DeepSpeed (PLATFORM_NOTES)"

    monkeypatch.chdir(REPO)  # the YAMLs name their JSON relative to the repository root
    args, env = _launch_env(path)
    assert int(env["WORLD_SIZE"] if "WORLD_SIZE" in env else args.num_processes) == processes
    assert env.get("ACCELERATE_MIXED_PRECISION") == ("no" if uses_json else precision)
    if stage is None:
        assert not args.use_deepspeed and env.get("ACCELERATE_USE_DEEPSPEED", "false") == "false"
        return
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    ds_env = {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}
    with mock.patch.dict(os.environ, ds_env):
        plugin = DeepSpeedPlugin()
        plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    assert plugin.zero_stage == stage
    ds = plugin.deepspeed_config
    assert ds["fp16"]["enabled"] is (precision == "fp16") and ds["bf16"]["enabled"] is (precision == "bf16")
    if precision == "fp16":
        assert ds["fp16"]["loss_scale"] == 0
    # Under ZeRO-3 transformers builds the model partitioned whatever the flag says: the YAML says so too.
    assert plugin.zero3_init_flag is (stage == 3)
    if stage == 3:
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_multi_node_template_documents_every_placeholder():
    text = (DS_DIR / "accelerate" / "multi_node_template.yaml").read_text()
    config = yaml.safe_load(text)
    for key in ("num_machines", "num_processes", "machine_rank", "main_process_ip", "main_process_port"):
        assert key in config
        assert any(line.lstrip("# ").startswith(key) and "PLACEHOLDER" in line for line in text.splitlines())
    assert config["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
