"""LeafLoaf Personalize command line: python -m shared.cli <command> --help."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import flask

    from shared.domain.catalog import Product


def _serve(args: argparse.Namespace) -> int:
    from functions.local_server import endpoints, serve
    from shared import bootstrap
    from shared.config import Settings
    from shared.domain.catalog import CatalogError

    if args.emulators:
        from shared.emulators import start_cloud_topology

        print("Starting the Firestore, Pub/Sub, BigQuery, Cloud Storage and Spanner emulators ...", flush=True)
        os.environ.update(start_cloud_topology())
    # Checked first: a bad file is reported line by line, before anything starts.
    if args.catalog is not None:
        if (products := _read_catalog(args.catalog)) is None:
            return 2
        version = bootstrap.open_catalog_store(Settings()).replace(products)
        print(f"imported {len(products)} products from {args.catalog} as catalog version {version}", flush=True)
    try:
        services = bootstrap.container()  # build before listening: the first request is fast
    except CatalogError as exc:  # the catalog file seeding an empty store is bad
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = services.settings

    def ready(port: int, app: flask.Flask) -> None:
        print(
            f"LeafLoaf Personalize on http://{args.host}:{port} "
            f"({len(services.catalog)} products; profile store '{settings.profile_store}', "
            f"event bus '{settings.event_bus}', warehouse '{settings.warehouse}', archive '{settings.archive}', "
            f"graph memory '{settings.graph_memory}')",
            *(f"  {line}" for line in endpoints(app)),
            f"authentication '{settings.auth}' (python -m shared.cli token USER prints a token)",
            "Ctrl+C stops it.",
            sep="\n",
            flush=True,
        )

    serve(args.host, args.port, ready)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from shared.demo import MissingProduct, run_demo

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # keep the story readable
    server = None
    url = args.url
    if url is None:  # no server given: start one in this process on a free port
        from functions.local_server import local_server
        from shared import bootstrap

        bootstrap.container()
        server = local_server("127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        print(f"Started a local server at {url}\n")
    try:
        outcomes = run_demo(url, token_for=_local_tokens())
    except MissingProduct as missing:
        print(
            f"error: the demo's scenarios need the demo catalog, and the server's catalog has no {missing}.\n"
            "To go back to the demo catalog: python -m shared.cli import-catalog --generate 5000 (a new "
            "catalog version, which a running server picks up within LEAFLOAF_CATALOG_REFRESH_S).",
            file=sys.stderr,
        )
        return 2
    finally:
        if server is not None:
            server.shutdown()
    passed = sum(o.passed for o in outcomes)
    print(f"{passed} of {len(outcomes)} scenarios behaved as the design says.")
    return 0 if passed == len(outcomes) else 1


def _local_tokens() -> Callable[[str], str | None]:
    """Tokens signed with this machine's HMAC key (as a store's backend would mint them), or none
    when authentication is not HMAC."""
    from shared.adapters.identity.hmac import HmacVerifier
    from shared.config import Settings

    settings = Settings()
    if settings.auth != "hmac":
        return lambda user: None
    verifier = HmacVerifier.from_settings(settings)
    return lambda user: verifier.issue(user)


def _token(args: argparse.Namespace) -> int:
    from shared.adapters.identity.hmac import HmacVerifier
    from shared.config import Settings

    settings = Settings()
    if settings.auth != "hmac":
        print(f"LEAFLOAF_AUTH is {settings.auth!r}: tokens come from your identity provider", file=sys.stderr)
        return 2
    print(HmacVerifier.from_settings(settings).issue(args.subject, args.ttl, service=args.service))
    return 0


def _read_catalog(path: Path) -> list[Product] | None:
    """The products of a catalog file, or None once every bad line has been reported (how
    import-catalog and serve --catalog answer a bad file)."""
    from shared.adapters.catalog.files import load_catalog_file
    from shared.domain.catalog import CatalogError

    try:
        return load_catalog_file(path)
    except (CatalogError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _read_bigquery(table: str | None, query: str | None) -> list[Product] | None:
    """The products of a BigQuery table or query (the warehouse's project and endpoint), or None
    once every bad row, or the failure, has been reported."""
    from google.api_core.exceptions import GoogleAPICallError

    from shared.adapters.catalog.bigquery import bigquery_products
    from shared.config import Settings
    from shared.domain.catalog import CatalogError, parse_products
    from shared.ports.catalog_store import CatalogUnavailable

    source = f"table {table}" if table else "query"
    print(f"reading the catalog from BigQuery ({source}) ...", file=sys.stderr, flush=True)
    try:
        return parse_products(bigquery_products(Settings(), table=table, query=query))
    except CatalogError as exc:  # rows numbered in the table's (or the query's) order
        shown = "\n".join(f"row {e.line}: {e.message}" for e in exc.errors)
        print(f"error: {len(exc.errors)} invalid catalog row(s):\n{shown}", file=sys.stderr)
    except (CatalogUnavailable, GoogleAPICallError) as exc:
        print(f"error: BigQuery: {exc}", file=sys.stderr)
    return None


def _import_catalog(args: argparse.Namespace) -> int:
    from shared.adapters.catalog.files import write_catalog_file
    from shared.bootstrap import open_catalog_store
    from shared.config import Settings
    from shared.domain.catalog_generator import generate_catalog
    from shared.ports.catalog_store import CatalogUnavailable

    sources = [bool(args.file), bool(args.generate), bool(args.bigquery_table), bool(args.bigquery_query)]
    if sum(sources) != 1:
        print("error: give one of FILE, --generate N, --bigquery-table or --bigquery-query", file=sys.stderr)
        return 2
    if args.generate:
        products = generate_catalog(args.generate, seed=args.seed)
    elif args.file:
        if (read := _read_catalog(args.file)) is None:
            return 1
        products = read
    elif (read := _read_bigquery(args.bigquery_table, args.bigquery_query)) is None:
        return 1
    else:
        products = read
    if args.out is not None:
        write_catalog_file(products, args.out)
        print(f"wrote {len(products)} products to {args.out}")
        return 0
    settings = Settings()
    try:
        version = open_catalog_store(settings).replace(products)
    except CatalogUnavailable as exc:  # nothing changed: the previous version keeps serving
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"imported {len(products)} products as catalog version {version} ({settings.catalog_store} store); "
        f"servers pick it up within {settings.catalog_refresh_s:g} s"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import csv

    from shared.datasets import OrderFileError
    from shared.evaluation import evaluate_orders

    try:
        evaluate_orders(args.orders, args.json, args.seed, args.seeds, args.test_fraction)
    except (OrderFileError, OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate_search(args: argparse.Namespace) -> int:
    from shared.search_evaluation import evaluate_search

    return _replay(args, evaluate_search)


def _evaluate_recommendations(args: argparse.Namespace) -> int:
    from shared.recommendation_evaluation import evaluate_recommendations

    return _replay(args, evaluate_recommendations)


def _replay(args: argparse.Namespace, evaluate: Callable[..., object]) -> int:
    """A replay evaluation over orders and a catalog (evaluate-search, evaluate-recommendations)."""
    import csv

    from shared.config import Settings
    from shared.datasets import OrderFileError
    from shared.domain.catalog import CatalogError
    from shared.domain.rules import RulesError, load_rules

    try:
        rules = load_rules(Settings().rules_path)
        evaluate(args.orders, args.catalog, rules, args.json, args.seed, args.seeds, args.test_fraction, args.users)
    except (OrderFileError, CatalogError, RulesError, OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _split_arguments(command: argparse.ArgumentParser) -> None:
    """The order history and its split, as both evaluations take them."""
    command.add_argument(
        "--orders",
        help="order CSV (user_id,order_id,order_number,product_id[,days_since_prior_order|timestamp]); "
        "'instacart' or omitted: the installed Instacart sample",
    )
    command.add_argument("--json", type=Path, help="also write the report to this JSON file")
    command.add_argument("--seed", type=int, default=0, help="first seed of the test-user split")
    command.add_argument("--seeds", type=_positive, default=1, help="how many seeds (seed, seed+1, ...) to average")
    command.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of users with 2+ orders held out")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve every HTTP function on one local port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--catalog",
        type=Path,
        help="catalog file (.jsonl/.csv) imported as the catalog's next version before serving (default: the "
        "store's newest version; an empty store is seeded from LEAFLOAF_CATALOG_PATH, or the demo catalog "
        "with LEAFLOAF_DEMO_CATALOG=true, as ./dev run sets)",
    )
    serve.add_argument(
        "--emulators",
        action="store_true",
        help="the cloud topology on this machine: Firestore, Pub/Sub (pushing to the event functions), "
        "BigQuery and Cloud Storage emulators instead of the embedded stores",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="replay the three acceptance scenarios over HTTP and print what changed")
    demo.add_argument("--url", help="a running server (default: start one in this process)")
    demo.set_defaults(run=_demo)

    token = commands.add_parser(
        "token", help="print an HMAC-signed token for a shopper (or a service) with this machine's key"
    )
    token.add_argument("subject", help="the shopper's user id, or the service's name with --service")
    token.add_argument("--ttl", type=_positive, default=900, help="seconds the token lives (default 900)")
    token.add_argument("--service", action="store_true", help="a service identity: may act for any shopper")
    token.set_defaults(run=_token)

    imp = commands.add_parser(
        "import-catalog",
        help="validate a catalog file (or generate one) and make it the catalog's next version, whole",
    )
    imp.add_argument(
        "file",
        nargs="?",
        type=Path,
        help=".jsonl or .csv with id,name,brand,category,department,attributes,price,size,unit",
    )
    imp.add_argument(
        "--generate", type=int, metavar="N", help="write a deterministic demo catalog of N products instead"
    )
    imp.add_argument("--seed", type=int, default=7, help="seed for --generate")
    imp.add_argument(
        "--bigquery-table",
        metavar="TABLE",
        help="read the products from this BigQuery table ([project.]dataset.table; a bare name is in "
        "LEAFLOAF_WAREHOUSE_DATASET) with the file's columns",
    )
    imp.add_argument("--bigquery-query", metavar="SQL", help="read the products from this query's result instead")
    imp.add_argument("--out", type=Path, help="write the products to this JSON Lines file instead of the store")
    imp.set_defaults(run=_import_catalog)

    ev = commands.add_parser(
        "evaluate",
        help="next-basket evaluation: LeafLoaf vs G-, P- and GP-TopFreq on an order history (Recall/NDCG/PHR)",
    )
    _split_arguments(ev)
    ev.set_defaults(run=_evaluate)

    es = commands.add_parser(
        "evaluate-search",
        help="search replay evaluation: the served ranking vs plain, popularity and own-then-popularity "
        "orderings of the same candidates on real orders (NDCG@10, Recall@10, MRR)",
    )
    es.add_argument(
        "--catalog",
        type=Path,
        required=True,
        help="catalog file in the import format (.jsonl/.csv), or the folder of Instacart's products, "
        "aisles and departments CSV files",
    )
    _split_arguments(es)
    es.add_argument("--users", type=_positive, help="at most this many test shoppers per seed (default: all)")
    es.set_defaults(run=_evaluate_search)

    er = commands.add_parser(
        "evaluate-recommendations",
        help="recommendations replay: buy_it_again, for_you and new_for_you vs the next-basket recommender and "
        "G-, P-, GP-TopFreq on the held-out baskets of real orders (Recall/NDCG/PHR)",
    )
    er.add_argument(
        "--catalog", type=Path, required=True, help="catalog file (.jsonl/.csv) or the folder of Instacart's CSV files"
    )
    _split_arguments(er)
    er.add_argument("--users", type=_positive, help="at most this many test shoppers per seed (default: all)")
    er.set_defaults(run=_evaluate_recommendations)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
