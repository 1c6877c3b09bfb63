-- +goose Up
-- A resource is created on its first reservation. Its row is what writers lock: every write of
-- a resource holds this row FOR UPDATE, so writers of one resource run one after another.
CREATE TABLE resources (
    id          VARBINARY(64) NOT NULL,
    version     BIGINT        NOT NULL DEFAULT 0, -- bumped by every write of the resource
    max_span_us BIGINT        NOT NULL DEFAULT 0, -- longest reservation ever stored: bounds the overlap scan
    created_at  DATETIME(6)   NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

-- Ids are compared as bytes (VARBINARY): "Room-1", "room-1" and "room-1 " are three resources.
CREATE TABLE reservations (
    id          CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, -- UUIDv7
    user_id     VARBINARY(64) NOT NULL,
    resource_id VARBINARY(64) NOT NULL,
    status      TINYINT       NOT NULL,
    start_at    DATETIME(6)   NOT NULL, -- UTC, inclusive
    end_at      DATETIME(6)   NOT NULL, -- UTC, exclusive
    note        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at  DATETIME(6)   NOT NULL,
    updated_at  DATETIME(6)   NOT NULL,
    version     BIGINT        NOT NULL,
    PRIMARY KEY (id),
    KEY reservations_resource_start (resource_id, start_at, id),
    KEY reservations_user_start (user_id, start_at, id),
    KEY reservations_start (start_at, id)
) ENGINE = InnoDB;

-- One row per committed write, inserted in the write's transaction. seq and committed_at are
-- stamped after commit by the change-feed sequencer, in commit order.
CREATE TABLE reservation_changes (
    id               BIGINT        NOT NULL AUTO_INCREMENT,
    seq              BIGINT UNSIGNED NULL,
    op               TINYINT       NOT NULL, -- 1 create, 2 update, 3 delete
    reservation_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    resource_id      VARBINARY(64) NOT NULL,
    resource_version BIGINT        NOT NULL,
    snapshot         BLOB          NOT NULL, -- the reservation as of the change, JSON
    created_at       DATETIME(6)   NOT NULL,
    committed_at     DATETIME(6)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY reservation_changes_seq (seq)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE reservation_changes;
DROP TABLE reservations;
DROP TABLE resources;
