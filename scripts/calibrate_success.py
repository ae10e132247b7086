"""Calibrate every tier's success distance: the README's calibration table.

Criterion (:mod:`aegym.calibration`): a match succeeds when it is as close to its target
as a render whose every free knob is off by an error a listener would accept (10 cents,
1 dB, 1/6 octave of cutoff, ...), measured on the train set's in-domain targets, median
over targets and random error directions.

    python scripts/calibrate_success.py            # markdown table
    python scripts/calibrate_success.py --json     # machine-readable
    python scripts/calibrate_success.py --check    # exit 1 if a registered value drifted
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from aegym.calibration import ACCEPTABLE_KNOB_ERROR, calibrate_success_distance
from aegym.envs import SUCCESS_DISTANCE

#: (key in SUCCESS_DISTANCE, ids, free-knob preset, render length in seconds)
TIERS = (
    ("easy", "SoundMatch-Easy-v1, SchedulerGains-v1", "easy", 0.5),
    ("medium", "SoundMatch-Medium-v1", "medium", 0.5),
    ("all", "SoundMatch-Full-v1", "all", 0.5),
    ("live_easy", "SoundMatchLive-v1 (0.25 s windows)", "easy", 0.25),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--check", action="store_true", help="fail if a value drifted")
    parser.add_argument("--n-signs", type=int, default=8, help="error directions per target")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed drift (--check)")
    args = parser.parse_args(argv)
    rows = []
    for key, ids, preset, duration in tqdm(TIERS, desc="tiers", disable=args.json):
        cal = calibrate_success_distance(preset, duration_s=duration, n_signs=args.n_signs)
        rows.append({"key": key, "ids": ids, "registered": SUCCESS_DISTANCE[key], **cal.to_dict()})
    if args.json:
        print(json.dumps({"acceptable_knob_error": dict(ACCEPTABLE_KNOB_ERROR), "tiers": rows}))
    else:
        print("| ids | free knobs | renders | q25 | **median = threshold** | q75 | registered |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            q = r["quantiles"]
            print(
                f"| {r['ids']} | {len(r['free_knobs'])} | {r['n_renders']} | {q['q25']:.2f} | "
                f"**{r['threshold']:.2f}** | {q['q75']:.2f} | {r['registered']:.2f} |"
            )
    drift = [r for r in rows if abs(r["threshold"] - r["registered"]) > args.tolerance]
    if args.check and drift:
        for r in drift:
            print(
                f"{r['key']}: measured {r['threshold']:.3f}, registered {r['registered']}",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
