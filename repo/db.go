package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"

	"reservation/migrations"
)

// Open connects to MySQL at dsn (go-sql-driver form, e.g. "user@tcp(host:3306)/db") with the
// session settings the store relies on: UTC times, READ COMMITTED, and a short lock wait, so
// a stuck writer fails fast and is retried instead of holding up the resource's queue.
func Open(ctx context.Context, dsn string) (*sqlx.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse mysql dsn: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// Arguments are escaped by the driver, so each statement is one round trip instead of
	// three (prepare, execute, close). The connection's character set is utf8mb4, for which
	// the driver's escaping is exact.
	cfg.InterpolateParams = true
	// A write sends its statements together, one round trip for several. Safe for the same
	// reason: no value is ever part of a statement's text but through a placeholder.
	cfg.MultiStatements = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	setDefault(cfg.Params, "time_zone", "'+00:00'")
	setDefault(cfg.Params, "innodb_lock_wait_timeout", "5")
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	// Every session is READ COMMITTED, which the store's transactions rely on, so that
	// beginning one is a single statement. MySQL 8 names the variable transaction_isolation;
	// MariaDB 10 knows only tx_isolation.
	var last error
	for _, name := range []string{"transaction_isolation", "tx_isolation"} {
		delete(cfg.Params, "transaction_isolation")
		cfg.Params[name] = "'READ-COMMITTED'"
		db, err := open(ctx, cfg)
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == errUnknownVariable {
			last = err
			continue
		}
		return db, err
	}
	return nil, last
}

// errUnknownVariable is MySQL's "Unknown system variable".
const errUnknownVariable = 1193

func open(ctx context.Context, cfg *mysql.Config) (*sqlx.DB, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "mysql")
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxLifetime(30 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to mysql %s: %w", cfg.Addr, err)
	}
	return db, nil
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// Migrate brings the schema up to date. Replicas starting together take turns through a MySQL
// named lock, so each migration runs once.
func Migrate(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('reservation.migrate', 60)").Scan(&got); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("migrate: another replica held the migration lock for 60s")
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('reservation.migrate')")

	p, err := goose.NewProvider(goose.DialectMySQL, db, migrations.FS)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
