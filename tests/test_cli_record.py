"""pydamon record / schemes / report / convert end to end, and their error lines."""

import os
import subprocess
import sys

import pytest

from pydamon.cli.main import _damon_error_line, main
from pydamon.errors import DamonError
from pydamon.records import read_records


def run_cli(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pydamon.cli.main", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_record_sim_default_output_in_cwd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--sim", "hotcold", "--timeout", "3s", "-q", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "recorded simulated workload 'hotcold' with ops sim" in out
    assert "3 s of virtual time passed" in out
    [rec] = read_records(tmp_path / "damon.data")
    assert 25 <= len(rec.snapshots) <= 30
    assert rec.intervals.aggr_us == 100_000
    assert rec.end_ns - rec.start_ns >= 2_500_000_000


@pytest.mark.parametrize("fmt", ["json", "perf_script"])
def test_record_formats_and_intervals(tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    assert main(["record", "--sim", "hotcold", "-s", "10ms", "-a", "200ms", "-n", "20",
                 "-m", "200", "--timeout", "4s", "-o", str(out), "-f", fmt, "-q"]) == 0
    [rec] = read_records(out)
    assert 17 <= len(rec.snapshots) <= 20
    assert all(20 <= s.nr_regions <= 200 for s in rec.snapshots[1:])
    assert max(int(s.nr_accesses.max()) for s in rec.snapshots) <= 20  # 200 ms / 10 ms


def test_record_with_scheme_prints_stats(tmp_path, capsys):
    out = tmp_path / "s.data"
    assert main(["record", "--sim", "hotcold", "--timeout", "5s", "-o", str(out), "-q",
                 "--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
                 "--damos_age", "1s", "max", "--damos_quotas", "0", "64M", "1s"]) == 0
    text = capsys.readouterr().out
    line = [t for t in text.splitlines() if t.startswith("scheme 0 (pageout)")][0]
    applied = int(line.split("applied to ")[1].split()[0])
    assert applied > 0


def test_schemes_command(capsys):
    assert main(["schemes", "--sim", "hotcold", "--timeout", "3s", "-q",
                 "--damos_action", "stat", "--damos_access_rate", "50%", "100%"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("applied 1 scheme(s) for")
    assert "scheme 0 (stat): tried" in out
    assert main(["schemes", "--sim", "hotcold", "--timeout", "1s", "-q"]) == 2
    assert "no scheme given" in capsys.readouterr().err


def test_reports_and_convert_from_cli(tmp_path, capsys):
    data = tmp_path / "damon.data"
    assert main(["record", "--sim", "hotcold", "--timeout", "3s", "-o", str(data), "-q",
                 "--seed", "7"]) == 0
    capsys.readouterr()
    assert main(["report", "access", "-i", str(data), "--sort_regions_by", "access_rate",
                 "--sort_reverse"]) == 0
    text = capsys.readouterr().out
    rates = [int(t.split("access")[1].split("%")[0]) for t in text.splitlines() if t[:1].isdigit()]
    assert rates == sorted(rates, reverse=True) and rates[0] >= 90  # the hot set comes first
    assert main(["report", "wss", "-i", str(data)]) == 0
    assert "# <percentile> <wss>" in capsys.readouterr().out
    assert main(["report", "nr_regions", "-i", str(data), "--time_series"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 20
    assert main(["report", "raw", "-i", str(data)]) == 0
    assert "nr_regions:" in capsys.readouterr().out
    assert main(["report", "heatmap", "-i", str(data), "--no_color", "--resol", "5", "30"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if not r.startswith("#")]
    assert len(rows) == 5 and any(set(r) - {"0"} for r in rows)
    png = tmp_path / "h.png"
    pytest.importorskip("matplotlib")
    assert main(["report", "heatmap", "-i", str(data), "--output", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert main(["report", "wss", "-i", str(data), "--plot", str(tmp_path / "w.png")]) == 0
    txt = tmp_path / "conv.txt"
    assert main(["convert", "-i", str(data), "-o", str(txt), "--format", "perf_script"]) == 0
    assert len(read_records(txt)[0].snapshots) == len(read_records(data)[0].snapshots)


@pytest.mark.parametrize("argv,status,needle", [
    (["report", "wss", "-i", "/nonexistent/damon.data"], 1, "does not exist"),
    (["record", "-q", "999999999"], 1, "process 999999999 does not exist"),
    (["record", "--sim", "nosuchworkload", "-q", "-o", "/tmp/x.data"], 1, "nosuchworkload"),
    (["record", "-s", "fast", "--sim", "hotcold"], 2, "not a time"),
    (["record", "-q"], 2, "nothing to monitor"),
    (["record", "--sim", "hotcold", "--timeout", "soon"], 2, "--timeout"),
    (["report", "access", "-i", "BAD", "--snapshot_idx", "3"], 1, None),
    (["record", "--sim", "hotcold", "--damos_action", "vanish"], 2, "unknown DAMOS action"),
    (["report"], 2, "name a report"),
])
def test_errors_are_one_clear_line(tmp_path, monkeypatch, capsys, argv, status, needle):
    monkeypatch.chdir(tmp_path)
    if "BAD" in argv:
        (tmp_path / "BAD").write_bytes(b"\x00\x01garbage" * 10)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if needle:
        assert needle in lines[0]


def test_no_traceback_from_the_console_script(tmp_path):
    res = run_cli("report", "access", "-i", str(tmp_path / "missing.data"))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_real_process_on_this_kernel_is_clear(tmp_path):
    """Recording a real command works with idle page tracking, else says why in one line."""
    res = run_cli("record", "-q", "--timeout", "2s", "-o", str(tmp_path / "r.data"), "--",
                  "sleep", "1", cwd=tmp_path)
    if os.path.exists("/sys/kernel/mm/page_idle/bitmap") and os.geteuid() == 0 \
            and res.returncode == 0:
        assert read_records(tmp_path / "r.data")
        return
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert ("IDLE_PAGE_TRACKING" in lines[0] or "not available" in lines[0]
            or "root" in lines[0]), lines


def test_damon_error_lines_name_the_fix():
    import errno

    line = _damon_error_line(DamonError(errno.EOPNOTSUPP, "vaddr needs CONFIG_IDLE_PAGE_TRACKING"))
    assert "--sim hotcold" in line and "CONFIG_IDLE_PAGE_TRACKING" in line
    assert "run as root" in _damon_error_line(DamonError(errno.EPERM, "cannot open pagemap"))
    assert "ps -p" in _damon_error_line(DamonError(errno.ESRCH, "no such process"))


def test_ctrl_c_stops_and_keeps_a_valid_record(tmp_path):
    import signal
    import time

    out = tmp_path / "i.data"
    proc = subprocess.Popen([sys.executable, "-m", "pydamon.cli.main", "record", "--sim",
                             "hotcold", "--real_time", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)  # a couple of seconds of real-time monitoring
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "stopped: interrupted (Ctrl-C or SIGTERM)" in stdout
    # progress lines (not a terminal: one every 2 s) name the counters
    assert "snapshots" in stderr and "working set" in stderr and "Traceback" not in stderr
    [rec] = read_records(out)
    assert len(rec.snapshots) >= 5


def test_progress_printer_line():
    import io

    from pydamon.cli.session import Progress, _ProgressPrinter

    p = Progress(nr_snapshots=12, nr_regions=34, wss_bytes=5 << 20)
    buf = io.StringIO()
    pr = _ProgressPrinter(p, buf, quiet=False)
    pr.last_print = 0.0
    pr.maybe_print(3.5)
    assert buf.getvalue().split() == ["elapsed", "3.500", "s", "snapshots", "12", "regions",
                                      "34", "working", "set", "5.000", "MiB"]
    pr.maybe_print(3.6)  # within the period: nothing more
    assert buf.getvalue().count("\n") == 1


def test_sigterm_finishes_the_record(tmp_path):
    import signal
    import time

    out = tmp_path / "t.txt"
    proc = subprocess.Popen([sys.executable, "-m", "pydamon.cli.main", "record", "--sim",
                             "hotcold", "--real_time", "-q", "-o", str(out), "-f", "perf_script"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stdout
    [rec] = read_records(out)
    assert len(rec.snapshots) >= 3
    # every snapshot is complete: as many lines as its nr_regions says
    assert all(s.nr_regions >= 10 for s in rec.snapshots)


def test_failed_start_leaves_existing_record_alone(tmp_path):
    data = tmp_path / "damon.data"
    data.write_bytes(b"precious")
    res = run_cli("record", "-q", "--", "true", cwd=tmp_path)
    if res.returncode == 0:
        pytest.skip("this machine can monitor real processes")
    assert data.read_bytes() == b"precious"
    res = run_cli("record", "-q", "--sim", "hotcold", "-o", str(tmp_path / "no/dir/x.data"))
    assert res.returncode == 1 and "does not exist" in res.stderr
