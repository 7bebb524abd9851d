"""Shard I/O: finding shards, reading damaged tars without losing samples, atomic deterministic writes."""

import json
import tarfile

import pytest

from runtime.curation.api import CurationError
from runtime.curation.records import Record
from runtime.curation.shards import (
    ShardWriter,
    Unreadable,
    expand_shards,
    member_keys,
    read_shard,
)
from tests.runtime.curation.conftest import meta, shard


def test_expand_directory_glob_brace_and_list(shards):
    every = expand_shards(shards)
    assert [p.rsplit("/", 1)[1] for p in every] == ["images-000.tar", "images-001.tar", "videos-000.tar"]
    assert expand_shards(f"{shards}/images-*.tar") == every[:2]
    assert expand_shards(f"{shards}/images-{{000..001}}.tar") == every[:2]
    assert expand_shards([every[2], every[0]]) == [every[2], every[0]]


def test_expand_refuses_nothing_missing_and_name_clashes(shards, tmp_path):
    with pytest.raises(CurationError, match="matches no .tar shards"):
        expand_shards(tmp_path)
    with pytest.raises(CurationError, match="2 shards do not exist"):
        expand_shards(f"{shards}/images-{{002..003}}.tar")
    (tmp_path / "images-000.tar").write_bytes((shards / "images-000.tar").read_bytes())
    with pytest.raises(CurationError, match="share the name 'images-000'"):
        expand_shards([shards / "images-000.tar", tmp_path / "images-000.tar"])


def test_corrupt_header_quarantines_the_member_and_keeps_later_samples(corrupt_shard):
    items = list(read_shard(str(corrupt_shard)))
    records = [i.key for i in items if isinstance(i, Record)]
    broken = {i.key: i.error for i in items if isinstance(i, Unreadable)}
    assert records == ["sharp0", "sharp3"]  # the sample after the damage is not lost
    assert "expected exactly one media member" in broken["sharp1"]  # its caption and metadata survived
    region = next(error for key, error in broken.items() if key.startswith("_bytes_"))
    assert "corrupt tar header" in region


@pytest.mark.parametrize("cut", ["inside a member", "at a member boundary"])
def test_truncated_tar_quarantines_the_tail(shards, tmp_path, cut):
    data = (shards / "images-000.tar").read_bytes()
    with tarfile.open(shards / "images-000.tar") as tar:
        member = next(m for m in tar.getmembers() if m.name == "blurred.jpg")
    end = member.offset_data + (member.size // 2 if cut == "inside a member" else 0)
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:end])
    items = list(read_shard(str(path)))
    assert [i.key for i in items if isinstance(i, Record)] == ["sharp0", "sharp1", "sharp2"]
    assert next(i.key for i in items if isinstance(i, Unreadable)) == "blurred"


def test_non_tar_shard_is_one_unreadable_item(tmp_path):
    path = tmp_path / "junk.tar"
    path.write_bytes(b"not a tar archive at all" * 50)
    (item,) = read_shard(str(path))
    assert isinstance(item, Unreadable) and item.members["bin"] == path.read_bytes()  # kept for inspection


def test_writer_is_atomic_and_deterministic(tmp_path, media):
    members = {"jpg": media["sharp0"], **meta("hello")}
    target = tmp_path / "out.tar"
    writer = ShardWriter(target)
    writer.write("a", members)
    assert not target.exists()  # only the temporary name exists until close
    writer.close()
    first = target.read_bytes()
    again = ShardWriter(tmp_path / "again.tar")
    again.write("a", members)
    again.close()
    assert (tmp_path / "again.tar").read_bytes() == first
    aborted = ShardWriter(tmp_path / "aborted.tar")
    aborted.write("a", members)
    aborted.abort()
    assert list(tmp_path.glob("aborted*")) == []
    ShardWriter(target).close()  # a rerun that writes nothing for this shard removes the old output
    assert not target.exists()


def test_record_members_round_trip(media):
    members = {
        "jpg": media["sharp0"],
        "txt": b"a red square",
        "json": json.dumps({"source": "web"}).encode(),
        "scores.json": json.dumps({"blur": {"value": 3.0}}).encode(),
        "defect.mask.png": b"\x89PNG fake",
        "t5.npy": b"embedding bytes",
    }
    record = Record.from_members("k", members, "s")
    assert record.captions["original"] == "a red square"
    assert record.masks == {"defect": b"\x89PNG fake"} and record.columns == {"t5.npy": b"embedding bytes"}
    again = Record.from_members("k", record.to_members(), "s")
    assert (again.metadata, again.captions, again.scores, again.masks, again.columns) == (
        record.metadata, record.captions, record.scores, record.masks, record.columns,
    )


def test_member_keys_reads_headers_in_order(tmp_path, media):
    path = shard(tmp_path / "k.tar", [(k, {"jpg": media["sharp0"], "txt": b"x"}) for k in ("b", "a", "c")])
    assert member_keys(path) == ["b", "a", "c"]
    with tarfile.open(path) as tar:
        assert len(tar.getmembers()) == 6
