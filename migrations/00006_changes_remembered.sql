-- +goose Up
-- Booking rules of a resource, in microseconds; 0 is no rule. A reservation blocks its resource
-- from buffer_before before its start to buffer_after after its end.
ALTER TABLE resources ADD COLUMN buffer_before_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN buffer_after_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN min_duration_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN max_duration_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN min_notice_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN max_advance_us BIGINT NOT NULL DEFAULT 0;

-- The series a reservation was made in by ReserveSeries ('' for none); CancelSeries finds its
-- occurrences through the index.
ALTER TABLE reservations ADD COLUMN series_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '';
CREATE INDEX reservations_series ON reservations (series_id, start_at);

-- Who made each change and why, as the feed delivers them. Bytes, checked as UTF-8 by the
-- service (a VARBINARY takes a default on every engine; a TEXT does not on MySQL).
ALTER TABLE reservation_changes ADD COLUMN actor VARBINARY(64) NOT NULL DEFAULT '';
ALTER TABLE reservation_changes ADD COLUMN reason VARBINARY(4096) NOT NULL DEFAULT '';

-- The audit trail: every change of every reservation, inserted in the change's transaction and
-- kept for --history-retention, however short the feed's retention is.
CREATE TABLE reservation_history (
    id             BIGINT        NOT NULL AUTO_INCREMENT,
    reservation_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    op             TINYINT       NOT NULL, -- 1 create, 2 update, 3 delete
    snapshot       BLOB          NOT NULL, -- the reservation as of the change, JSON
    actor          VARBINARY(64) NOT NULL,
    reason         VARBINARY(4096) NOT NULL,
    created_at     DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    KEY reservation_history_reservation (reservation_id, id),
    KEY reservation_history_created (created_at)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE reservation_history;
ALTER TABLE reservation_changes DROP COLUMN reason;
ALTER TABLE reservation_changes DROP COLUMN actor;
DROP INDEX reservations_series ON reservations;
ALTER TABLE reservations DROP COLUMN series_id;
ALTER TABLE resources DROP COLUMN max_advance_us;
ALTER TABLE resources DROP COLUMN min_notice_us;
ALTER TABLE resources DROP COLUMN max_duration_us;
ALTER TABLE resources DROP COLUMN min_duration_us;
ALTER TABLE resources DROP COLUMN buffer_after_us;
ALTER TABLE resources DROP COLUMN buffer_before_us;
