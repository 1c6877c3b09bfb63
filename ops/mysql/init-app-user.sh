#!/bin/bash
# The mysql image runs this once, when it creates its data directory
# (/docker-entrypoint-initdb.d): the application's own user, with only what reservationd
# needs on its database. Data: SELECT, INSERT, UPDATE, DELETE. Its schema migrations (goose,
# at start: CREATE TABLE, CREATE INDEX, ALTER TABLE ... ADD COLUMN): CREATE, INDEX, ALTER. No
# DROP (only the migrations' Down sections drop, and an administrator runs those), no global
# privileges, no GRANT OPTION.
# TestAppUserGrants runs reservationd as a user with exactly the grants on the GRANT line.
set -euo pipefail
mysql --protocol=socket -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE USER IF NOT EXISTS 'reservation'@'%' IDENTIFIED BY '${RESERVATION_DB_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER ON reservation.* TO 'reservation'@'%';
SQL
