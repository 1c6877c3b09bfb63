-- +goose Up
-- A listener of one resource replays its changes through this index instead of scanning the feed.
CREATE INDEX reservation_changes_resource_seq ON reservation_changes (resource_id, seq);

-- +goose Down
DROP INDEX reservation_changes_resource_seq ON reservation_changes;
