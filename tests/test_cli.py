import json
import subprocess
import sys

import pytest

from truecount.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_capacity_of_the_kss_case(capsys, kss_path):
    code, out, err = run(capsys, "capacity", str(kss_path))
    assert code == 0 and err == ""
    assert "kss_phones" in out and "09:00-20:00" in out
    assert "3,960" in out  # 6 lines x 11 h x 5 days x 12 calls an hour
    assert "final_49000" in out and "61.9" in out  # days at 66 line-hours a day
    assert "Handle time 5 min" in out


def test_capacity_json_round_the_clock_reproduces_the_article(capsys, kss_path):
    code, out, _ = run(capsys, "capacity", str(kss_path), "--reading", "round_the_clock",
                       "--reading", "open_from_announcement", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["readings"] == ["round_the_clock", "open_from_announcement"]
    (channel,) = result["channels"]
    assert channel["line_hours"] == 6 * 24 * 7
    final = next(c for c in result["claims"] if c["id"] == "final_49000")
    assert final["days_needed"] == pytest.approx(28.356, abs=1e-3)  # "at least twenty-eight days"
    assert final["possible"] is False


def test_capacity_options_override_the_case(capsys, kss_path):
    code, out, _ = run(capsys, "capacity", str(kss_path), "--lines", "60", "--hours-per-day",
                       "24", "--days", "7", "--handle-time", "2", "--json")
    assert code == 0
    (channel,) = json.loads(out)["channels"]
    assert (channel["servers"], channel["hours"], channel["days"]) == (60, "00:00-24:00", 7)
    assert channel["max_registrations"] == pytest.approx(60 * 24 * 7 * 30)


def test_capacity_from_options_alone(capsys):
    code, out, _ = run(capsys, "capacity", "--lines", "6", "--hours-per-day", "24", "--days",
                       "7", "--handle-time", "5", "--claim", "49000", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["source"] == "options"
    (claim,) = result["claims"]
    assert claim["days_needed"] == pytest.approx(28.356, abs=1e-3)
    assert claim["handle_time_needed"] == pytest.approx(1.2343, abs=1e-4)


@pytest.mark.parametrize(("args", "words"), [
    (["capacity", "--lines", "6"], "--hours-per-day: found nothing"),
    (["capacity", "nowhere.toml"], "nowhere.toml: found no such file"),
    (["capacity", "KSS", "--reading", "weekends"], "--reading: found 'weekends'"),
    (["capacity", "KSS", "--claim", "5"], "--claim: found 5"),
])
def test_input_errors_are_one_line_and_exit_2(capsys, kss_path, args, words):
    args = [str(kss_path) if a == "KSS" else a for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("truecount: error: ")
    assert words in err


def test_bad_option_values_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["capacity", "--lines", "-3"])
    assert info.value.code == 2
    assert "expected a positive int" in capsys.readouterr().err


def test_entry_point_end_to_end(tmp_path, kss_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(kss_path.read_text(encoding="utf-8").replace("servers = 6", "servers = 0"),
                   encoding="utf-8")
    ok = subprocess.run([sys.executable, "-m", "truecount.cli", "capacity", str(kss_path)],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "kss_phones" in ok.stdout
    failed = subprocess.run([sys.executable, "-m", "truecount.cli", "capacity", str(bad)],
                            capture_output=True, text=True, check=False)
    assert failed.returncode == 2
    assert failed.stderr == (f"truecount: error: {bad}: channels[0].servers: found 0; expected an "
                             "integer >= 1\n")
    assert "Traceback" not in failed.stderr


def test_help_lists_capacity(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "capacity" in capsys.readouterr().out
