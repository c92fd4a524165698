"""Report of bench/pool.sh: reads its results.tsv (one row per measurement,
naming the h2load output and per-request log) and prints markdown tables:
medians over the runs, and ratios taken within each run, then their median.

    python3 bench/pool_report.py results.tsv DURATION
"""
import csv
import re
import statistics
import sys

WINDOW = 0.25  # seconds: the req/s of each quarter second, for the dip


def h2load_summary(path):
    text = open(path).read()
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    rps = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    failed = int(m.group(5)) + int(m.group(7)) if m else -1
    return rps, failed


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    return sorted_v[min(len(sorted_v) - 1, int(len(sorted_v) * p))]


def log_stats(path):
    """Latency percentiles (ms), non-2xx answers, the worst quarter second's
    req/s as a share of the median quarter second's, and the longest gap
    between two answers (ms)."""
    starts, ends, durs, non2xx = [], [], [], 0
    for line in open(path):
        f = line.split("\t")
        if len(f) < 3:
            continue
        start, status, dur = int(f[0]), int(f[1]), int(f[2])
        if not 200 <= status < 300:
            non2xx += 1
        starts.append(start)
        ends.append(start + dur)
        durs.append(dur / 1000)
    durs.sort()
    ends.sort()
    out = {"p50": pct(durs, .5), "p99": pct(durs, .99), "p999": pct(durs, .999), "non2xx": non2xx,
           "dip": float("nan"), "gap": float("nan")}
    if len(ends) < 2:
        return out
    # Windows from 1 s after the first answer to 0.5 s before the last: the
    # ramp and the tail are not the steady state.
    t0, t1 = ends[0] / 1e6 + 1, ends[-1] / 1e6 - 0.5
    n = int((t1 - t0) / WINDOW)
    if n >= 4:
        counts = [0] * n
        for e in ends:
            i = int((e / 1e6 - t0) / WINDOW)
            if 0 <= i < n:
                counts[i] += 1
        med = statistics.median(counts)
        out["dip"] = min(counts) / med if med else float("nan")
    out["gap"] = max(b - a for a, b in zip(ends, ends[1:])) / 1000
    return out


def load(path):
    rows = []
    for r in csv.DictReader(open(path), delimiter="\t"):
        rps, failed = h2load_summary(r["h2load"])
        st = log_stats(r["log"])
        r.update(st)
        r["rps"] = rps
        r["failed"] = max(failed, st["non2xx"]) if failed >= 0 else -1
        r["pss_mib"] = int(r["pss_kb"] or 0) / 1024
        r["rss_mib"] = int(r["rss_kb"] or 0) / 1024
        r["recycles"] = int(float(r["recycles"] or 0))
        rows.append(r)
    return rows


def med(v):
    v = [x for x in v if x == x]  # drop NaN
    return statistics.median(v) if v else float("nan")


def cell(rows, key, fmt="{:.1f}"):
    v = [r[key] for r in rows]
    if len(v) == 1:
        return fmt.format(v[0])
    return fmt.format(med(v)) + " [" + fmt.format(min(v)) + "–" + fmt.format(max(v)) + "]"


def ratio(a_rows, b_rows, key):
    """Median over the runs of a/b, each taken within one run."""
    by_run = {r["run"]: r for r in b_rows}
    v = [a[key] / by_run[a["run"]][key] for a in a_rows
         if a["run"] in by_run and by_run[a["run"]][key]]
    return med(v)


def pick(rows, **kw):
    return [r for r in rows if all(str(r[k]) == str(v) for k, v in kw.items())]


def main():
    rows = load(sys.argv[1])
    thr = pick(rows, scenario="throughput")
    if thr:
        print("## Throughput, CPU-bound endpoint (5 ms of CPU per request), no recycling\n")
        print("Cells: median [min–max] over the runs; **ratio** Bulwark / nginx+gunicorn, per run then median.\n")
        print("| workers | | req/s | p99 ms | whole stack PSS MiB | whole stack RSS MiB |")
        print("|---|---|---|---|---|---|")
        for n in sorted({int(r["workers"]) for r in thr}):
            b, g = pick(thr, workers=n, stack="bulwark"), pick(thr, workers=n, stack="gunicorn")
            print(f"| {n} | Bulwark | {cell(b, 'rps', '{:.0f}')} | {cell(b, 'p99')} | {cell(b, 'pss_mib')} | {cell(b, 'rss_mib')} |")
            print(f"| {n} | nginx + gunicorn | {cell(g, 'rps', '{:.0f}')} | {cell(g, 'p99')} | {cell(g, 'pss_mib')} | {cell(g, 'rss_mib')} |")
            print(f"| {n} | **ratio** | **{ratio(b, g, 'rps'):.2f}×** | **{ratio(b, g, 'p99'):.2f}×** | "
                  f"**{ratio(b, g, 'pss_mib'):.2f}×** | **{ratio(b, g, 'rss_mib'):.2f}×** |")
        failed = sum(max(r["failed"], 0) for r in thr)
        print(f"\nFailed requests over all throughput rows: {failed}.\n")
    rec = pick(rows, scenario="recycle")
    if rec:
        mr = max(int(r["max_requests"]) for r in rec)
        print(f"## Recycling under load: max_requests {mr} against the same stack without\n")
        print("Dip: the worst quarter second's req/s as a share of the run's median quarter second (1.00 = no dip). "
              "Gap: the longest time with no answer at all.\n")
        print("| stack | recycling | req/s | failed | p99 ms | p999 ms | dip | gap ms | recycles |")
        print("|---|---|---|---|---|---|---|---|---|")
        for stack, name in (("bulwark", "Bulwark"), ("gunicorn", "nginx + gunicorn")):
            for m in (0, mr):
                x = pick(rec, stack=stack, max_requests=m)
                label = f"max_requests {m}" if m else "none"
                print(f"| {name} | {label} | {cell(x, 'rps', '{:.0f}')} | {cell(x, 'failed', '{:.0f}')} | "
                      f"{cell(x, 'p99')} | {cell(x, 'p999')} | {cell(x, 'dip', '{:.2f}')} | {cell(x, 'gap')} | "
                      f"{cell(x, 'recycles', '{:.0f}')} |")
        print("\nRatios, recycling / without, per run then median:\n")
        print("| stack | p999 | p99 | req/s | dip | target | verdict |")
        print("|---|---|---|---|---|---|---|")
        for stack, name in (("bulwark", "Bulwark"), ("gunicorn", "nginx + gunicorn")):
            on, off = pick(rec, stack=stack, max_requests=mr), pick(rec, stack=stack, max_requests=0)
            r999 = ratio(on, off, "p999")
            target = verdict = "–"
            if stack == "bulwark":
                target = "p999 ≤ 2× without"
                verdict = f"{'met' if r999 <= 2 else 'missed'} ({r999:.2f}×)"
            print(f"| {name} | **{r999:.2f}×** | {ratio(on, off, 'p99'):.2f}× | {ratio(on, off, 'rps'):.2f}× | "
                  f"{ratio(on, off, 'dip'):.2f}× | {target} | {verdict} |")
        b, g = pick(rec, stack="bulwark", max_requests=mr), pick(rec, stack="gunicorn", max_requests=mr)
        print(f"\nBulwark / nginx+gunicorn, both recycling: p999 **{ratio(b, g, 'p999'):.2f}×**, "
              f"p99 {ratio(b, g, 'p99'):.2f}×, req/s {ratio(b, g, 'rps'):.2f}×.")


if __name__ == "__main__":
    main()
