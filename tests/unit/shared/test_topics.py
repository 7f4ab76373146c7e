"""Topic settings and the retention rule, without a broker."""
from shared.topics import TopicSettings, finite_retention


def test_a_log_topic_keeps_everything_or_is_named_finite():
    assert finite_retention({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}) is None
    assert finite_retention({"retention.ms": "604800000", "retention.bytes": "-1"}) == "retention.ms=604800000"
    assert finite_retention({"retention.ms": "-1", "retention.bytes": "1073741824"}) == "retention.bytes=1073741824"
    assert finite_retention({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact"}) == \
        "cleanup.policy=compact"


def test_replication_and_creation_come_from_the_environment(monkeypatch):
    local = TopicSettings()
    assert (local.create, local.replication_factor, local.min_insync_replicas) == (True, 1, 1)
    monkeypatch.setenv("FENXIAO_CREATE_TOPICS", "false")
    monkeypatch.setenv("FENXIAO_TOPIC_REPLICATION", "3")
    monkeypatch.setenv("FENXIAO_TOPIC_MIN_INSYNC_REPLICAS", "2")
    prod = TopicSettings()
    assert (prod.create, prod.replication_factor, prod.min_insync_replicas) == (False, 3, 2)
    assert prod.topic_configs() == {"retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "2"}
