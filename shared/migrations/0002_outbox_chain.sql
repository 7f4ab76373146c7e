-- Tamper evidence (shared/chain.py): the hash of the last record the outbox relay published on
-- each partition of its topics; the next record links to it. Updated in the relay's transaction.
CREATE TABLE outbox_chain_heads (
    topic      text    NOT NULL,
    partition  integer NOT NULL,
    hash       text    NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- A record chained but then refused by the broker (parked after the send, see shared/outbox.py):
-- its link, so that `verify` can step over the gap it leaves (the parked outbox row explains it).
CREATE TABLE outbox_chain_skipped (
    topic      text    NOT NULL,
    partition  integer NOT NULL,
    prev       text    NOT NULL,
    hash       text    NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, hash)
);
