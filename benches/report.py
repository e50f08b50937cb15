#!/usr/bin/env python3
"""Writes BENCHMARKS.md from one run of benches/run.sh.

Reads criterion's estimates (target/criterion/<group>/<contender>/new/
estimates.json) and the JSON lines the custom suites append to
target/bench-results/results.jsonl. Every ratio compares contenders
measured in the same run. Usage: benches/report.py COMMAND > BENCHMARKS.md
"""

import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRITERION = os.path.join(ROOT, "target", "criterion")
RESULTS = os.path.join(ROOT, "target", "bench-results", "results.jsonl")

BASELINE = "mutex-hashmap"
SLED = "sessiondb-sled-relaxed"
V1 = "sessiondb-sled-v1"

GROUPS = [
    ("load_hit", "load of a live session from its Cookie header (10k live)"),
    ("load_miss_forged", "load through a cookie whose HMAC tag does not verify"),
    ("load_miss_unknown", "load of a well-signed id that names no session"),
    ("create_save", "create + save of a session holding ~200 bytes"),
    ("update", "read, bump a counter, write back"),
    ("touch", "a read that moves last-seen past the touch threshold"),
    ("destroy", "destroy a live session"),
    ("regenerate", "new id, same data, old id gone"),
]


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    fs = subprocess.run(["df", "-T", ROOT], capture_output=True, text=True).stdout.splitlines()
    fstype = fs[-1].split()[1] if len(fs) > 1 else "?"
    return (f"{cpu}, {os.cpu_count()} cores, {mem}; {platform.system()} "
            f"{platform.release()}; {rustc}; target directory on {fstype}")


