"""The append-only JSON-lines log shared by searches and sweeps: torn lines never swallow later records."""

import json

from segprune._jsonlines import JsonLines


def test_appends_are_read_back_in_order(tmp_path):
    log = JsonLines(tmp_path / "log.jsonl")
    for index in range(3):
        log.append({"index": index})
    assert [record["index"] for record in log.read()] == [0, 1, 2]


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonLines(path)
    log.append({"index": 0})
    log.append({"index": 1})
    path.write_text(path.read_text()[:-6])  # a kill mid-write: the second record loses its end
    assert [record["index"] for record in log.read()] == [0]

    log.repair()
    log.append({"index": 2})
    assert [record["index"] for record in log.read()] == [0, 2]
    assert path.read_text().splitlines() == [json.dumps({"index": 0}), json.dumps({"index": 2})]


def test_a_record_glued_to_a_torn_line_by_an_older_writer_does_not_hide_later_ones(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"index": 0}\n{"index": 1, "dice": 0.9{"index": 2}\n{"index": 3}\n')
    log = JsonLines(path)
    assert [record["index"] for record in log.read()] == [0, 3]
    log.repair()
    log.append({"index": 4})
    assert [record["index"] for record in log.read()] == [0, 3, 4]


def test_repair_leaves_a_complete_file_untouched(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonLines(path)
    log.append({"index": 0})
    before = path.stat().st_mtime_ns, path.read_text()
    log.repair()
    assert (path.stat().st_mtime_ns, path.read_text()) == before
