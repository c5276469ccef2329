"""Eval files from anywhere: Parquet, delimited text whose delimiter is detected or given, and clear refusals."""

import json
import shutil

import pandas as pd
import pytest

from bench.config import ConfigError, EvalConfig
from bench.quality.datasets import load_eval
from tests.conftest import run_bench

TEXTS = [f"item {i}, with a comma; a semicolon and a \"quote" for i in range(40)]
LABELS = ["pos" if i % 2 else "neg" for i in range(40)]


def _cfg(path, **kw) -> EvalConfig:
    return EvalConfig(name="text-classification", path=str(path), **kw)


def test_parquet_reads_the_named_columns_and_keys_the_same_content_as_a_csv(tmp_path):
    frame = pd.DataFrame({"id": range(40), "text": TEXTS, "label": [i % 2 for i in range(40)]})
    frame.to_parquet(tmp_path / "dev.parquet")
    frame.to_csv(tmp_path / "dev.csv", index=False)
    data = load_eval(_cfg(tmp_path / "dev.parquet"))
    assert data.file_format == "parquet" and data.label_names == ["0", "1"]
    assert sorted(data.train_texts + data.test_texts) == sorted(TEXTS)
    as_csv = load_eval(_cfg(tmp_path / "dev.csv"))
    assert as_csv.file_format == "csv (delimiter comma, detected)"
    assert as_csv.digest() == data.digest()  # caches follow the content, not the format
    # A hub's download may have no extension: its magic bytes say Parquet.
    shutil.copy(tmp_path / "dev.parquet", tmp_path / "validation-00000-of-00001")
    assert load_eval(_cfg(tmp_path / "validation-00000-of-00001")).digest() == data.digest()


def test_a_tab_separated_file_named_csv_is_detected(tmp_path):
    # STS Benchmark ships this way: tabs, texts with commas and stray quotes, read unquoted.
    path = tmp_path / "sts-dev.csv"
    path.write_text("s1\ts2\tscore\n" + "".join(f"a \"b , c {i}\tb , c\t{i % 5}.0\n" for i in range(30)))
    data = load_eval(EvalConfig(name="sts", kind="sts", path=str(path), text_column="s1", text_pair_column="s2",
                                label_column="score"))
    assert data.file_format == "csv (delimiter tab, detected)"
    assert data.test_texts[3] == 'a "b , c 3' and data.test_pairs[3] == "b , c" and data.test_labels[3] == 3.0


def test_a_semicolon_csv_is_detected(tmp_path):
    path = tmp_path / "excel-export.csv"
    path.write_text("text;label\n" + "".join(f"item {i}, unquoted;{LABELS[i]}\n" for i in range(40)))
    data = load_eval(_cfg(path))
    assert data.file_format == "csv (delimiter semicolon, detected)"
    assert all(t.endswith(", unquoted") for t in data.train_texts + data.test_texts)


def test_quoted_commas_in_a_comma_csv_stay_in_the_text(tmp_path):
    path = tmp_path / "quoted.csv"
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_csv(path, index=False)  # quotes the texts: they hold commas
    data = load_eval(_cfg(path))
    assert data.file_format == "csv (delimiter comma, detected)"
    assert sorted(data.train_texts + data.test_texts) == sorted(TEXTS)


def test_a_spreadsheets_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text,label\n" + "".join(f"item {i},{LABELS[i]}\n" for i in range(40)), encoding="utf-8-sig")
    assert len(load_eval(_cfg(path)).test_texts) == 12


def test_when_the_sniffers_choice_lacks_the_named_columns_the_first_lines_delimiter_is_tried(tmp_path):
    # STS Benchmark's layout: headerless, tab-separated, some rows with two extra fields; every text holds two
    # commas, so csv.Sniffer picks the comma (the one consistent count). Only the tab gives column 6.
    path = tmp_path / "sts-train.csv"
    path.write_text("".join(f"main-news\tMSRvid\t2012\t{i:04d}\t{i % 5}.000\tA man, {i}, plays.\tA man plays."
                            + ("\tsource\tlicense" if i % 3 == 0 else "") + "\n" for i in range(30)))
    data = load_eval(EvalConfig(name="sts", kind="sts", path=str(path), header=False, text_column="5",
                                text_pair_column="6", label_column="4"))
    assert data.file_format == "csv (delimiter tab, detected)"
    assert data.test_texts[7] == "A man, 7, plays." and data.test_labels.tolist()[:3] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("given", ["|", "pipe", "PIPE"])
def test_eval_delimiter_overrides_detection(tmp_path, given):
    path = tmp_path / "data.csv"
    path.write_text("text|label\n" + "".join(f"a,b,{i}|{LABELS[i]}\n" for i in range(40)))
    data = load_eval(_cfg(path, delimiter=given))
    assert data.file_format == "csv (delimiter pipe, given)" and "a,b,0" in data.train_texts + data.test_texts


@pytest.mark.parametrize("given", ["\t", "\\t", "tab", "TAB"])
def test_a_tab_is_given_as_yaml_writes_it_as_the_command_line_writes_it_or_by_name(tmp_path, given):
    path = tmp_path / "data.txt"
    path.write_text("text\tlabel\n" + "".join(f"a;b;{i}\t{LABELS[i]}\n" for i in range(40)))
    assert load_eval(_cfg(path, delimiter=given)).file_format == "csv (delimiter tab, given)"


