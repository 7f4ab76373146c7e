CREATE TABLE tally_seen (event_id uuid NOT NULL, counter text NOT NULL, amount bigint NOT NULL);
CREATE TABLE tally_totals (id int PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
