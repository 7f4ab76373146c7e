-- Plumbing tables created in every service schema before the service's own migrations.

-- Where each projection has got to in each partition: the truth (Kafka's commit is a hint).
CREATE TABLE projector_offsets (
    projection  text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- Event ids a projection has applied: the same event published twice (an outbox relay
-- resending after a crash) is applied once.
CREATE TABLE projector_applied (
    projection text NOT NULL,
    event_id   uuid NOT NULL,
    PRIMARY KEY (projection, event_id)
);

-- Events caused by a transaction, written in that transaction, published after it.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid   NOT NULL UNIQUE,
    topic        text   NOT NULL,
    key          text   NOT NULL,
    value        bytea  NOT NULL,
    headers      jsonb  NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
