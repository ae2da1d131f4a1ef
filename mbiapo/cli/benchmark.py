"""``mbiapo bench``: update rates, acting latency and analysis and dataset timings."""


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="update rates and acting latency (HalfCheetah-v5 shapes)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seconds", type=float, default=5.0, help="time budget per measurement")
    p.add_argument("--no-sb3", action="store_true", help="skip the stable-baselines3 baseline")
    p.add_argument("--no-model-based", action="store_true", help="skip model-based agents")
    p.add_argument("--no-compare", action="store_true", help="skip timing 'mbiapo compare'")
    p.add_argument("--no-dataset", action="store_true", help="skip timing dataset loading")
    p.add_argument("--device", default="cpu", help="where the agents run (cpu, cuda)")


def cmd_bench(args) -> dict:
    from mbiapo.bench import run_bench

    return run_bench(seconds=args.seconds, with_sb3=not args.no_sb3,
                     with_model_based=not args.no_model_based,
                     compare_size=None if args.no_compare else (100, 100),
                     dataset_rows=None if args.no_dataset else 1_000_000, device=args.device)


HANDLERS = {"bench": cmd_bench}
