# ruff: noqa
# Adapted from ../shared/bench/proxy-compare/runner.py (the measurement harness of
# research/local-limits.md), kept verbatim apart from this header so figures stay comparable.
"""Load runner for proxy-compare: wrk runs, per-process CPU/RSS and per-core accounting, median table.

Standard library only. Linux only (/proc).

  runner.py --targets targets.json --out results.json [--reps 3] [--duration 10]
            [--modes sat,paced,paced-spin] [--conns 50] [--paced-conns 16] [--paced-delay-ms 16]
            [--loadgen-cpu 0] [--proxy-cpu 1] [--wrk-script report.lua]

targets.json: [{"id": "A", "name": "...", "url": "http://127.0.0.1:18080/", "pid": 1234,
                "extra_wrk_args": []}, ...]
  pid: the root process of the thing measured; its descendants are included in CPU and RSS.

Modes:
  sat         closed loop, wrk -t1 -c<conns>: maximum throughput and latency at saturation
  paced       wrk -t1 -c<paced-conns>; before each request a connection waits a random 0..2x
              <paced-delay-ms> ms (report.lua), ~1000 req/s in all with the defaults: latency and
              CPU at a fixed, moderate load (a fixed delay would keep the connections in lockstep)
  paced-spin  as paced, with a SCHED_IDLE busy loop on every core so that idle vCPUs do not halt:
              separates the proxy's own latency from the VM's wake-up latency
Runs are interleaved (rep 1: every target, rep 2: every target, ...) so drift hits all alike.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

CLK = os.sysconf('SC_CLK_TCK')


def children_map():
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(')') + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    if not pid:
        return []
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids):
    """On-CPU time of every thread of pids, from the scheduler's ns counters (/proc/P/task/T/schedstat).

    Unlike utime+stime in /proc/P/stat, these are not tick samples (tick accounting over-charges
    tasks that wake an idle tickless CPU), and with paravirt steal accounting they leave out steal.
    Falls back to utime+stime where schedstat is missing.
    """
    t = 0.0
    for p in pids:
        try:
            tids = os.listdir('/proc/%d/task' % p)
        except OSError:
            continue
        for tid in tids:
            try:
                with open('/proc/%d/task/%s/schedstat' % (p, tid)) as f:
                    t += int(f.read().split()[0]) / 1e9
                continue
            except (OSError, ValueError, IndexError):
                pass
            try:
                with open('/proc/%d/task/%s/stat' % (p, tid)) as f:
                    s = f.read()
                fields = s[s.rindex(')') + 2:].split()
                t += (int(fields[11]) + int(fields[12])) / CLK
            except OSError:
                pass
    return t


def usr_sys(pids):
    """(utime ticks, stime ticks) summed over pids: tick samples, good enough for a user/kernel split."""
    u = k = 0
    for p in pids:
        try:
            with open('/proc/%d/stat' % p) as f:
                s = f.read()
            fields = s[s.rindex(')') + 2:].split()
            u += int(fields[11])
            k += int(fields[12])
        except OSError:
            pass
    return u, k


def rss_kb(pids):
    t = 0
    for p in pids:
        try:
            with open('/proc/%d/status' % p) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        t += int(line.split()[1])
                        break
        except OSError:
            pass
    return t


def core_times():
    out = {}
    with open('/proc/stat') as f:
        for line in f:
            if line.startswith('cpu') and line[3].isdigit():
                parts = line.split()
                v = list(map(int, parts[1:9]))  # user nice system idle iowait irq softirq steal
                out[int(parts[0][3:])] = v
    return out


def core_delta(before, after, cpu):
    b, a = before[cpu], after[cpu]
    d = [x - y for x, y in zip(a, b)]
    total = sum(d) or 1
    busy = d[0] + d[1] + d[2] + d[5] + d[6]
    return 100.0 * busy / total, 100.0 * d[7] / total


def parse_wrk(text):
    m = re.search(r'WRKJSON (\{.*\})', text)
    if not m:
        raise RuntimeError('wrk printed no summary:\n' + text)
    return json.loads(m.group(1))


def start_spinners(ncpu):
    procs = []
    for c in range(ncpu):
        p = subprocess.Popen(['chrt', '-i', '0', 'taskset', '-c', str(c), sys.executable, '-c',
                              'while True: pass'])
        procs.append(p)
    time.sleep(0.3)
    return procs


def stop_spinners(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def run_one(t, mode, a):
    pids = tree(t.get('pid'))
    env = dict(os.environ)
    if mode == 'sat':
        conns, env['WRK_DELAY_MS'] = a.conns, '0'
    else:
        conns, env['WRK_DELAY_MS'] = a.paced_conns, str(a.paced_delay_ms)
    cmd = ['taskset', '-c', str(a.loadgen_cpu), 'wrk', '-t1', '-c%d' % conns, '-d%ds' % a.duration,
           '--latency', '-s', a.wrk_script] + t.get('extra_wrk_args', []) + [t['url']]
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.5):
            samples.append(rss_kb(pids))

    us0 = usr_sys(pids)
    ct0, c0, w0 = cpu_seconds(pids), core_times(), time.monotonic()
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    w1, c1, ct1 = time.monotonic(), core_times(), cpu_seconds(pids)
    us1 = usr_sys(pids)
    stop.set()
    th.join()
    if res.returncode != 0:
        raise RuntimeError('wrk failed: %s\n%s' % (res.stderr, res.stdout))
    w = parse_wrk(res.stdout)
    wall = w1 - w0
    cpu_s = ct1 - ct0
    busy, steal = core_delta(c0, c1, a.proxy_cpu)
    lbusy, lsteal = core_delta(c0, c1, a.loadgen_cpu)
    n = w['requests']
    dur = w['duration_us'] / 1e6
    errors = w['err_connect'] + w['err_read'] + w['err_write'] + w['err_status'] + w['err_timeout']
    return {
        'id': t['id'], 'mode': mode, 'requests': n, 'rps': n / dur if dur else 0.0,
        'p50_us': w['p50'], 'p90_us': w['p90'], 'p99_us': w['p99'], 'p999_us': w['p999'],
        'mean_us': w['mean'], 'errors': errors,
        'proc_cpu_pct': 100.0 * cpu_s / wall, 'cpu_us_per_req': 1e6 * cpu_s / n if n else None,
        'proxy_core_busy_pct': busy, 'proxy_core_steal_pct': steal,
        'loadgen_core_busy_pct': lbusy, 'loadgen_core_steal_pct': lsteal,
        'user_pct_of_cpu': 100.0 * (us1[0] - us0[0]) / max(1, (us1[0] - us0[0]) + (us1[1] - us0[1])),
        'rss_mb': (max(samples) if samples else rss_kb(pids)) / 1024.0, 'nprocs': len(pids),
    }


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt_us(v):
    if v is None:
        return '-'
    return '%.2f ms' % (v / 1000.0) if v >= 1000 else '%d us' % round(v)


def table(results, targets, modes):
    lines = []
    names = {t['id']: t['name'] for t in targets}
    base = targets[0]['id']
    for mode in modes:
        rows = [r for r in results if r['mode'] == mode]
        if not rows:
            continue
        reps = max(len([r for r in rows if r['id'] == t['id']]) for t in targets)
        lines.append('')
        lines.append('### mode: %s  (median of %d runs; +pNN = added latency vs %s)' % (mode, reps, base))
        lines.append('')
        lines.append('| id | target | req/s (min-max) | p50 | p90 | p99 | CPU % | CPU us/req | req/s per core '
                     '| user % of CPU | RSS MB | +p50 | +p90 | +p99 | steal % | lg-core busy % | errors |')
        lines.append('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
        b = [r for r in rows if r['id'] == base]
        bp = {k: med(b, k) for k in ('p50_us', 'p90_us', 'p99_us')}
        for t in targets:
            rs = [r for r in rows if r['id'] == t['id']]
            if not rs:
                continue
            rps = [r['rps'] for r in rs]
            m = {k: med(rs, k) for k in ('rps', 'p50_us', 'p90_us', 'p99_us', 'proc_cpu_pct',
                                          'cpu_us_per_req', 'rss_mb', 'proxy_core_steal_pct',
                                          'loadgen_core_steal_pct', 'loadgen_core_busy_pct',
                                          'user_pct_of_cpu')}
            add = ['-' if t['id'] == base or bp[k] is None else fmt_us(m[k] - bp[k])
                   for k in ('p50_us', 'p90_us', 'p99_us')]
            cpr = m['cpu_us_per_req']
            lines.append('| %s | %s | %.0f (%.0f-%.0f) | %s | %s | %s | %.0f | %s | %s | %.0f | %.1f | %s | %s | %s | %.0f/%.0f | %.0f | %d |' % (
                t['id'], names[t['id']], m['rps'], min(rps), max(rps), fmt_us(m['p50_us']),
                fmt_us(m['p90_us']), fmt_us(m['p99_us']), m['proc_cpu_pct'],
                '%.1f' % cpr if cpr else '-', '%.0f' % (1e6 / cpr) if cpr else '-',
                m['user_pct_of_cpu'],
                m['rss_mb'], add[0], add[1], add[2], m['proxy_core_steal_pct'],
                m['loadgen_core_steal_pct'], m['loadgen_core_busy_pct'],
                sum(r['errors'] for r in rs)))
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--targets', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--duration', type=int, default=10)
    ap.add_argument('--modes', default='sat,paced')
    ap.add_argument('--conns', type=int, default=50)
    ap.add_argument('--paced-conns', type=int, default=16)
    ap.add_argument('--paced-delay-ms', type=int, default=16)
    ap.add_argument('--loadgen-cpu', type=int, default=0)
    ap.add_argument('--proxy-cpu', type=int, default=1)
    ap.add_argument('--wrk-script', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report.lua'))
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--steal-max', type=float, default=10.0,
                    help='a run during which the hypervisor stole more than this %% of either core is redone')
    ap.add_argument('--retries', type=int, default=2, help='redos per run at most; the lowest-steal try is kept')
    a = ap.parse_args()
    targets = json.load(open(a.targets))
    modes = a.modes.split(',')
    results = []
    for t in targets:  # warm-up: fill pools, JIT-free but caches and allocators settle
        subprocess.run(['taskset', '-c', str(a.loadgen_cpu), 'wrk', '-t1', '-c%d' % a.conns,
                        '-d%ds' % a.warmup] + t.get('extra_wrk_args', []) + [t['url']],
                       capture_output=True)
    for mode in modes:
        spin = start_spinners(os.cpu_count()) if mode == 'paced-spin' else []
        try:
            for rep in range(a.reps):
                for t in targets:
                    r = None
                    for attempt in range(a.retries + 1):
                        x = run_one(t, mode, a)
                        x['attempts'] = attempt + 1
                        x['steal_pct'] = max(x['proxy_core_steal_pct'], x['loadgen_core_steal_pct'])
                        if r is None or x['steal_pct'] < r['steal_pct']:
                            r = x
                        if x['steal_pct'] <= a.steal_max:
                            break
                        print('  (steal %.0f%% > %.0f%%: redo)' % (x['steal_pct'], a.steal_max), file=sys.stderr, flush=True)
                        time.sleep(2)
                    r['rep'] = rep
                    results.append(r)
                    print('%-10s %-4s rep%d  %8.0f req/s  p50 %-9s p99 %-9s cpu %5.1f%%  %6s us/req  rss %5.1f MB  steal %3.0f/%3.0f%%  err %d' % (
                        mode, t['id'], rep, r['rps'], fmt_us(r['p50_us']), fmt_us(r['p99_us']),
                        r['proc_cpu_pct'], '%.1f' % r['cpu_us_per_req'] if r['cpu_us_per_req'] else '-',
                        r['rss_mb'], r['proxy_core_steal_pct'], r['loadgen_core_steal_pct'], r['errors']),
                        file=sys.stderr, flush=True)
        finally:
            stop_spinners(spin)
    with open(a.out, 'w') as f:
        json.dump({'targets': targets, 'results': results, 'args': vars(a)}, f, indent=1)
    print(table(results, targets, modes))


if __name__ == '__main__':
    main()
