"""The baseline of bench/bench_trainer.py: the same K-fold job written the usual way with HF ``Trainer``.

    python bench/hf_kfold.py --data data.csv --model MODEL_DIR --out OUT [--folds 5 --epochs 3 ...]

Same as our trainer's job: the model folder (built from one config, identical initial weights), its
tokenizer, the stratified folds (trainer/folds.py's assignment with the same seed), epochs, batch sizes,
lr, weight decay, warmup and linear decay, clipping, fp32 on CPU, an evaluation per epoch keeping the best
model by macro F1, and per fold a prediction of its validation rows, gathered into OOF metrics. What a
typical script does is kept as shipped: the collator pads each batch to its longest row, rows are drawn at
random, one process, HF's defaults otherwise (fused AdamW, no length grouping, a checkpoint per epoch).
Writes OUT/result.json: {"oof": {"accuracy", "f1_macro", "log_loss"}, "folds": {...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--fold-seed", type=int, default=42)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.metrics import accuracy_score, f1_score, log_loss
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from trainer.folds import assign_folds

    frame = pd.read_csv(args.data)
    classes = sorted(frame["label"].astype(str).unique())
    y = frame["label"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    fold_of_row = assign_folds(y, args.folds, args.fold_seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    encoded = tokenizer(frame["text"].astype(str).tolist(), truncation=True, max_length=args.max_length)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            r = self.rows[i]
            return {"input_ids": encoded["input_ids"][r], "attention_mask": encoded["attention_mask"][r],
                    "labels": int(y[r])}  # fmt: skip

    def metrics(pred):
        p = pred.predictions.argmax(-1)
        return {"accuracy": accuracy_score(pred.label_ids, p), "f1_macro": f1_score(pred.label_ids, p, average="macro")}

    oof = np.zeros((len(frame), len(classes)))
    per_fold = {}
    for k in range(args.folds):
        train_rows, valid_rows = np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k)
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)},
        )  # fmt: skip
        training_args = TrainingArguments(
            output_dir=str(args.out / f"fold_{k}"), per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.eval_batch_size, num_train_epochs=args.epochs,
            learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
            lr_scheduler_type="linear", max_grad_norm=1.0, eval_strategy="epoch", save_strategy="epoch",
            save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="f1_macro",
            greater_is_better=True, seed=args.seed + k, use_cpu=True, report_to="none", logging_strategy="epoch",
            disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=training_args, train_dataset=Rows(train_rows), eval_dataset=Rows(valid_rows),
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics,
        )  # fmt: skip
        trainer.train()
        logits = trainer.predict(Rows(valid_rows)).predictions
        probs = torch.softmax(torch.from_numpy(logits).float(), -1).numpy()
        oof[valid_rows] = probs
        per_fold[str(k)] = {"accuracy": float(accuracy_score(y[valid_rows], probs.argmax(1)))}
        print(f"fold {k}: accuracy {per_fold[str(k)]['accuracy']:.4f}", flush=True)
    result = {
        "oof": {
            "accuracy": float(accuracy_score(y, oof.argmax(1))),
            "f1_macro": float(f1_score(y, oof.argmax(1), average="macro")),
            "log_loss": float(log_loss(y, oof / oof.sum(1, keepdims=True), labels=list(range(len(classes))))),
        },
        "folds": per_fold,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"OOF accuracy {result['oof']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
