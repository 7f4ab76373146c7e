"""The hash chain's walk (pure): links, edits, drops, inserts, resends, a record the relay chained
but the broker refused (stepped over only with the relay's record of it), a cut tail."""
from __future__ import annotations

from shared.chain import GENESIS, HASH, PREV, PartitionWalk, link


def chained(values: list[bytes], prev: str = GENESIS) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    out = []
    for v in values:
        h = link(prev, b"k", v)
        out.append((b"k", v, [(PREV, prev.encode()), (HASH, h.encode())]))
        prev = h
    return out


def walk(records, **kw) -> PartitionWalk:
    w = PartitionWalk("t", 0, 0, **kw)
    for offset, (k, v, h) in enumerate(records):
        w.feed(offset, k, v, h)
    return w


def test_an_intact_chain_and_a_resend():
    recs = chained([b"a", b"b", b"c"])
    w = walk(recs + recs[1:] + chained([b"d"], prev=link(link(link(GENESIS, b"k", b"a"), b"k", b"b"), b"k", b"c")))
    assert not w.problems and w.resends == 2 and w.records == 6


def test_edit_drop_insert_are_found_where_they_are():
    recs = chained([b"a", b"b", b"c", b"d"])
    edited = list(recs)
    edited[1] = (b"k", b"B", recs[1][2])
    assert [(p.offset, p.what.split(":")[0]) for p in walk(edited).problems] == [(1, "content changed")]
    assert [(p.offset, p.what.split(":")[0]) for p in walk(recs[:1] + recs[2:]).problems] == [(1, "chain broken")]
    assert [(p.offset, p.what.split(":")[0]) for p in walk(recs[:2] + [(b"k", b"x", [])] + recs[2:]).problems] == [
        (2, "record without a chain link")]


def test_a_link_that_is_not_text_is_reported_where_it_is_and_the_walk_goes_on():
    recs = chained([b"a", b"b", b"c"])
    garbled = list(recs)
    garbled[1] = (b"k", b"b", [(PREV, recs[1][2][0][1]), (HASH, b"\xff\xfe" + recs[1][2][1][1][2:])])
    w = walk(garbled)
    assert w.records == 3
    assert [(p.offset, p.what.split(":")[0]) for p in w.problems] == [(1, "content changed"), (2, "chain broken")]


def test_a_parked_record_is_stepped_over_only_with_the_relays_record_of_it():
    recs = chained([b"a", b"huge", b"c"])
    gap = recs[:1] + recs[2:]
    skipped = {link(GENESIS, b"k", b"a"): link(link(GENESIS, b"k", b"a"), b"k", b"huge")}
    w = walk(gap, skips=skipped)
    assert not w.problems and w.skipped == 1
    assert [p.what.split(":")[0] for p in walk(gap).problems] == ["chain broken"]
    # the parked record was the last one: the relay's head is its hash
    w = walk(recs[:1], skips=skipped)
    w.finish(link(link(GENESIS, b"k", b"a"), b"k", b"huge"))
    assert not w.problems and w.skipped == 1


def test_a_cut_tail_and_an_appended_record_against_the_expected_head():
    recs = chained([b"a", b"b", b"c"])
    w = walk(recs[:2])
    w.finish(link(link(link(GENESIS, b"k", b"a"), b"k", b"b"), b"k", b"c"))
    assert "is not in the log" in w.problems[0].what
    w = walk(recs)
    w.finish(link(link(GENESIS, b"k", b"a"), b"k", b"b"))
    assert "appended by something else" in w.problems[0].what


def test_the_relays_linker_gives_the_links_of_link_and_the_new_heads():
    """Linker.next (one sha256 call over the kept raw digest) against `link` for random records on
    several partitions, one of them continuing a stored head; the heads and a skipped link as saved."""
    import random

    from shared.chain import Linker

    rnd = random.Random(7)
    stored = link(GENESIS, b"old", b"value")
    linker = Linker({("t", 1): stored})
    expect = {("t", 0): GENESIS, ("t", 1): stored, ("u", 0): GENESIS}
    for seq in range(200):
        tp = rnd.choice(sorted(expect))
        key = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
        value = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 3000)))
        prev, h = linker.next(*tp, key, value, seq)
        assert (prev.decode(), h.decode()) == (expect[tp], link(expect[tp], key, value))
        linker_links = (expect[tp], h.decode())
        expect[tp] = h.decode()
    topics, partitions, hashes = linker.changed_heads()
    assert dict(zip(zip(topics, partitions), hashes)) == expect
    assert linker.skipped_links([199, 1000]) == [(*linker.by_seq[199][:2], *linker_links)]
    w = PartitionWalk("t", 0, 0)
    l2 = Linker({})
    for offset, v in enumerate([b"a", b"b"]):
        prev, h = l2.next("t", 0, b"k", v)
        w.feed(offset, b"k", v, [(PREV, prev), (HASH, h)])
    assert not w.problems and w.head == l2.changed_heads()[2][0]
