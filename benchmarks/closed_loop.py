"""The closed loop against a random baseline and the oracle: 12 simulated weeks, same seeds, same
candidates and budget (ml/closed_loop.py has the rules; docs/learning.md the reading).

    python benchmarks/closed_loop.py            # 5 seeds, the issue's 12 weeks
    python benchmarks/closed_loop.py --quick    # 2 seeds

Targets (issue 8): the learned loop's 12-week profit at least 3x the random baseline's and at least
70% of the oracle's. The simulator's difficulty is printed first (base success rate and the
Bayes-optimal AUC of the success criteria), so the numbers cannot flatter.
"""

import argparse
import sys
import time

import _common  # noqa: F401  (puts the repository on sys.path)
import pandas as pd
from tabulate import tabulate

from core.simulator.population import bayes_success_probability, population, realize
from ml.closed_loop import LoopSettings, compare, learned_policy, oracle_policy, random_policy, run, score_policy

POLICIES = ("random", "score", "learned", "cold start", "oracle")


def difficulty(settings: LoopSettings) -> dict[str, float]:
    """The base success rate and the Bayes-optimal AUC on one 12-week population of the simulator."""
    from sklearn.metrics import roc_auc_score

    proposals = population(settings.seed, 5_000, settings.start, days=7 * settings.weeks)
    outcomes = realize(settings.seed, proposals)
    bayes = bayes_success_probability(settings.seed, proposals)
    return {
        "base success rate": float(outcomes["succeeded"].mean()),
        "Bayes-optimal AUC": float(roc_auc_score(outcomes["succeeded"], bayes)),
        "experiments earning more than they cost": float((outcomes["net_minor"] > 0).mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 5")
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    seeds = range(7, 7 + (args.seeds or (2 if args.quick else 5)))
    base = LoopSettings()
    print(
        f"closed loop: {base.weeks} weeks, {base.candidates_per_week} candidates a week, "
        f"top {base.proposals_per_week} proposed, {base.weekly_budget_minor / 100:,.0f} USD a week, "
        f"{base.history_experiments} finished experiments before week 1 (cold start: none), "
        f"seeds {seeds.start}..{seeds.stop - 1}"
    )
    print(tabulate(difficulty(base).items(), headers=["simulator", "value"], floatfmt=".3f"))
    started = time.perf_counter()
    weeks = []
    for seed in seeds:
        settings = LoopSettings(seed=seed)
        policies = [random_policy(settings), score_policy(settings), learned_policy(settings), oracle_policy(settings)]
        frame = compare(policies, settings)
        # The same loop without the back catalog: its first outcomes arrive in week 5.
        cold = LoopSettings(seed=seed, history_experiments=0)
        alone = run(learned_policy(cold), cold).assign(policy="cold start")
        oracle = frame[frame["policy"] == "oracle"].set_index("week")["cumulative_net_minor"]
        alone["regret_minor"] = alone["week"].map(oracle) - alone["cumulative_net_minor"]
        weeks.append(pd.concat([frame, alone], ignore_index=True).assign(seed=seed))
    frame = pd.concat(weeks, ignore_index=True)
    mean = frame.groupby(["week", "policy"])[["cumulative_net_minor", "regret_minor", "cumulative_cost_minor"]].mean()
    table = []
    for week in range(1, base.weeks + 1):
        row: list = [week]
        for policy in POLICIES:
            cells = mean.loc[(week, policy)]
            per_dollar = cells["cumulative_net_minor"] / cells["cumulative_cost_minor"]
            row += [cells["cumulative_net_minor"] / 100, per_dollar, cells["regret_minor"] / 100]
        table.append(row)
    headers = ["week"] + [f"{p} {what}" for p in POLICIES for what in ("profit USD", "per $", "regret USD")]
    print("\nmean over seeds, cumulative by week:")
    print(tabulate(table, headers=headers, floatfmt=(".0f",) + (",.0f", ".2f", ",.0f") * len(POLICIES)))
    final = mean.xs(base.weeks, level="week")["cumulative_net_minor"]
    versus_random = final["learned"] / final["random"] if final["random"] > 0 else float("nan")
    versus_oracle = final["learned"] / final["oracle"]
    print(
        "\n"
        + tabulate(
            [
                ["learned / random profit", versus_random, 3.0, "met" if versus_random >= 3.0 else "NOT met"],
                ["learned / oracle profit", versus_oracle, 0.7, "met" if versus_oracle >= 0.7 else "NOT met"],
                ["learned / score (what learning adds)", final["learned"] / final["score"], None, "ablation"],
                ["cold start / random profit", final["cold start"] / final["random"], None, "no back catalog"],
                ["cold start / oracle profit", final["cold start"] / final["oracle"], None, "no back catalog"],
            ],
            headers=["ratio", "value", "target", ""],
            floatfmt=".2f",
        )
    )
    print(f"\n{len(seeds)} seeds x {len(POLICIES)} policies in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
