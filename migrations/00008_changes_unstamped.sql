-- +goose Up
-- The changes waiting for their seq, in id order: the sequencer reads the oldest of them
-- (seq IS NULL ORDER BY id LIMIT n) through this index in n entries. Through the unique key
-- on seq alone, MariaDB and MySQL read every waiting change and sort them, so each stamp of a
-- backlog cost as much as the whole backlog and draining it grew with its square. The unique
-- key stays: it is what keeps two seqs from ever being the same.
CREATE INDEX reservation_changes_unstamped ON reservation_changes (seq, id);

-- +goose Down
DROP INDEX reservation_changes_unstamped ON reservation_changes;
