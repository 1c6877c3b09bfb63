package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"reservation"
	"reservation/migrations"
)

// Open connects to MySQL at dsn (go-sql-driver form, e.g. "user@tcp(host:3306)/db") with the
// session settings the store relies on: UTC times, READ COMMITTED, and a short lock wait, so
// a stuck writer fails fast and is retried instead of holding up the resource's queue.
//
// The address may list several hosts, "user@tcp(db1:3306,db2:3306)/db": a primary and its
// replicas. Connections then go only to the one that is writable (read_only off, and on
// MySQL super_read_only off), and follow a failover without a restart (failover.go).
func Open(ctx context.Context, dsn string) (*sqlx.DB, error) {
	cfg, hosts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
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
	galera, group, err := probeCluster(ctx, cfg, hosts)
	if err != nil {
		return nil, err
	}
	if group {
		// A Group Replication member (multi-primary, or a secondary that became primary):
		// each transaction first waits until its member applied every transaction the group
		// ordered before it, so that a Cancel right after a Reserve made through another
		// member finds it, as wsrep_sync_wait does on Galera.
		setDefault(cfg.Params, "group_replication_consistency", "'BEFORE'")
	}
	if galera {
		// A multi-statement batch hit by a brute-force abort midway can commit its later
		// statements outside the transaction: the store sends one per round trip
		// (Options.OneStatementPerTrip), and the connection refuses batches altogether.
		cfg.MultiStatements = false
		// Reads see every write committed through any node before them: a Cancel right
		// after a Reserve made through another node finds it.
		setDefault(cfg.Params, "wsrep_sync_wait", "1")
	}
	var last error
	for _, name := range []string{"transaction_isolation", "tx_isolation"} {
		delete(cfg.Params, "transaction_isolation")
		cfg.Params[name] = "'READ-COMMITTED'"
		db, err := open(ctx, cfg, hosts)
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == errUnknownVariable {
			last = err
			continue
		}
		if err == nil && len(hosts) > 1 {
			warnIfPrivileged(ctx, db, slog.Default())
		}
		return db, err
	}
	return nil, last
}

// CheckDSN reports whether dsn is in the form Open reads, without connecting: a command line
// can refuse a DSN in another form (a URL, host:port without tcp(…)) before it starts.
func CheckDSN(dsn string) error {
	_, _, err := parseDSN(dsn)
	return err
}

// parseDSN reads dsn, whose address may list several hosts, into the driver's Config (of one
// address) and the hosts; an error names DSNForm.
func parseDSN(dsn string) (*mysql.Config, []string, error) {
	single, hosts, err := splitHosts(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (%s)", err, DSNForm)
	}
	cfg, err := mysql.ParseDSN(single)
	if err != nil {
		return nil, nil, fmt.Errorf("parse mysql dsn: %w (%s)", err, DSNForm)
	}
	return cfg, hosts, nil
}

// DSNForm is the hint an unparsable DSN gets: the driver's form, which is not a URL and puts
// the address in tcp(…).
const DSNForm = "the form is user[:password]@tcp(host:port)/database, e.g. root@tcp(127.0.0.1:3306)/reservation"

// Galera reports whether db's server is a Galera cluster node with replication on: a Store on
// it needs Options.OneStatementPerTrip.
func Galera(ctx context.Context, db *sqlx.DB) (bool, error) {
	var name, value string
	err := db.QueryRowxContext(ctx, "SHOW VARIABLES LIKE 'wsrep_on'").Scan(&name, &value)
	if isNoRows(err) {
		return false, nil // MySQL, TiDB: no such variable
	}
	if err != nil {
		// Worded for any server: most are not Galera nodes, and the error is most often
		// the connection's own.
		return false, fmt.Errorf("SHOW VARIABLES LIKE 'wsrep_on': %w", err)
	}
	return strings.EqualFold(value, "ON"), nil
}

// GroupReplication reports whether db's server is configured as a member of a MySQL Group
// Replication group (group_replication_group_name set): the group_replication plugin's
// variables exist only where it is loaded.
func GroupReplication(ctx context.Context, db *sqlx.DB) (bool, error) {
	var name, value string
	err := db.QueryRowxContext(ctx, "SHOW VARIABLES LIKE 'group_replication_group_name'").Scan(&name, &value)
	if isNoRows(err) {
		return false, nil // no plugin: MariaDB, TiDB, a plain MySQL
	}
	if err != nil {
		return false, fmt.Errorf("ask whether the server is a Group Replication member: %w", err)
	}
	return value != "", nil
}

