"""``study.png``: the linear-probe bars and few-shot curves of a study's
summary rows (mean ± sample std over seeds)."""
from typing import Dict, List


def plot_study(rows: List[Dict], path: str, args, data: Dict,
               budget: float, budget_unit: str) -> None:
    """Plot ``rows`` (:meth:`StudyReport.summary`) to ``path``; ``args``:
    the study's arguments (probes, shots, seeds, cost)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    linear = 'linear' in args.probes
    few = 'fewshot' in args.probes
    panels = int(linear) + int(few)
    fig, axes = plt.subplots(1, max(panels, 1),
                             figsize=(5 * max(panels, 1), 4),
                             squeeze=False)
    axes = list(axes[0])
    if linear:
        ax = axes.pop(0)
        m = [r['metrics']['linear_top1'] for r in rows]
        ax.bar(range(len(rows)), [x['mean'] or 0 for x in m],
               yerr=[x['std'] or 0 for x in m], capsize=4,
               color=[f'C{i}' for i in range(len(rows))])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r['label'] for r in rows], rotation=20,
                           ha='right', fontsize=8)
        ax.set_ylabel('top-1 (%)')
        ax.set_title(f'linear probe ({data["val_split"]})')
    if few:
        ax = axes.pop(0)
        shots = list(args.shots)
        for i, r in enumerate(rows):
            m = [r['metrics'][f'fewshot_{n}shot_top1'] for n in shots]
            ax.errorbar(shots, [x['mean'] if x['mean'] is not None
                                else float('nan') for x in m],
                        yerr=[x['std'] or 0 for x in m], marker='o',
                        capsize=3, label=r['label'], color=f'C{i}')
        ax.set_xscale('log', base=2)
        ax.set_xticks(shots)
        ax.set_xticklabels([str(n) for n in shots])
        ax.set_xlabel('images per class')
        ax.set_ylabel('top-1 (%)')
        ax.set_title(f'few-shot ({data["val_split"]})')
        ax.legend(fontsize=8)
    spent = f'{budget} {budget_unit}' + (
        ' (MAE-step eq.)' if args.cost or args.cost_file else '')
    fig.suptitle(f'budget {spent}, mean ± std over '
                 f'{len(args.seeds)} seed(s)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
