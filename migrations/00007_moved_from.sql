-- +goose Up
-- The resource a move took the reservation from ('' for every other change): a listener of
-- that resource hears the move too, found through the index as its own changes are through
-- reservation_changes_resource_seq (00002). The index in its own statement (TiDB, see 00003).
ALTER TABLE reservation_changes ADD COLUMN moved_from VARBINARY(64) NOT NULL DEFAULT '';
CREATE INDEX reservation_changes_moved_from_seq ON reservation_changes (moved_from, seq);

-- +goose Down
DROP INDEX reservation_changes_moved_from_seq ON reservation_changes;
ALTER TABLE reservation_changes DROP COLUMN moved_from;