// probeCluster asks the server at cfg (the primary among hosts, if any), on a connection of
// its own, whether it is a Galera node and whether it is a Group Replication member.
func probeCluster(ctx context.Context, cfg *mysql.Config, hosts []string) (galera, group bool, err error) {
	probe := cfg.Clone()
	probe.Params = map[string]string{}
	connector, err := newConnector(probe, hosts)
	if err != nil {
		return false, false, err
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "mysql")
	defer db.Close()
	// A server that cannot be reached is told as such, before any question about it.
	if err := db.PingContext(ctx); err != nil {
		return false, false, fmt.Errorf("connect to mysql %s: %w", addrs(cfg, hosts), err)
	}
	if galera, err = Galera(ctx, db); err != nil {
		return false, false, fmt.Errorf("mysql %s: %w", addrs(cfg, hosts), err)
	}
	if group, err = GroupReplication(ctx, db); err != nil {
		return false, false, fmt.Errorf("mysql %s: %w", addrs(cfg, hosts), err)
	}
	return galera, group, nil
}

// errUnknownVariable is MySQL's "Unknown system variable".
const errUnknownVariable = 1193

// newConnector connects to cfg's server, or, given hosts, to whichever of them is writable.
func newConnector(cfg *mysql.Config, hosts []string) (driver.Connector, error) {
	if len(hosts) > 1 {
		return newFailover(cfg, hosts)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	return connector, nil
}

func open(ctx context.Context, cfg *mysql.Config, hosts []string) (*sqlx.DB, error) {
	connector, err := newConnector(cfg, hosts)
	if err != nil {
		return nil, err
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "mysql")
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxLifetime(30 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to mysql %s: %w", addrs(cfg, hosts), err)
	}
	return db, nil
}

func addrs(cfg *mysql.Config, hosts []string) string {
	if len(hosts) > 1 {
		return strings.Join(hosts, ",")
	}
	return cfg.Addr
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// Migrate brings the schema up to date. Replicas starting together take turns through a
// lease (lease.go), so each migration runs once on any topology: a named lock would be per
// node on Galera, and tied to one connection, which Vitess does not keep.
func Migrate(ctx context.Context, db *sql.DB) error {
	_, err := MigrateUp(ctx, db)
	return err
}

// Migrated is what MigrateUp did: how many migrations it applied (none when another replica
// or an earlier start had), and the schema's version afterwards.
type Migrated struct {
	Applied int
	Version int64
}

// MigrateUp is Migrate, and says what it applied, for the log.
func MigrateUp(ctx context.Context, db *sql.DB) (Migrated, error) {
	var done Migrated
	x := sqlx.NewDb(db, "mysql")
	if err := ensureLeaseRow(ctx, x, "migrate"); err != nil {
		return done, fmt.Errorf("migrate: %w", err)
	}
	l := newLease(x, "migrate", migrateLeaseTTL)
	if err := waitLease(ctx, l, migrateWait); err != nil {
		return done, fmt.Errorf("migrate: %w", err)
	}
	defer l.release(context.WithoutCancel(ctx))
	// Keep the lease while the migrations run, however long they take.
	renewCtx, stopRenewing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for reservation.Sleep(renewCtx, migrateLeaseTTL/3) == nil {
			if err := l.renew(renewCtx); err != nil && renewCtx.Err() == nil {
				slog.WarnContext(ctx, "migrate: renewing the migration lease failed", "err", err)
			}
		}
	})
	defer func() { stopRenewing(); wg.Wait() }()

	store, err := database.NewStore(database.DialectMySQL, goose.DefaultTablename)
	if err != nil {
		return done, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectCustom, db, migrations.FS, goose.WithStore(versionStore{store}))
	if err != nil {
		return done, fmt.Errorf("migrate: %w", err)
	}
	applied, err := p.Up(ctx)
	if err != nil {
		return done, fmt.Errorf("migrate: %w", err)
	}
	done.Applied = len(applied)
	if done.Version, err = p.GetDBVersion(ctx); err != nil {
		return done, fmt.Errorf("migrate: read the schema version: %w", err)
	}
	return done, nil
}

const (
	migrateLeaseTTL = 15 * time.Second
	migrateWait     = 5 * time.Minute // how long a replica waits for another's migrations
)

// waitLease takes l, waiting up to wait while another holder has it.
func waitLease(ctx context.Context, l *lease, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		won, err := l.acquire(ctx)
		if err != nil {
			return err
		}
		if won {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lease %q: another replica held it for %s", l.name, wait)
		}
		if reservation.Sleep(ctx, 200*time.Millisecond) != nil {
			return ctx.Err()
		}
	}
}

// versionStore is goose's MySQL store, but it asks whether the version table exists by
// reading it rather than through information_schema: through Vitess's vtgate,
// information_schema names the underlying database, not the keyspace DATABASE() returns, so
// goose would find no table and try to create it again.
type versionStore struct{ database.Store }

// TableExists implements database.StoreExtender.
func (v versionStore) TableExists(ctx context.Context, db database.DBTxConn) (bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT version_id FROM "+v.Tablename()+" LIMIT 1")
	if isUnknownTable(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", v.Tablename(), err)
	}
	rows.Close()
	return true, nil
}
