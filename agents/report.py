"""Evaluation report: markdown table, PNG plots, WAV renders and one self-contained HTML.

:func:`format_table` is the results table (mean/IQM [95 % CI] per agent and metric),
:func:`format_comparisons` the paired comparisons of every pair of agents;
:func:`write_report` fills an output folder with

* ``results.md`` — the results table and the paired comparisons;
* ``distance_over_steps.png`` — mean distance per step with a 95 % band per agent;
* ``performance_profiles.png`` — fraction of episodes with normalized score ≥ τ per
  agent with 95 % bands, when the normalized score was computed;
* ``learning_curves.png`` — episode return and final distance against training steps
  of every trained model (from its run's ``progress*.csv``), when there is one;
* ``spectrograms.png`` — target (top) vs result (bottom) log-mel per agent and
  showcase episode (the env's ``render()``);
* ``wav/target_<k>.wav`` and ``wav/<agent>_<k>.wav`` — what the target and each
  agent's final sound are;
* ``report.html`` — the table, every plot (base64 PNG) and audio players (base64 WAV)
  in one file that opens anywhere.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import BASELINE_NAMES, make_baseline
from agents.common.envs import make_env
from agents.common.episodes import replay_episode
from agents.common.statistics import mean_normal_band


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("the report needs matplotlib: pip install 'matplotlib>=3.8'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def read_progress(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Columns of a run's ``progress*.csv`` files (resumed runs have several), joined
    and sorted by ``time/total_timesteps``; missing values are NaN.

    :param run_dir: a run folder.
    """
    rows: list[dict[str, str]] = []
    for path in sorted(Path(run_dir).glob("progress*.csv")):
        with path.open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
    keys = sorted({k for r in rows for k in r})
    out: dict[str, np.ndarray] = {}
    for k in keys:
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(k) or "nan"))
            except ValueError:
                vals.append(math.nan)
        out[k] = np.asarray(vals)
    if "time/total_timesteps" in out:
        order = np.argsort(out["time/total_timesteps"], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out


def plot_distance_over_steps(result: Any, path: Path) -> Path:
    """Mean distance per step with a 95 % normal band, one line per agent.

    Episodes that ended early keep their final distance for the remaining steps.

    :param result: an :class:`agents.evaluate.EvalResult`.
    :param path: PNG destination.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent in result.agents:
        horizon = max(len(e.distances) for e in agent.episodes)
        mat = np.array(
            [e.distances + [e.distances[-1]] * (horizon - len(e.distances)) for e in agent.episodes]
        )
        mean, half = mean_normal_band(mat)
        steps = np.arange(horizon)
        ax.plot(steps, mean, label=agent.label)
        ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
    ax.axhline(result.success_distance, color="k", ls="--", lw=0.8, label="success threshold")
    ax.set_xlabel("step")
    ax.set_ylabel("spectral distance")
    ax.set_title(f"{result.env_id} on {result.target_set}: distance over steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_performance_profiles(result: Any, path: Path) -> Path | None:
    """Performance profiles of the normalized score (fraction of episodes with score
    ≥ τ against τ) with their 95 % target-clustered bands, one line per scored agent.

    :param result: an :class:`agents.evaluate.EvalResult`.
    :param path: PNG destination.
    :return: the path, or None when no agent has a profile.
    """
    scored = [a for a in result.agents if getattr(a, "profile", None) is not None]
    if not scored:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent in scored:
        prof = agent.profile
        ax.step(prof.taus, prof.fraction, where="post", label=agent.label)
        ax.fill_between(prof.taus, prof.low, prof.high, step="post", alpha=0.15)
    ax.set_xlabel("normalized score τ (0 = doing nothing, 1 = oracle)")
    ax.set_ylabel("fraction of episodes with score ≥ τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result.env_id}: performance profiles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(run_dirs: Mapping[str, str], path: Path) -> Path | None:
    """Episode return and final distance against training steps, one line per run.

    :param run_dirs: label -> run folder.
    :param path: PNG destination.
    :return: the path, or None when no run has logs.
    """
    curves = {label: read_progress(d) for label, d in run_dirs.items()}
    curves = {k: v for k, v in curves.items() if "time/total_timesteps" in v}
    if not curves:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, cols in curves.items():
        x = cols["time/total_timesteps"]
        for ax, key in zip(axes, ("rollout/ep_rew_mean", "charts/final_distance"), strict=True):
            if key in cols:
                ok = np.isfinite(cols[key])
                ax.plot(x[ok], cols[key][ok], marker=".", label=label)
    axes[0].set_ylabel("episode return")
    axes[1].set_ylabel("final distance")
    for ax in axes:
        ax.set_xlabel("training steps")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectrograms(
    images: Mapping[str, Sequence[np.ndarray]], titles: Mapping[str, Sequence[str]], path: Path
) -> Path | None:
    """Grid of target-vs-result spectrogram images (rows: agents, columns: episodes).

    :param images: agent label -> one ``[H, W, 3]`` image per showcase episode.
    :param titles: agent label -> one title per image.
    :param path: PNG destination.
    """
    if not images or not any(images.values()):
        return None
    plt = _plt()
    rows = len(images)
    cols = max(len(v) for v in images.values())
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for r, (label, imgs) in enumerate(images.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(imgs[c], aspect="auto")
                ax.set_title(f"{label}: {titles[label][c]}", fontsize=8)
    fig.suptitle("target (top) vs result (bottom), log-mel")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _num(v: float) -> str:
    return f"{v:.2f}"


def format_percent(v: float) -> str:
    """A proportion in percent, one decimal, trailing zeros dropped (0.074 -> "7.4")."""
    return f"{100 * v:.1f}".rstrip("0").rstrip(".")


def format_success(s: Any) -> str:
    """A success rate in percent with its interval ("25 % [5.5, 57.2]"; "—" for none).

    :param s: a :class:`~agents.common.statistics.MetricSummary` of a success rate.
    """
    if math.isnan(s.mean):
        return "—"
    return f"{format_percent(s.mean)} % [{format_percent(s.ci_low)}, {format_percent(s.ci_high)}]"


def format_interval(value: float, lo: float, hi: float, fmt: Callable[[float], str] = _num) -> str:
    if math.isnan(value):
        return "—"
    if math.isnan(lo) or math.isnan(hi):  # fewer than two targets: no interval
        return f"{fmt(value)} [—]"
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


#: Table columns: (header, metric, statistic).
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("return ↑", "return", "mean"),
    ("return IQM ↑", "return", "iqm"),
    ("final distance ↓", "final_distance", "mean"),
    ("final distance IQM ↓", "final_distance", "iqm"),
    ("success rate ↑", "success", "mean"),
    ("steps to threshold ↓", "steps_to_threshold", "mean"),
    ("safety violations ↓", "violations", "mean"),
    ("final knob error ↓", "knob_error", "mean"),
)

#: Column added after "final distance IQM ↓" when the oracle gave a normalized score.
_NORMALIZED_COLUMN: tuple[str, str, str] = ("normalized score IQM ↑", "normalized_score", "iqm")

#: Spend kinds of a baseline and their short units (budget column).
_SPEND_UNITS: tuple[tuple[str, str], ...] = (
    ("renders", "renders"),
    ("gradient_evals", "gradients"),
    ("hindsight_episodes", "hindsight episodes"),
)


def _columns(result: Any) -> list[tuple[str, str, str]]:
    cols = list(_COLUMNS)
    if any("normalized_score" in a.metrics for a in result.agents):
        at = [c[0] for c in cols].index("final distance IQM ↓") + 1
        cols.insert(at, _NORMALIZED_COLUMN)
    return cols


def budget_cell(cost: Mapping[str, Any]) -> str:
    """Declared budget and, where something was spent, the mean spend per episode
    ("8 renders/step; spent 40 renders/episode")."""
    text = str(cost["budget_text"])
    per = cost.get("spent_per_episode") or {}
    spent = [f"{_amount(per[k])} {u}/episode" for k, u in _SPEND_UNITS if per.get(k)]
    if spent:
        text = f"{text}; spent {', '.join(spent)}" if text != "—" else f"spent {', '.join(spent)}"
    return text


def _amount(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def format_table(result: Any) -> str:
    """Markdown table: one row per agent, ``value [95 % CI]`` per metric.

    Means and IQMs carry bootstrap CIs clustered by target (and training run); success
    rates are in percent with exact Clopper–Pearson intervals (``0 % [0, 7.4]`` for
    0/48). A "training seeds" column appears when an agent pools several runs;
    "privileged" and "budget" columns when baselines are in the table (what each sees
    beyond the observation, its declared extra renders/gradients and what it spent per
    recorded episode on average; "—" for trained models). A "normalized score IQM ↑"
    column appears when the oracle played (:func:`agents.evaluate.add_normalized_scores`;
    "—" for an agent without a score).

    :param result: an :class:`agents.evaluate.EvalResult`.
    """
    pooled = any(getattr(a, "n_runs", 1) > 1 for a in result.agents)
    costs = any(getattr(a, "cost", None) is not None for a in result.agents)
    columns = _columns(result)
    head = [
        "agent",
        *(["training seeds"] if pooled else []),
        *(["privileged", "budget"] if costs else []),
        *(c[0] for c in columns),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in result.agents:
        cells = [a.label]
        if pooled:
            cells.append(str(a.n_runs) if a.algo != "baseline" else "—")
        if costs:
            cost = getattr(a, "cost", None)
            cells.append((", ".join(cost["privileged"]) or "none") if cost else "—")
            cells.append(budget_cell(cost) if cost else "—")
        for _, m, stat in columns:
            s = a.metrics.get(m)
            if s is None:
                cells.append("—")
            elif m == "success":
                cells.append(format_success(s))
            elif stat == "iqm":
                cells.append(format_interval(s.iqm, s.iqm_low, s.iqm_high))
            else:
                cells.append(format_interval(s.mean, s.ci_low, s.ci_high))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_VERDICT = {"better": "A better", "worse": "B better", "no clear difference": "no clear difference"}


def format_comparisons(result: Any) -> str:
    """Markdown table of the paired comparisons (every pair of agents, same episodes):
    mean difference A − B of final distance and return with target-clustered 95 % CIs,
    P(A better than B) on final distance with its CI, and the verdict — "A better" /
    "B better" only when the paired CI of the final-distance difference excludes 0.

    :param result: an :class:`agents.evaluate.EvalResult`.
    """
    head = [
        "A vs B",
        "Δ final distance (A − B)",
        "Δ return (A − B)",
        "P(A better) final distance",
        "verdict (final distance)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in getattr(result, "comparisons", []):
        d, r = c["final_distance"], c["return"]
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{c['a']} vs {c['b']}",
                    format_interval(d.diff, d.diff_low, d.diff_high),
                    format_interval(r.diff, r.diff_low, r.diff_high),
                    format_interval(d.p_improve, d.p_low, d.p_high),
                    _VERDICT[d.verdict],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def markdown_to_html_table(table: str) -> str:
    """Turn the markdown table of :func:`format_table` into HTML.

    :param table: markdown table text.
    """
    lines = [ln for ln in table.strip().splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out = ['<table class="results">', "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }
table.results { border-collapse: collapse; margin: 1em 0; }
table.results th, table.results td { border: 1px solid #bbb; padding: 4px 8px; }
table.results th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.audio-grid td { padding: 2px 8px; vertical-align: middle; }
"""


def build_html(
    result: Any,
    table_md: str,
    plots: Sequence[tuple[str, Path]],
    audio: Sequence[tuple[str, list[tuple[str, Path]]]],
    notes: Sequence[str] = (),
    comparisons_md: str = "",
) -> str:
    """The self-contained report page.

    :param result: an :class:`agents.evaluate.EvalResult`.
    :param table_md: the markdown results table.
    :param plots: ``(caption, png path)`` pairs, embedded as base64 ``<img>``.
    :param audio: per showcase episode ``(title, [(label, wav path), ...])``, embedded
        as base64 ``<audio>`` players.
    :param notes: extra paragraphs (plain text).
    :param comparisons_md: the markdown paired-comparison table (empty: none).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>aegym evaluation: {html.escape(result.env_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(result.env_id)} — evaluation on “{html.escape(result.target_set)}”</h1>",
        (
            f"<p>{len(result.target_indices)} targets × {len(result.seeds)} seeds = "
            f"{len(result.target_indices) * len(result.seeds)} episodes per agent, the same "
            f"for every agent. Value [95 % CI]: means and IQMs with bootstrap CIs that "
            f"resample targets (and training runs); success rates with exact "
            f"Clopper–Pearson intervals. Success: distance &lt; "
            f"{result.success_distance}. Violations: steps with a negative penalty term, plus "
            f"divergences.</p>"
        ),
        markdown_to_html_table(table_md),
    ]
    if comparisons_md:
        parts.append(
            "<h2>Paired comparisons</h2><p>Same episodes for both agents; differences "
            "with target-clustered 95 % CIs; “A better” only when the CI of the "
            "final-distance difference excludes 0 (no correction for multiple pairs).</p>"
        )
        parts.append(markdown_to_html_table(comparisons_md))
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    for caption, path in plots:
        parts.append(f"<h2>{html.escape(caption)}</h2>")
        parts.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{_b64(path)}">')
    if audio:
        parts.append("<h2>Listen: target vs results</h2>")
        for title, clips in audio:
            parts.append(f"<h3>{html.escape(title)}</h3><table class='audio-grid'>")
            for label, wav in clips:
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td><audio controls "
                    f'src="data:audio/wav;base64,{_b64(wav)}"></audio></td></tr>'
                )
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    result: Any,
    out_dir: Path,
    showcase: Sequence[Any],
    loaded: Mapping[str, tuple[str, Any, str | None]],
    extra_runs: Sequence[str] = (),
) -> dict[str, Path]:
    """Write every report file of an evaluation into ``out_dir``.

    :param result: an :class:`agents.evaluate.EvalResult` (its ``showcase`` is filled).
    :param out_dir: destination folder (created).
    :param showcase: episodes (:class:`agents.common.episodes.EpisodeSpec`) to render.
    :param loaded: agent label -> ``(agent spec, agent, run folder or None)``.
    :param extra_runs: more run folders for the learning curves.
    :return: name -> path of every file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    table = format_table(result)
    comparisons = format_comparisons(result) if getattr(result, "comparisons", None) else ""
    md = out_dir / "results.md"
    md.write_text(
        f"# {result.env_id} on {result.target_set}\n\n"
        f"{len(result.target_indices)} targets × {len(result.seeds)} seeds per agent; "
        f"value [95 % CI]: mean and IQM with bootstrap CIs resampling targets (and "
        f"training runs), success rate with an exact Clopper–Pearson interval.\n\n{table}\n"
        + (f"\n## Paired comparisons (same episodes)\n\n{comparisons}\n" if comparisons else "")
    )
    files["markdown"] = md

    plots: list[tuple[str, Path]] = []
    files["distance_plot"] = plot_distance_over_steps(result, out_dir / "distance_over_steps.png")
    plots.append(("Distance over steps", files["distance_plot"]))
    profiles = plot_performance_profiles(result, out_dir / "performance_profiles.png")
    if profiles is not None:
        files["performance_profiles"] = profiles
        plots.append(("Performance profiles (normalized score)", profiles))
    runs = {label: rd for label, (_, _, rd) in loaded.items() if rd}
    for rd in extra_runs:
        runs.setdefault(Path(rd).name, rd)
    curves = plot_learning_curves(runs, out_dir / "learning_curves.png")
    if curves is not None:
        files["learning_curves"] = curves
        plots.append(("Learning curves", curves))

    images: dict[str, list[np.ndarray]] = {}
    titles: dict[str, list[str]] = {}
    audio: list[tuple[str, list[tuple[str, Path]]]] = []
    env_kwargs = dict(result.env_kwargs)
    for k, spec in enumerate(showcase):
        clips: list[tuple[str, Path]] = []
        target_wav: Path | None = None
        for label, (agent_spec, agent, _) in loaded.items():
            # Baselines that read the plant are rebuilt on the rendering env; models reused.
            env = make_env(result.env_id, render_mode="rgb_array", **env_kwargs)
            try:
                player = make_baseline(agent_spec, env) if agent_spec in BASELINE_NAMES else agent
                final = replay_episode(env, player, spec)
                img = env.render()
                if target_wav is None:
                    target_wav = env.unwrapped.save_wav(wav_dir / f"target_{k}.wav", "target")  # type: ignore[attr-defined]
                    clips.append(("target", target_wav))
                wav = env.unwrapped.save_wav(wav_dir / f"{_safe(label)}_{k}.wav", "current")  # type: ignore[attr-defined]
            finally:
                env.close()
            clips.append((f"{label} (final distance {final:.2f})", wav))
            images.setdefault(label, []).append(np.asarray(img))
            titles.setdefault(label, []).append(f"target {spec.target_index}, d={final:.2f}")
            result.showcase.setdefault(label, []).append(
                {
                    "target_index": spec.target_index,
                    "seed": spec.seed,
                    "final_distance": final,
                    "result_wav": str(wav),
                    "target_wav": str(target_wav),
                }
            )
        name = result.target_names[result.target_indices.index(spec.target_index)]
        audio.append((f"episode {k}: target {spec.target_index} ({name}), seed {spec.seed}", clips))
    spec_png = plot_spectrograms(images, titles, out_dir / "spectrograms.png")
    if spec_png is not None:
        files["spectrograms"] = spec_png
        plots.append(("Spectrograms: target vs result", spec_png))

    page = build_html(result, table, plots, audio, comparisons_md=comparisons)
    report = out_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    files["html"] = report
    return files
