"""trainer.config: YAML + dotted overrides, one-line errors, config_hash."""

import pytest

from trainer.config import Config, ConfigError, build_parser, from_dict, parse_args


def test_defaults_are_the_demo():
    cfg = parse_args([])
    assert cfg.model.is_demo() and cfg.data.path is None
    assert cfg.train.resolved_lr(demo=True) == 2e-3
    assert cfg.folds.to_train() == [0, 1, 2, 3, 4]


def test_yaml_then_cli_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-5\n  epochs: 2\nfolds: {num_folds: 3}\n")
    cfg = parse_args(["--config", str(path), "--train.epochs", "5", "--folds", "0,2", "--resume"])
    assert cfg.train.lr == 3e-5  # YAML 1.1 reads 3e-5 as a string; coerced to float
    assert cfg.train.epochs == 5
    assert cfg.folds.folds == [0, 2] and cfg.run.resume is True
    assert cfg.folds.num_folds == 3


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--train.lrr", "1"], "unknown key train.lrr"),
        (["--nope.x", "1"], "unknown section 'nope'"),
        (["--train.lr", "abc"], "train.lr = 'abc' is not a valid float"),
        (["--train.epochs", "0"], "train.epochs: must be >= 1"),
        (["--folds", "7"], "outside 0..4"),
        (["--train.metric", "auc"], "train.metric: must be one of"),
        (["--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_cli_errors_are_one_line(argv, needle):
    with pytest.raises(ConfigError) as e:
        parse_args(argv)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("command line")


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key train.learning_rate"):
        parse_args(["--config", str(path)])


def test_yaml_value_error_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.epochs = 'many'"):
        parse_args(["--config", str(path)])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args(["--config", str(tmp_path / "none.yaml")])
    (tmp_path / "x.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_args(["--config", str(tmp_path / "x.yaml")])


def test_hash_ignores_where_and_how_often_it_saves():
    base = parse_args([]).config_hash()
    assert parse_args(["--run.output_dir", "/elsewhere", "--run.run_name", "b"]).config_hash() == base
    assert (
        parse_args(["--train.save_every", "7", "--train.keep_last", "5", "--folds", "1"]).config_hash()
        == base
    )
    assert parse_args(["--train.log_every", "3", "--train.cpu_threads", "4"]).config_hash() == base
    assert parse_args(["--train.group_by_length", "false"]).config_hash() != base  # another batch order
    assert parse_args(["--train.lr", "1e-4"]).config_hash() != base
    assert parse_args(["--train.lr", "2e-3"]).config_hash() == base  # the demo default, made explicit


def test_round_trip_through_run_json_dict():
    cfg = parse_args(["--train.lr", "1e-4", "--lora.enabled"])
    again = from_dict(cfg.to_dict())
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_help_lists_every_key_with_its_help():
    text = build_parser().format_help()
    for section, fields in Config().to_dict().items():
        for key in fields:
            assert f"--{section}.{key}" in text
    assert "peak learning rate" in text
