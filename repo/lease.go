package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// A lease is a named row of reservation_leases that one holder owns until it expires. It
// replaces MySQL's named locks (GET_LOCK), which are per node on Galera, need one connection
// kept open (which Vitess's pooled connections do not give) and were named through MD5, which
// MySQL 9.6 removed. Expiry is the database's own clock (UTC_TIMESTAMP), so the replicas'
// clocks never matter, and every takeover bumps the row's token, which fences the old holder:
// a write made under the lease checks holder and token in its own transaction (fence).
type lease struct {
	db     *sqlx.DB
	name   string
	holder string
	ttl    time.Duration
	token  int64
}

// leasesTable is created before migrations run, since the migration lease lives in it.
const leasesTable = `CREATE TABLE IF NOT EXISTS reservation_leases (
    name       VARBINARY(64) NOT NULL,
    holder     VARBINARY(128) NOT NULL,
    token      BIGINT        NOT NULL,
    expires_at DATETIME(6)   NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB`

func newLease(db *sqlx.DB, name string, ttl time.Duration) *lease {
	return &lease{db: db, name: name, holder: holderID(), ttl: ttl}
}

// holderID names this process and lease uniquely: host, pid and 8 random bytes.
func holderID() string {
	host, _ := os.Hostname()
	if len(host) > 64 {
		host = host[:64]
	}
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ensureLeaseRow creates the table and the lease's row when they do not exist yet.
func ensureLeaseRow(ctx context.Context, db *sqlx.DB, name string) error {
	if _, err := db.ExecContext(ctx, leasesTable); err != nil {
		return fmt.Errorf("create reservation_leases: %w", err)
	}
	return retryTransient(ctx, func() error {
		_, err := db.ExecContext(ctx, "INSERT IGNORE INTO reservation_leases (name, holder, token, expires_at) VALUES (?, '', 0, '2000-01-01 00:00:00')", name)
		if err != nil {
			return fmt.Errorf("create lease %q: %w", name, err)
		}
		return nil
	})
}

// acquire takes the lease if it is free or already ours, extending it by ttl, and reports
// whether this holder has it now.
func (l *lease) acquire(ctx context.Context) (bool, error) {
	var held bool
	err := retryTransient(ctx, func() error {
		var err error
		held, err = l.tryAcquire(ctx)
		return err
	})
	return held, err
}

func (l *lease) tryAcquire(ctx context.Context) (bool, error) {
	tx, err := l.db.BeginTxx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("lease %q: begin: %w", l.name, err)
	}
	defer tx.Rollback()
	// Assignments run left to right: the token is bumped before holder changes.
	_, err = tx.ExecContext(ctx, `UPDATE reservation_leases
		SET token = CASE WHEN holder = ? THEN token ELSE token + 1 END,
		    holder = ?,
		    expires_at = DATE_ADD(UTC_TIMESTAMP(6), INTERVAL ? MICROSECOND)
		WHERE name = ? AND (holder = ? OR expires_at < UTC_TIMESTAMP(6))`,
		l.holder, l.holder, l.ttl.Microseconds(), l.name, l.holder)
	if err != nil {
		return false, fmt.Errorf("lease %q: take: %w", l.name, err)
	}
	var row struct {
		Holder string `db:"holder"`
		Token  int64  `db:"token"`
	}
	if err := tx.GetContext(ctx, &row, "SELECT holder, token FROM reservation_leases WHERE name = ?", l.name); err != nil {
		if isNoRows(err) {
			return false, fmt.Errorf("lease %q: no row: %w", l.name, err)
		}
		return false, fmt.Errorf("lease %q: read: %w", l.name, err)
	}
	if row.Holder != l.holder {
		return false, nil
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("lease %q: commit: %w", l.name, err)
	}
	l.token = row.Token
	return true, nil
}

// errLeaseLost says a lease's holder found it taken over or expired.
var errLeaseLost = errors.New("lease lost")

// fence extends the lease inside tx, and fails with errLeaseLost unless this holder still
// has it: the rest of tx then commits only under the lease. The row stays locked until tx
// ends, so no takeover can come between the check and the commit; on Galera a takeover
// through another node fails certification against it, or makes tx fail.
func (l *lease) fence(ctx context.Context, tx *sqlx.Tx) error {
	res, err := tx.ExecContext(ctx, `UPDATE reservation_leases
		SET expires_at = DATE_ADD(UTC_TIMESTAMP(6), INTERVAL ? MICROSECOND)
		WHERE name = ? AND holder = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)`,
		l.ttl.Microseconds(), l.name, l.holder, l.token)
	if err != nil {
		return fmt.Errorf("lease %q: fence: %w", l.name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("lease %q (token %d): %w", l.name, l.token, errLeaseLost)
	}
	return nil
}

// renew extends the lease in a transaction of its own.
func (l *lease) renew(ctx context.Context) error {
	return retryTransient(ctx, func() error {
		tx, err := l.db.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("lease %q: begin: %w", l.name, err)
		}
		defer tx.Rollback()
		if err := l.fence(ctx, tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// release lets the lease expire now, if this holder still has it. The holder stays written,
// so the next taker bumps the token.
func (l *lease) release(ctx context.Context) error {
	_, err := l.db.ExecContext(ctx, `UPDATE reservation_leases SET expires_at = '2000-01-01 00:00:00'
		WHERE name = ? AND holder = ? AND token = ?`, l.name, l.holder, l.token)
	if err != nil {
		return fmt.Errorf("lease %q: release: %w", l.name, err)
	}
	return nil
}

// retryTransient runs fn again, a few times with a short pause, while it fails with an error
// that a second try may not meet: a deadlock, a lock wait timeout, a Galera certification
// failure, TiDB's write conflicts.
func retryTransient(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt == 4 {
			return err
		}
		t := time.NewTimer(time.Duration(5<<attempt) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// isUnknownTable reports MySQL's "Table doesn't exist".
func isUnknownTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errNoSuchTable
}

const errNoSuchTable = 1146
