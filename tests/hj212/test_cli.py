"""`plume hj212 decode|encode` as an integrator uses them (typer's runner on hj212_app, and the module as a process)."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from gateway.hj212.cli import hj212_app
from gateway.hj212.codec import DATA_MAX, decode

from .vectors import V1062, V2011

runner = CliRunner()


def test_decode_prints_header_fields_and_cp_items_of_the_2011_vector() -> None:
    r = runner.invoke(hj212_app, ["decode", V2011.decode().strip()])
    assert r.exit_code == 0, r.output
    out = r.stdout
    for words in ("239", "E541 ok", "construction-site dust", "real-time data", "690000D5800028F889221AC0",
                  "version 1 (HJ 212-2017), no answer wanted", "DataTime=20180821142509", "2018-08-21 14:25:09"):
        assert words in out
    assert "123456" not in out  # the password is starred unless asked for
    row = next(line for line in out.splitlines() if line.strip().startswith("a34002"))
    assert row.split()[1:] == ["PM10", "0.0"]


def test_decode_show_pw_and_json_output_reencodes_to_the_same_packet() -> None:
    r = runner.invoke(hj212_app, ["decode", "--show-pw", V1062.decode()])
    assert "100000" in r.stdout and "set real-time data interval" in r.stdout
    r = runner.invoke(hj212_app, ["decode", "--json", V1062.decode()])
    d = json.loads(r.stdout)
    assert d["cp"] == [{"RtdInterval": "30"}] and d["flag"] == 5
    back = runner.invoke(hj212_app, ["encode"], input=r.stdout)
    assert back.exit_code == 0 and back.stdout_bytes == V1062


def test_decode_bad_packet_is_one_line_naming_the_fault_and_exit_1() -> None:
    r = runner.invoke(hj212_app, ["decode", V1062.decode().strip().replace("1C80", "1C08")])
    assert r.exit_code == 1
    assert r.stderr.strip() == "bad packet (crc): CRC is 1C08, the data segment gives 1C80"
    assert r.stdout == ""


def test_decode_reads_one_packet_per_line_of_stdin_and_numbers_the_bad_ones() -> None:
    missing_pw = V2011.replace(b"PW=123456;", b"PW=;")
    stdin = V1062 + b"\n" + missing_pw.rstrip(b"\r\n") + b"\n\n" + V2011.rstrip(b"\r\n") + b"\n"
    r = runner.invoke(hj212_app, ["decode"], input=stdin)
    assert r.exit_code == 1
    assert "packet 1" in r.stdout and "packet 3" in r.stdout and "packet 2" not in r.stdout
    assert r.stderr.strip().startswith("packet 2: bad packet (length)")  # the first fault found


def test_decode_without_any_packet_says_so() -> None:
    r = runner.invoke(hj212_app, ["decode"], input=b"")
    assert r.exit_code == 1 and "no packet given" in r.stderr


def test_encode_builds_the_1062_vector_byte_for_byte_from_json() -> None:
    src = {"qn": "20160801085857223", "st": 32, "cn": 1062, "pw": "100000", "mn": "010000A8900016F000169DC0",
           "version": 2017, "answer": True, "cp": {"RtdInterval": 30}}
    r = runner.invoke(hj212_app, ["encode", "--json", json.dumps(src)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == V1062


def test_encode_groups_a_flat_cp_by_code_and_writes_numbers_without_exponents() -> None:
    src = {"st": 31, "cn": 2011, "pw": "AbC123", "mn": "MN1", "flag": 5,
           "cp": {"DataTime": "20240101120000", "a21026-Rtd": 12.5, "a21026-ZsRtd": 1e-7, "a21026-Flag": "N",
                  "a19001-Rtd": "8.1"}}
    r = runner.invoke(hj212_app, ["encode"], input=json.dumps(src))
    assert r.exit_code == 0, r.stderr
    p = decode(r.stdout_bytes)
    assert p.cp.text() == "&&DataTime=20240101120000;a21026-Rtd=12.5,a21026-ZsRtd=0.0000001,a21026-Flag=N;" \
                          "a19001-Rtd=8.1&&"
    assert len(p.qn) == 17  # filled in with the current time


def long_cp(n: int) -> dict[str, object]:
    cp: dict[str, object] = {"DataTime": "20240101120000"}
    for i in range(n):
        cp[f"a{i:05d}-Rtd"] = f"{i}.123"
        cp[f"a{i:05d}-Flag"] = "N"
    return {"st": 31, "cn": 2011, "pw": "AbC123", "mn": "MN1", "flag": 5, "cp": cp}


def test_encode_too_long_says_use_split_and_split_gives_decodable_parts() -> None:
    src = json.dumps(long_cp(80))
    r = runner.invoke(hj212_app, ["encode", "--json", src])
    assert r.exit_code == 1 and "use --split" in r.stderr and "oversize" in r.stderr
    r = runner.invoke(hj212_app, ["encode", "--split", "--json", src])
    assert r.exit_code == 0
    lines = r.stdout_bytes.split(b"\r\n")[:-1]
    assert len(lines) >= 3
    parts = [decode(ln + b"\r\n") for ln in lines]
    assert [(p.pnum, p.pno) for p in parts] == [(len(lines), i) for i in range(1, len(lines) + 1)]
    assert all(len(p.data().encode()) <= DATA_MAX for p in parts)


def test_encode_bad_input_names_the_key() -> None:
    cases = {
        "{not json": "bad JSON",
        json.dumps({"st": 39, "cn": 2011, "pw": "x"}): "missing key 'mn'",
        json.dumps({"st": 39, "cn": 2011, "pw": "x", "mn": "M", "colour": 1}): "unknown key 'colour'",
        json.dumps({"st": 39, "cn": 2011, "pw": "x", "mn": "M", "cp": {"a-Rtd": None}}): "cp.a-Rtd",
        json.dumps({"st": 39, "cn": 2011, "pw": "x;y", "mn": "M"}): "PW: 3 characters that are not",
        json.dumps({"st": 39, "cn": 2011, "pw": "x", "mn": "M", "version": 2099}): "version: 2099",
    }
    for src, words in cases.items():
        r = runner.invoke(hj212_app, ["encode", "--json", src])
        assert r.exit_code == 1, src
        assert words in r.stderr, (src, r.stderr)
        assert "Traceback" not in r.output


def test_module_runs_as_a_script_and_pipes_encode_into_decode() -> None:
    src = json.dumps({"qn": "20240101120000000", "st": 39, "cn": 2011, "pw": "AbC123", "mn": "MN1",
                      "cp": {"DataTime": "20240101120000", "a34002-Rtd": "45.0"}})
    enc = subprocess.run([sys.executable, "-m", "gateway.hj212.cli", "encode", "--json", src],
                         capture_output=True, check=True)
    dec = subprocess.run([sys.executable, "-m", "gateway.hj212.cli", "decode"], input=enc.stdout,
                         capture_output=True, check=True)
    assert b"PM10" in dec.stdout and b"45.0" in dec.stdout
