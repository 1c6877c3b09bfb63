// Package repotest gives each test a fresh, migrated database on the real MySQL server, so
// tests run in parallel without seeing each other's rows.
package repotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"reservation/repo"
)

// ServerDSN is the test server's DSN without a database: $RESERVATION_TEST_MYSQL_DSN, or the
// machine's MariaDB on 127.0.0.1:3306.
func ServerDSN() string {
	if dsn := os.Getenv("RESERVATION_TEST_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// NewDB creates a database for t, migrates it, and drops it when t ends. It returns the
// connection and its DSN (for tests that open more connections, like a second replica).
// A server that cannot be reached fails the test: it is never skipped. Under -short (make
// check) the test is skipped before it starts: -short leaves out every test that needs a
// server, and make test never passes it.
func NewDB(t testing.TB) (*sqlx.DB, string) {
	t.Helper()
	return newDB(t, true)
}

// NewEmptyDB is NewDB without the migrations: an empty database, for tests of migrating.
func NewEmptyDB(t testing.TB) (*sqlx.DB, string) {
	t.Helper()
	return newDB(t, false)
}

func newDB(t testing.TB, migrate bool) (*sqlx.DB, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs MySQL: not run under -short (make check runs only what needs no server; make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg, err := mysql.ParseDSN(ServerDSN())
	if err != nil {
		t.Fatalf("RESERVATION_TEST_MYSQL_DSN: %v", err)
	}
	server, err := repo.Open(ctx, cfg.FormatDSN())
	if err != nil {
		t.Fatalf("test MySQL server (run scripts/services.sh): %v", err)
	}
	defer server.Close()

	b := make([]byte, 6)
	rand.Read(b)
	name := "rsvtest_" + hex.EncodeToString(b)
	if _, err := server.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drop, err := repo.Open(ctx, ServerDSN())
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer drop.Close()
		if _, err := drop.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})

	cfg.DBName = name
	dsn := cfg.FormatDSN()
	db, err := repo.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if !migrate {
		return db, dsn
	}
	if err := repo.Migrate(ctx, db.DB); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	return db, dsn
}

// Overlaps counts the pairs of stored reservations of one resource whose windows overlap: the
// promise the tests check, straight in SQL.
func Overlaps(t testing.TB, db *sqlx.DB) int {
	t.Helper()
	var n int
	if err := db.Get(&n, `SELECT COUNT(*) FROM reservations a JOIN reservations b
		ON a.resource_id = b.resource_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at`); err != nil {
		t.Fatalf("count overlapping reservations: %v", err)
	}
	return n
}

// BlockedOverlaps counts the pairs of stored reservations of one resource of capacity 1 whose
// blocked windows overlap: each widened by its resource's buffers, [start-before, end+after),
// so that two overlap when one starts less than before+after after the other ends. The promise
// with buffers, straight in SQL.
func BlockedOverlaps(t testing.TB, db *sqlx.DB) int {
	t.Helper()
	var n int
	if err := db.Get(&n, `SELECT COUNT(*) FROM reservations a JOIN reservations b ON a.resource_id = b.resource_id AND a.id < b.id
		JOIN resources s ON s.id = a.resource_id
		WHERE s.capacity <= 1
		AND a.start_at < b.end_at + INTERVAL (s.buffer_before_us + s.buffer_after_us) MICROSECOND
		AND b.start_at < a.end_at + INTERVAL (s.buffer_before_us + s.buffer_after_us) MICROSECOND`); err != nil {
		t.Fatalf("count reservations whose blocked windows overlap: %v", err)
	}
	return n
}