def test_a_tsv_extension_means_tab_and_jsonl_and_json_arrays_are_read(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"x,{i}\t{LABELS[i]}\n" for i in range(40)))
    assert load_eval(_cfg(tsv)).file_format == "csv (delimiter tab, from the .tsv extension)"
    records = [{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.ndjson").write_text("\n".join(json.dumps(r) for r in records))
    assert load_eval(_cfg(tmp_path / "d.json")).file_format == "json"
    assert load_eval(_cfg(tmp_path / "d.ndjson")).file_format == "jsonl"


def test_sst2_dev_from_the_shared_data_is_read_under_a_csv_name(sst2_dev, tmp_path):
    copy = tmp_path / "sst2_dev.csv"
    shutil.copy(sst2_dev, copy)
    cfg = EvalConfig(name="sst2", path=str(copy), text_column="sentence", label_column="label")
    data = load_eval(cfg)
    assert data.file_format == "csv (delimiter tab, detected)"
    assert len(data.train_texts) + len(data.test_texts) == 872 and data.label_names == ["0", "1"]
    direct = load_eval(EvalConfig(name="sst2", path=str(sst2_dev), text_column="sentence", label_column="label"))
    assert direct.digest() == data.digest()


@pytest.mark.parametrize("given", ["", ";;", "\\n", "\n", '"', "tabs"])
def test_a_delimiter_that_is_not_one_character_is_refused(tmp_path, given):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b\n")
    with pytest.raises(ConfigError) as refused:
        load_eval(_cfg(path, delimiter=given))
    assert f"eval.delimiter={given!r} is not valid" in str(refused.value)
    assert "one character" in str(refused.value) and "comma, tab, semicolon, pipe" in str(refused.value)


def test_a_delimiter_is_refused_where_no_delimited_file_is_read(tmp_path):
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(ConfigError, match="eval.delimiter=';' applies to delimited text.*is parquet"):
        load_eval(_cfg(tmp_path / "d.parquet", delimiter=";"))
    with pytest.raises(ConfigError, match="eval.delimiter=';' applies to a delimited eval.path; eval=bbc-topics"):
        load_eval(EvalConfig(delimiter=";"))


def test_columns_under_no_delimiter_are_refused_with_what_was_tried(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence;score,0-5\n" + "".join(f"a b;{i}\n" for i in range(20)))
    with pytest.raises(ConfigError) as refused:
        load_eval(_cfg(path))
    message = str(refused.value)
    assert "read as csv (delimiter semicolon, detected), has no column(s) 'text', 'label'" in message
    assert "its columns are: 'sentence', 'score,0-5'; also tried delimiter comma: none gives those" in message
    with pytest.raises(ConfigError, match=r"read as csv \(delimiter comma, given\), has no column\(s\) 'text', "
                                          r"'label'; its columns are: 'sentence;score', '0-5'\. .*eval.delimiter="):
        load_eval(_cfg(path, delimiter=","))


def test_a_binary_file_a_broken_parquet_and_other_encodings_are_refused(tmp_path):
    binary = tmp_path / "model.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="'.*model.csv' is not UTF-8 text: it holds NUL bytes.*not Parquet"):
        load_eval(_cfg(binary))
    frame = pd.DataFrame({"text": TEXTS, "label": LABELS})
    frame.to_parquet(tmp_path / "whole.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "whole.parquet").read_bytes()[:300])
    (tmp_path / "page.parquet").write_text("<!DOCTYPE html><title>404</title>")  # a failed download
    for name in ("cut.parquet", "page.parquet"):
        with pytest.raises(ConfigError, match=f"'.*{name}' is not a readable Parquet file"):
            load_eval(_cfg(tmp_path / name))
    frame.rename(columns={"label": "y"}).to_parquet(tmp_path / "y.parquet")
    with pytest.raises(ConfigError, match=r"read as parquet, has no column\(s\) 'label'; its columns are: 'text', "):
        load_eval(_cfg(tmp_path / "y.parquet"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(invalid continuation byte at byte 14\)"):
        load_eval(_cfg(latin))


def test_short_rows_and_bad_json_lines_are_named(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("text,label\na,x\nb\nc,y\n")
    with pytest.raises(ConfigError, match=r"read as csv \(delimiter comma, detected\): data row 2 has no value for "
                                          "'label'"):
        load_eval(_cfg(short))
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": }\n')
    with pytest.raises(ConfigError, match="read as jsonl, is not valid JSON at line 3"):
        load_eval(_cfg(lines))


@pytest.mark.slow
def test_the_cli_refuses_a_bad_delimiter_before_any_work(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b\n")
    result = run_bench("eval=text-classification", f"eval.path={path}", "eval.delimiter=semi", "profile=quick",
                       f"hydra.run.dir={tmp_path}/run")
    message = result.stderr + result.stdout
    assert result.returncode != 0 and "eval.delimiter='semi' is not valid" in message, message
    assert not list(tmp_path.rglob("*.parquet"))
