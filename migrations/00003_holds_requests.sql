-- +goose Up
-- A hold lapses at expires_at unless confirmed; NULL for every other reservation. The reaper
-- finds lapsed holds through the index.
-- Two statements, not one ALTER: TiDB builds an index added in the same ALTER as its column
-- against the columns the table had before, and fails (1072).
ALTER TABLE reservations ADD COLUMN expires_at DATETIME(6) NULL;
CREATE INDEX reservations_expires ON reservations (expires_at);

-- The outcome of each Reserve call made with a request id, kept for retries.
CREATE TABLE reservation_requests (
    id          VARBINARY(64) NOT NULL,
    fingerprint BINARY(32)    NOT NULL, -- of the call's parameters: a retry must match it
    outcome     BLOB          NOT NULL, -- JSON: the reservations made, or the conflict
    created_at  DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    KEY reservation_requests_created (created_at)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE reservation_requests;
ALTER TABLE reservations DROP KEY reservations_expires, DROP COLUMN expires_at;