def criterion_median(group, contender):
    path = os.path.join(CRITERION, group, contender, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def contenders_of(group):
    d = os.path.join(CRITERION, group)
    if not os.path.isdir(d):
        return []
    return sorted(c for c in os.listdir(d) if c != "report" and os.path.isdir(os.path.join(d, c)))


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def results():
    rows = []
    try:
        with open(RESULTS) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except OSError:
        pass
    return rows


TOWER = ["tower-sessiondb", "tower-sessiondb-strict", "tower-sled", "tower-sqlite",
         "tower-sqlite-full", "tower-memory"]


def tower_section(p, med):
    """The tower-sessions stores side by side: sessiondb's own store
    (feature `tower-sessions`) against tower-sessions' sled, SQLite and
    memory stores, all through the same `SessionStore` calls."""
    if not any((g, "tower-sessiondb") in med for g, _ in GROUPS):
        return
    p("## tower-sessions stores, through the same `SessionStore` calls\n")
    p("`tower-sessiondb` is sessiondb's own store for tower-sessions apps "
      "(`sessiondb::TowerStore`, relaxed; `-strict`: every write synced). Every tower "
      "contender creates through `create` and regenerates as `Session::cycle_id` does "
      "(delete, then `create`). What the rows do not show: sessiondb's `delete` is "
      "synced in both modes (a logout survives a power cut), its `create` never "
      "overwrites and its `save` never re-creates a deleted session; tower-sled's "
      "`delete` is never synced, and tower-sqlite's only as its `synchronous` setting "
      "says (NORMAL: not; FULL: yes).\n")
    names = [c for c in TOWER if any((g, c) in med for g, _ in GROUPS)]
    p("| workload | " + " | ".join(names) + " | tower-sessiondb vs tower-sled | "
      "-strict vs tower-sqlite-full |")
    p("|---|" + "---:|" * (len(names) + 2))
    for group, _ in GROUPS:
        cells = [fmt_ns(med[(group, c)]) if (group, c) in med else "-" for c in names]

        def ratio(a, b):
            x, y = med.get((group, a)), med.get((group, b))
            return f"{x / y:.2f}x" if x and y else "-"
        p(f"| {group} | " + " | ".join(cells) + f" | {ratio('tower-sessiondb', 'tower-sled')} | "
          f"{ratio('tower-sessiondb-strict', 'tower-sqlite-full')} |")
    p("\nRatios are times (lower is faster).\n")


def main():
    command = " ".join(sys.argv[1:]) or "benches/run.sh"
    out = []
    p = out.append
    p("# Benchmarks\n")
    p(f"Written by `benches/report.py` from one run of `{command}` on "
      f"{datetime.date.today().isoformat()}.\n")
    p(f"Machine: {machine()}.\n")
    p("Every ratio compares contenders measured in the same run; these machines are "
      "shared and noisy, so read ratios, not absolute figures. The contenders are "
      "described in `benches/contenders/mod.rs`; every one has the same signed-token "
      "check in front of its store.\n")

    med = {}
    p("## Single requests (criterion medians, one thread)\n")
    p(f"Ratio: the contender's time over `{BASELINE}`'s (lower is faster).\n")
    for group, what in GROUPS:
        names = contenders_of(group)
        if not names:
            continue
        p(f"### {group}: {what}\n")
        p("| contender | median | vs " + BASELINE + " |")
        p("|---|---:|---:|")
        base = criterion_median(group, BASELINE)
        for c in names:
            m = criterion_median(group, c)
            if m is None:
                continue
            med[(group, c)] = m
            ratio = f"{m / base:.2f}x" if base else "-"
            p(f"| {c} | {fmt_ns(m)} | {ratio} |")
        p("")

    tower_section(p, med)

    rows = results()
    by = {}
    for r in rows:
        by[(r["workload"], r.get("contender", SLED))] = r

    mixed = [r for r in rows if r["suite"] == "mixed"]
    if mixed:
        p("## 90 % loads / 10 % updates (operations/s)\n")
        p(f"Ratio: the contender's throughput over `{BASELINE}`'s (higher is faster).\n")
        workloads = sorted({r["workload"] for r in mixed}, key=lambda w: int(w.split("_")[-1][:-1]))
        names = list(dict.fromkeys(r["contender"] for r in mixed))
        p("| contender | " + " | ".join(w.split("_")[-1].replace("t", " threads") for w in workloads) + " |")
        p("|---|" + "---:|" * len(workloads))
        for c in names:
            cells = []
            for w in workloads:
                r = by.get((w, c))
                b = by.get((w, BASELINE))
                if r is None:
                    cells.append("-")
                    continue
                ratio = f" ({r['ops_per_s'] / b['ops_per_s']:.2f}x)" if b else ""
                cells.append(f"{r['ops_per_s']:.0f}{ratio}")
            p(f"| {c} | " + " | ".join(cells) + " |")
        p("")

    strict = [r for r in rows if r["suite"] == "strict"]
    if strict:
        p("## Strict durability: commits/s (every commit on stable storage)\n")
        p("Ratio: over `one-sync-per-commit` (the same engine, writers taking turns, each "
          "paying its own flush + fdatasync).\n")
        p("| writers | sessiondb-sled-strict | one-sync-per-commit | tower-sqlite-full | "
          "group commit vs one sync | vs SQLite |")
        p("|---:|---:|---:|---:|---:|---:|")
        for w in sorted({r["workload"] for r in strict}, key=lambda w: int(w.split("_")[-1][:-1])):
            g = by[(w, "sessiondb-sled-strict")]["commits_per_s"]
            s = by[(w, "one-sync-per-commit")]["commits_per_s"]
            q = by[(w, "tower-sqlite-full")]["commits_per_s"]
            p(f"| {w.split('_')[-1][:-1]} | {g:.0f} | {s:.0f} | {q:.0f} | {g / s:.1f}x | {g / q:.1f}x |")
        p("")

    sustained = [r for r in rows if r["suite"] == "sustained"]
    floors = {r["workload"]: r for r in sustained if r["workload"].startswith("floor_")}
    sustained_all = [r for r in sustained if not r["workload"].startswith("floor_")]
    # The engine's first write path, run beside the current one.
    sustained_v1 = [r for r in sustained_all if r["contender"] == "sessiondb-sled-v1"]
    sustained = [r for r in sustained_all if r["contender"] != "sessiondb-sled-v1"]
    if sustained:
        secs = int(sustained[0]["secs"])
        p(f"## Sustained relaxed creates ({secs} s per run)\n")
        p("`v1`: the engine's first write path (`Config::write_path_v1`: a transaction per "
          "batch, expiry entries moved on every touch), in the same run.\n")
        p("| run | creates/s | p50 | p99 | max | final flush |")
        p("|---|---:|---:|---:|---:|---:|")
        for r in sustained + sustained_v1:
            v1 = " (v1)" if r["contender"] == "sessiondb-sled-v1" else ""
            p(f"| {r['workload'].replace('sustained_create_', '')}{v1} | {r['creates_per_s']:.0f} | "
              f"{r['p50_us']:.0f} µs | {r['p99_us']:.0f} µs | {r['max_us'] / 1000:.1f} ms | "
              f"{r['final_flush_ms']:.1f} ms |")
        p("")
        if floors:
            p("The floor: bare sled in the same run, one thread, no engine in front, storing the "
              "same record and its expiry entry per create (flushed every 1000):\n")
            p("| floor | creates/s | slowest 1000 | sessiondb's best run as a ratio |")
            p("|---|---:|---:|---:|")
            best = max((r["creates_per_s"] for r in sustained if "bound_off" not in r["workload"]),
                       default=0)
            for name, label in (("floor_sled_transactions", "one transaction over both trees per 1000"),
                                ("floor_sled_plain_inserts", "two plain inserts, no atomicity")):
                r = floors.get(name)
                if r:
                    p(f"| {label} | {r['creates_per_s']:.0f} | {r.get('slowest_batch_ms', 0):.1f} ms | "
                      f"{best / r['creates_per_s']:.2f}x |")
            p("")

    scale = [r for r in rows if r["suite"] == "scale"]
    if scale:
        p("## Scale (sessiondb on sled, relaxed, default cache)\n")
        lat = [r for r in scale if r["workload"].startswith("scale_")]
        if lat:
            p("| live sessions | fill/s (8 threads) | load p50 | load p99 | create p50 | create p99 |")
            p("|---:|---:|---:|---:|---:|---:|")
            for r in lat:
                p(f"| {int(r['sessions'])} | {r['fill_per_s']:.0f} | {r['load_p50_us']:.1f} µs | "
                  f"{r['load_p99_us']:.1f} µs | {r['create_p50_us']:.1f} µs | {r['create_p99_us']:.1f} µs |")
            p("")
        fl = [r for r in scale if r["workload"].startswith("floor_")]
        if fl:
            p("The floor, bare sled in the same run with no engine in front (same cache, same "
              "record size): random gets, and deleting every record with its expiry entry in "
              "transactions of 1000, each re-reading the record first:\n")
            p("| records | get p50 | get p99 | delete all |")
            p("|---:|---:|---:|---:|")
            for r in fl:
                p(f"| {int(r['sessions'])} | {r['load_p50_us']:.1f} µs | {r['load_p99_us']:.1f} µs | "
                  f"{r['delete_all_s']:.2f} s |")
            p("")
        sw = [r for r in scale if r["workload"].startswith("sweep_")]
        if sw:
            p("Sweep of expired sessions while two readers load live ones:\n")
            p("| engine | expired | sweep time | reader p50 idle / during | reader p99 idle / during | p99 ratio |")
            p("|---|---:|---:|---:|---:|---:|")
            for r in sw:
                engine = "v1" if r.get("contender") == "sessiondb-sled-v1" else "current"
                p(f"| {engine} | {int(r['expired'])} | {r['sweep_s']:.2f} s | {r['idle_p50_us']:.1f} / "
                  f"{r['during_p50_us']:.1f} µs | {r['idle_p99_us']:.1f} / {r['during_p99_us']:.1f} µs | "
                  f"{r['p99_ratio']:.2f}x |")
            p("")
        mem = [r for r in scale if r["workload"].startswith("memory_")]
        for r in mem:
            p(f"At {int(r['sessions'])} live sessions: {r['rss_bytes_per_session']:.0f} bytes of RSS and "
              f"{r['disk_bytes_per_session']:.0f} bytes on disk per session; reopen "
              f"{r['reopen_s'] * 1000:.0f} ms, first load served {r['first_load_s'] * 1000:.0f} ms "
              "after `open` began.\n")

    p("## Targets\n")
    p("| workload | target | measured | |")
    p("|---|---|---|---|")

    def target(name, goal, measured, ok):
        mark = "not run" if ok is None else ("met" if ok else "**missed**")
        p(f"| {name} | {goal} | {measured} | {mark} |")

    best = [med.get(("load_hit", b)) for b in (BASELINE, "dashmap")]
    best = min((b for b in best if b), default=None)
    sled_hit = med.get(("load_hit", SLED))
    if best and sled_hit:
        r = best / sled_hit
        target("load hit, sled, 1 thread", "≥ 0.5x the best in-memory baseline's throughput",
               f"{r:.2f}x", r >= 0.5)
    else:
        target("load hit, sled, 1 thread", "≥ 0.5x", "-", None)

    f_s, f_b = med.get(("load_miss_forged", SLED)), med.get(("load_miss_forged", BASELINE))
    if f_s and f_b:
        target("load miss, forged cookie", "no storage read (`tests/hostile_cookies_are_no_session.rs` counts backend reads); "
               "≤ 1.2x the baseline's cost", f"{f_s / f_b:.2f}x", f_s / f_b <= 1.2)
    else:
        target("load miss, forged cookie", "≤ 1.2x", "-", None)

    g = by.get(("strict_commits_32w", "sessiondb-sled-strict"))
    s = by.get(("strict_commits_32w", "one-sync-per-commit"))
    q = by.get(("strict_commits_32w", "tower-sqlite-full"))
    if g and s and q:
        gs, gq = g["commits_per_s"] / s["commits_per_s"], g["commits_per_s"] / q["commits_per_s"]
        target("strict commits, 32 writers", "≥ 5x one fsync per commit; above SQLite",
               f"{gs:.1f}x; {gq:.1f}x SQLite", gs >= 5 and gq > 1)
    else:
        target("strict commits, 32 writers", "≥ 5x; above SQLite", "-", None)

    fl = floors.get("floor_sled_transactions")
    floor_note = f"; bare sled's floor {fl['creates_per_s']:.0f}/s" if fl else ""
    for r in sustained:
        if "bound_off" in r["workload"]:
            continue
        ok = r["creates_per_s"] >= 30000 and r["max_us"] <= 100_000 and r["secs"] >= 60
        note = "" if r["secs"] >= 60 else f" (a {int(r['secs'])} s run; the target is for 60 s)"
        target(f"relaxed create, sustained, {r['workload'].split('_')[2]}",
               "≥ 30k/s, no call over 100 ms",
               f"{r['creates_per_s']:.0f}/s, max {r['max_us'] / 1000:.1f} ms{note}{floor_note}", ok)

    r = by.get(("sweep_1000000", SLED))
    if r:
        f = by.get(("floor_1000000", "sled"))
        fnote = f"; bare sled deletes them in {f['delete_all_s']:.1f} s" if f else ""
        target("sweep of 1M expired", "< 30 s; reader p99 < 2x idle",
               f"{r['sweep_s']:.1f} s; {r['p99_ratio']:.2f}x{fnote}", r["sweep_s"] < 30 and r["p99_ratio"] < 2)
    else:
        target("sweep of 1M expired", "< 30 s; reader p99 < 2x idle", "-", None)

    a, b = by.get(("scale_1000000", SLED)), by.get(("scale_10000", SLED))
    if a and b:
        r50, r99 = a["load_p50_us"] / b["load_p50_us"], a["load_p99_us"] / b["load_p99_us"]
        fa, fb = by.get(("floor_1000000", "sled")), by.get(("floor_10000", "sled"))
        fnote = (f"; bare sled's gets: p50 {fa['load_p50_us'] / fb['load_p50_us']:.2f}x, "
                 f"p99 {fa['load_p99_us'] / fb['load_p99_us']:.2f}x") if fa and fb else ""
        target("load at 1M vs 10k sessions", "latency within 2x",
               f"p50 {r50:.2f}x, p99 {r99:.2f}x{fnote}", r50 <= 2 and r99 <= 2)
    else:
        target("load at 1M vs 10k sessions", "within 2x", "-", None)

    lost = []
    shared = 0
    for group, _ in GROUPS:
        mine = med.get((group, SLED))
        for other in ("tower-sled", "tower-sqlite"):
            theirs = med.get((group, other))
            if mine and theirs:
                shared += 1
                if mine >= theirs:
                    lost.append(f"{group} vs {other} ({mine / theirs:.2f}x)")
    for r in mixed:
        if r["contender"] in ("tower-sled", "tower-sqlite"):
            mine = by.get((r["workload"], SLED))
            if mine:
                shared += 1
                if mine["ops_per_s"] <= r["ops_per_s"]:
                    lost.append(f"{r['workload']} vs {r['contender']}")
    if shared:
        target("vs tower-sessions-sled-store and SQLite", "faster on every shared workload",
               f"{shared - len(lost)} of {shared} faster" + (": slower in " + ", ".join(lost) if lost else ""),
               not lost)

    r = by.get(("memory_1000000", SLED))
    if r:
        target("memory at 1M sessions", "< 1 KB RSS per live session",
               f"{r['rss_bytes_per_session']:.0f} B", r["rss_bytes_per_session"] < 1024)
    else:
        target("memory at 1M sessions", "< 1 KB RSS per live session", "-", None)
    p("")

    # Write path v2: the current write path against the first one
    # (`sessiondb-sled-v1`) and tower-sessions' sled store, in this run.
    p("### Write path v2\n")
    p("| workload | target | measured | |")
    p("|---|---|---|---|")
    for group in ("create_save", "update", "touch", "regenerate", "destroy"):
        mine, v1, theirs = (med.get((group, c)) for c in (SLED, V1, "tower-sled"))
        if mine and theirs:
            v1_note = f" (v1: {v1 / theirs:.2f}x)" if v1 else ""
            target(f"{group} vs tower-sled", "≤ 1.0x", f"{mine / theirs:.2f}x{v1_note}",
                   mine <= theirs)
        else:
            target(f"{group} vs tower-sled", "≤ 1.0x", "-", None)
    if best and sled_hit:
        target("load hit vs the best in-memory map", "≥ 0.5x its throughput",
               f"{best / sled_hit:.2f}x", best / sled_hit >= 0.5)
    now1 = next((r for r in sustained if r["workload"] == "sustained_create_1t_bound_1000"), None)
    old1 = next((r for r in sustained_v1 if r["workload"] == "sustained_create_1t_bound_1000"), None)
    plain = floors.get("floor_sled_plain_inserts")
    if now1 and old1 and plain:
        a, b = now1["creates_per_s"] / old1["creates_per_s"], now1["creates_per_s"] / plain["creates_per_s"]
        target(f"sustained relaxed creates, 1 thread, {int(now1['secs'])} s",
               "≥ 2x v1; ≥ bare sled's two plain inserts",
               f"{now1['creates_per_s']:.0f}/s: {a:.2f}x v1 ({old1['creates_per_s']:.0f}/s), "
               f"{b:.2f}x the floor ({plain['creates_per_s']:.0f}/s)", a >= 2 and b >= 1)
    else:
        target("sustained relaxed creates", "≥ 2x v1; ≥ the plain-insert floor", "-", None)
    sw_now, sw_old = by.get(("sweep_1000000", SLED)), by.get(("sweep_1000000", V1))
    if sw_now and sw_old:
        speed = sw_old["sweep_s"] / sw_now["sweep_s"]
        target("sweep of 1M expired", "< 30 s or ≥ 3x v1; reader p99 < 2x idle",
               f"{sw_now['sweep_s']:.1f} s, {speed:.2f}x v1 ({sw_old['sweep_s']:.1f} s); "
               f"{sw_now['p99_ratio']:.2f}x",
               (sw_now["sweep_s"] < 30 or speed >= 3) and sw_now["p99_ratio"] < 2)
    else:
        target("sweep of 1M expired", "< 30 s or ≥ 3x v1", "-", None)
    for group, _ in GROUPS:
        mine, theirs = med.get((group, "sessiondb-redis")), med.get((group, "redis"))
        if mine and theirs and group != "load_miss_forged":
            target(f"redis {group}", "≤ 1.2x plain Redis", f"{mine / theirs:.2f}x", mine <= 1.2 * theirs)
    p("")
    # The hand-written analysis of the targets that are missed.
    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            p(f.read().rstrip())
    print("\n".join(out))


if __name__ == "__main__":
    main()
