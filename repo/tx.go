package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/attribute"

	"reservation"
	"reservation/telemetry"
)

// MySQL error numbers the store handles.
const (
	errDupKey       = 1062 // a concurrent first writer created the same resource row
	errLockWait     = 1205 // innodb_lock_wait_timeout passed
	errDeadlock     = 1213 // also Galera's certification failure
	errTiDBUnknown  = 1105 // TiDB: "pessimistic lock retry limit reached", among others
	errTiDBConflict = 8002 // TiDB: SELECT ... FOR UPDATE met a write conflict
	errTiDBRetry    = 8022 // TiDB: the transaction's retry failed
	errTiDBSchema   = 8028 // TiDB: the schema changed under the transaction
	errTiDBWrite    = 9007 // TiDB: write conflict
	errQueryTimeout = 3024 // MySQL: max_execution_time passed
	errTooManyConns = 1040 // ER_CON_COUNT_ERROR: the server's max_connections are in use
	errUserConns    = 1203 // ER_TOO_MANY_USER_CONNECTIONS: max_user_connections are in use
	errUserLimit    = 1226 // ER_USER_LIMIT_REACHED: the account's MAX_USER_CONNECTIONS (among others)
	// Galera: "WSREP has not yet prepared node for application use", a node that is joining,
	// catching up or cut off from the cluster's primary component. (MySQL's "unknown command"
	// otherwise, which the driver never sends.)
	errWsrepNotReady = 1047
	// Group Replication, multi-primary: a transaction that lost the group's certification to
	// one committed first on another member is rolled back at COMMIT (3101,
	// ER_TRANSACTION_ROLLBACK_DURING_COMMIT, "Plugin instructed the server to rollback the
	// current transaction"); one whose rows a transaction of another member needed while it
	// was applied here was aborted, and its next statement or COMMIT says so (1180,
	// ER_ERROR_DURING_COMMIT, "Got error 149 - 'Lock deadlock; Retry transaction' during
	// COMMIT"). Neither wrote anything: both are retried like a deadlock. (Seen in
	// chaos.TestGroupReplicationMultiPrimary.)
	errGRRollback    = 3101
	errErrorOnCommit = 1180
)

// write runs fn in a transaction whose resources rows keys (sorted) are locked (a writeTx),
// while holding the Locker's locks on them, and passes what it changed to Taken once
// committed. When the Locker is unreachable the write goes ahead: the transaction is the guard.
func (s *Store) write(ctx context.Context, keys []string, fn func(*writeTx) error) error {
	release, err := s.lock(ctx, keys)
	if err != nil {
		return err
	}
	defer release()
	changes, err := s.inWriteTx(ctx, keys, fn)
	if err != nil {
		return err
	}
	s.committed()
	s.remember(changes)
	return nil
}

// lock takes the Locker's locks on keys and returns what releases them. A Locker that is
// unreachable is counted and logged, and the write goes ahead on the database guard alone.
func (s *Store) lock(ctx context.Context, keys []string) (func(), error) {
	if s.opts.Locker == nil {
		return func() {}, nil
	}
	lockCtx, end := telemetry.Start(ctx, "lock.wait", attribute.Int("resources", len(keys)))
	unlock, err := s.opts.Locker.Lock(lockCtx, keys...)
	end(&err)
	switch {
	case err == nil:
		return func() { unlock(context.WithoutCancel(ctx)) }, nil
	case reservation.ErrorCode(err) == reservation.EUNAVAILABLE:
		s.stats.lockDown.Add(1)
		s.log.WarnContext(ctx, "lock unavailable, writing on the database guard alone", "resources", keys, "err", err)
		return func() {}, nil
	}
	return nil, err
}

func (s *Store) committed() {
	if s.opts.Committed != nil {
		s.opts.Committed()
	}
}

// inTx runs fn in a READ COMMITTED transaction, so that the overlap check, made after the
// resource row is locked, sees every reservation committed before. A transaction that lost a
// deadlock or waited too long for a lock is run again, a bounded number of times.
func (s *Store) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		txCtx, end := telemetry.Start(ctx, "tx.attempt", attribute.Int("retry", attempt))
		err := s.tryTx(txCtx, fn)
		end(&err)
		if err == nil || !retryable(err) {
			return classify(err)
		}
		if attempt == s.opts.Retries {
			return &reservation.Error{Code: reservation.EABORTED, Message: fmt.Sprintf("write gave up after %d attempts", attempt+1), Err: err}
		}
		s.stats.retries.Add(1)
		s.log.DebugContext(ctx, "retrying transaction", "attempt", attempt+1, "err", err)
		// A short random pause lets the transaction that won go first.
		pause := time.Duration(1+rand.IntN(5<<attempt)) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil) // READ COMMITTED: the session's, as Open sets it
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func retryable(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case errDeadlock, errLockWait, errDupKey, errTiDBConflict, errTiDBRetry, errTiDBSchema, errTiDBWrite, errGRRollback, errErrorOnCommit:
		return true
	case errTiDBUnknown:
		// TiDB answers lock contention ("pessimistic lock retry limit reached") with 1105,
		// which MySQL and MariaDB use for rare faults of their own. Either way a bounded retry
		// ends as ABORTED, never INTERNAL.
		return true
	}
	return false
}

// classify turns what the driver said into an application error where it can: a server that
// cannot be reached is EUNAVAILABLE. Application and context errors pass through.
func classify(err error) error {
	var me *mysql.MySQLError
	var ae *reservation.Error
	switch {
	case err == nil, errors.As(err, &ae), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errNoPrimary):
		return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "no writable database host", Err: err}
	case errors.As(err, &me):
		switch me.Number {
		case errQueryTimeout:
			return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "database timed out", Err: err}
		case errWsrepNotReady:
			return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "database node not ready", Err: err}
		case errTooManyConns, errUserConns, errUserLimit:
			// The server refused a new connection, so nothing ran: a later try may get one.
			return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "database refused a connection: too many connections", Err: err}
		case errLockWait, errDeadlock, errGRRollback, errErrorOnCommit:
			// A read outside any retried transaction that waited too long: on Galera, a
			// causal read (wsrep_sync_wait) while the cluster stalls on a dead or paused
			// node. Retrying may succeed. (inTx still retries these: errors.As sees through.)
			return &reservation.Error{Code: reservation.EABORTED, Message: "database lock wait timed out or transaction aborted", Err: err}
		}
		if isReadOnly(err) {
			// A replica, or a primary demoted by a failover (or a group member that left its
			// group): the statement was refused, so nothing was written, and the next try
			// goes to the new primary.
			return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "database is read-only (failover in progress?)", Err: err}
		}
		return err // a server error that is ours to fix: internal
	case unreachable(err):
		return &reservation.Error{Code: reservation.EUNAVAILABLE, Message: "database unavailable", Err: err}
	}
	return err
}

// unreachable reports whether err says the connection to the server failed: refused, reset,
// timed out or lost mid-query.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, errNoPrimary) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
