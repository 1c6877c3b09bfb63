-- +goose Up
-- The resource catalogue: what a resource is beside its lock row. A resource made by its first
-- reservation takes the defaults (capacity 1, no pool, UTC, enabled, catalogue version 1).
-- One plain ALTER per column, and the index in its own statement (TiDB, see 00003): every
-- engine the service runs on takes these the same way.
ALTER TABLE resources ADD COLUMN pool_id VARBINARY(64) NOT NULL DEFAULT '';
ALTER TABLE resources ADD COLUMN capacity INT NOT NULL DEFAULT 1;
ALTER TABLE resources ADD COLUMN time_zone VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'UTC';
ALTER TABLE resources ADD COLUMN display_name VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '';
-- JSON text of a string map; NULL for none. (A BLOB, not JSON: MariaDB's JSON is text with a
-- check, TiDB's a binary type; the service reads and writes it whole either way.)
ALTER TABLE resources ADD COLUMN labels BLOB NULL;
ALTER TABLE resources ADD COLUMN disabled TINYINT NOT NULL DEFAULT 0;
-- Bumped by every PutResource; version stays the write counter the change feed numbers by.
ALTER TABLE resources ADD COLUMN catalogue_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE resources ADD COLUMN updated_at DATETIME(6) NULL;
CREATE INDEX resources_pool ON resources (pool_id, id);

-- +goose Down
DROP INDEX resources_pool ON resources;
ALTER TABLE resources DROP COLUMN updated_at;
ALTER TABLE resources DROP COLUMN catalogue_version;
ALTER TABLE resources DROP COLUMN disabled;
ALTER TABLE resources DROP COLUMN labels;
ALTER TABLE resources DROP COLUMN display_name;
ALTER TABLE resources DROP COLUMN time_zone;
ALTER TABLE resources DROP COLUMN capacity;
ALTER TABLE resources DROP COLUMN pool_id;
