"""Pass/fail counts per area: distilabel 1.5.3's own unit tests, imports renamed, run against beam_distil.

Only tests that pass against distilabel itself in this environment (ref_results.xml) are counted; tests that test
distilabel internals (internal_tests.json, written by prepare.py next to the results) are counted separately.

Usage: python report.py <work>/ref_results.xml <work>/beam_results_<mode>.xml [--causes]
"""

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from areas import AREAS

FILE_AREA = {f: area for area, files in AREAS.items() for f in files}


def results(xml_path):
    """test id -> (outcome, message); plus file -> collection error message."""
    out, collection_errors = {}, {}
    for case in ET.parse(xml_path).iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if not classname and problem is not None:  # a file that could not be collected: name is its module
            detail = (problem.text or "").strip().splitlines()
            errors = [line for line in detail if line.startswith("E ")]
            collection_errors["/".join(name.split(".")[2:]) + ".py"] = (
                "collection error: " + (errors[-1][1:].strip() if errors else problem.get("message", ""))
            )
            continue
        parts = classname.split(".")
        # tests.unit.steps.test_base.TestStep -> steps/test_base.py::TestStep
        try:
            i = next(k for k in range(len(parts) - 1, -1, -1) if parts[k].startswith("test_"))
        except StopIteration:
            continue
        path = "/".join(parts[2 : i + 1]) + ".py"
        cls = "::".join(parts[i + 1 :])
        test_id = f"{path}::{cls + '::' if cls else ''}{name}"
        if case.find("skipped") is not None:
            out[test_id] = ("skipped", case.find("skipped").get("message", ""))
        elif problem is not None:
            message = problem.get("message") or (problem.text or "").strip().splitlines()[-1:] or [""]
            message = message if isinstance(message, str) else message[0]
            out[test_id] = ("failed", message)
        else:
            out[test_id] = ("passed", "")
    return out, collection_errors


def function_id(test_id):
    return re.sub(r"\[.*\]$", "", test_id)


def cause(message):
    """A short group label for a failure message."""
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    first = re.sub(r"0x[0-9a-f]+", "0x..", first)
    return first[:160]


def main():
    internal = json.loads((Path(sys.argv[2]).resolve().parent / "internal_tests.json").read_text())
    ref, _ = results(sys.argv[1])
    beam, beam_collection_errors = results(sys.argv[2])
    show_causes = "--causes" in sys.argv
    table = defaultdict(Counter)
    causes = defaultdict(list)
    for test_id, (outcome, _) in sorted(ref.items()):
        if outcome != "passed":
            continue  # fails or is skipped on distilabel itself here: not counted
        path = test_id.split("::")[0]
        area = FILE_AREA.get(path)
        if area is None:
            continue
        kind = "internals" if internal.get(function_id(test_id), False) else "api"
        got, message = beam.get(test_id, (None, ""))
        if got is None:
            got, message = "failed", beam_collection_errors.get(path, "not run (file not collected)")
        table[(area, kind)]["total"] += 1
        table[(area, kind)][got] += 1
        if got != "passed":
            causes[(area, kind)].append((test_id, message))

    print(f"{'area':22} {'API pass/total':>16} {'internals pass/total':>22}")
    totals = {"api": Counter(), "internals": Counter()}
    for area in AREAS:
        cells = []
        for kind in ("api", "internals"):
            c = table[(area, kind)]
            totals[kind].update(c)
            cells.append(f"{c['passed']}/{c['total']}" if c["total"] else "-")
        print(f"{area:22} {cells[0]:>16} {cells[1]:>22}")
    a, i = totals["api"], totals["internals"]
    print(f"{'TOTAL':22} {a['passed']}/{a['total']:<10} {i['passed']:>15}/{i['total']}")
    if a["total"]:
        print(f"API tests passing: {100 * a['passed'] / a['total']:.0f}%  "
              f"(all, internals included: {100 * (a['passed'] + i['passed']) / (a['total'] + i['total']):.0f}%)")
    skipped_ref = sum(1 for t, (o, _) in ref.items() if o != "passed" and t.split("::")[0] in FILE_AREA)
    print(f"Not counted: {skipped_ref} tests that fail or skip on distilabel 1.5.3 itself in this environment.")
    if show_causes:
        for (area, kind), items in sorted(causes.items()):
            print(f"\n== {area} ({kind}): {len(items)} failing")
            grouped = Counter(cause(m) for _, m in items)
            example = {}
            for test_id, m in items:
                example.setdefault(cause(m), test_id)
            for label, n in grouped.most_common():
                print(f"  {n:4}  {label}\n        e.g. {example[label]}")


if __name__ == "__main__":
    main()
