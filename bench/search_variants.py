"""Experiment: the search replay evaluation (shared.cli evaluate-search) for ranking variants, side by side.

Each variant changes the rules (personalization_rules.yaml's ranking section) or the model's training
parameters; every variant is trained and measured on the same splits as `evaluate-search`, with the baselines.
The figures and what was adopted are in docs/EVALUATION.md.

    python -m bench.search_variants [--seeds 5] [--catalog ../shared/data/instacart] [--variants a,b,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.adapters.catalog.files import load_catalog_file
from shared.config import Settings
from shared.domain.catalog import Catalog
from shared.domain.ranker_training import TrainingParams
from shared.domain.rules import Rules, load_rules
from shared.evaluation import load_histories
from shared.search_evaluation import run

DEFAULT = TrainingParams()
VARIANTS: dict[str, tuple[dict[str, Any], TrainingParams]] = {
    "shipped": ({}, DEFAULT),  # 50 trees at learning rate 0.1
    "100 trees": ({}, replace(DEFAULT, rounds=100)),
    "50 trees at lr 0.2": ({}, replace(DEFAULT, params={**DEFAULT.params, "learning_rate": 0.2})),
    "6 replayed orders per shopper": ({}, replace(DEFAULT, targets=6)),
    "model on the rules' best 200": ({"model_depth": 200}, DEFAULT),
    "min_relevance 0.35": ({"min_relevance": 0.35}, DEFAULT),
    "no popularity prior": ({"popularity_weight": 0.0}, DEFAULT),
    "history weight 0.5": ({"history_weight": 0.5}, DEFAULT),
}


def with_ranking(rules: Rules, **changes: Any) -> Rules:
    return rules.model_copy(update={"ranking": rules.ranking.model_copy(update=changes)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_variants", description=__doc__)
    parser.add_argument("--orders", help="order CSV (default: the Instacart sample)")
    parser.add_argument("--catalog", type=Path, default=Path("../shared/data/instacart"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--variants", help=f"comma-separated names (default: all): {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {list(VARIANTS)}")
    dataset, histories = load_histories(args.orders)
    catalog = Catalog(load_catalog_file(args.catalog))
    rules = load_rules(Settings().rules_path)
    print(f"{dataset}, {args.seeds} seeds; NDCG@10 / Recall@10 / MRR", flush=True)
    for name in chosen:
        changes, training = VARIANTS[name]
        started = time.perf_counter()
        report = run(
            histories,
            catalog,
            with_ranking(rules, **changes),
            dataset,
            seeds=args.seeds,
            training=training,
            log=lambda message: print(message, file=sys.stderr, flush=True),
        )
        methods = report["methods"]
        baseline = methods["own_then_popularity"]["ndcg@10"]
        for method in ("leafloaf_rules", "leafloaf"):
            m = methods[method]
            print(
                f"{name:<32} {method:<15} {m['ndcg@10']:.4f} {m['recall@10']:.4f} {m['mrr']:.4f} "
                f"({m['ndcg@10'] / baseline:.3f} x own_then_popularity) {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
