-- +goose Up
-- The pool of a reservation's resource when it was booked ('' for none).
ALTER TABLE reservations ADD COLUMN pool_id VARBINARY(64) NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE reservations DROP COLUMN pool_id;
