package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"reservation/repo"
)

// galeraDSNs returns the nodes of the Galera cluster scripts/galera.sh started, or skips t.
// `make test` runs `make test-galera`, which sets the variable.
func galeraDSNs(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("RESERVATION_TEST_GALERA_DSNS")
	if v == "" {
		t.Skip("RESERVATION_TEST_GALERA_DSNS is not set: run `make test-galera` (scripts/galera.sh starts a 3-node cluster)")
	}
	dsns := strings.Split(v, ",")
	if len(dsns) < 3 {
		t.Fatalf("RESERVATION_TEST_GALERA_DSNS names %d nodes, want 3", len(dsns))
	}
	return dsns[:3]
}

// galeraDatabase creates a database of t's own on the cluster, dropped when t ends, and
// returns its name.
func galeraDatabase(t *testing.T, ctx context.Context, nodeDSN string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "rsvgalera_" + hex.EncodeToString(b)
	admin, err := sql.Open("mysql", nodeDSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create %s on the Galera cluster: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
		admin.Close()
	})
	return name
}

// withDB returns dsn (a server DSN, ending in "/") naming database db, with params added.
func withDB(t *testing.T, dsn, db string, params map[string]string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse %q: %v", dsn, err)
	}
	cfg.DBName = db
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	for k, v := range params {
		cfg.Params[k] = v
	}
	return cfg.FormatDSN()
}

// probeOutcome is what one run of the brute-force abort probe saw.
type probeOutcome struct {
	execErr, commitErr error
	t, t2              int // rows in t and t2 afterwards
}

func (o probeOutcome) String() string {
	return fmt.Sprintf("exec err %v, commit err %v, rows in t %d, rows in t2 %d", o.execErr, o.commitErr, o.t, o.t2)
}

// clean: the transaction either committed whole (one row in each table) or not at all.
func (o probeOutcome) clean() bool {
	if o.execErr == nil && o.commitErr == nil {
		return o.t == 1 && o.t2 == 1
	}
	return o.t == 0 && o.t2 == 0
}

// runProbe locks row 1 of hot FOR UPDATE through writer (node 1), then runs write (the
// statements INSERT t; DO SLEEP(1); INSERT t2; UPDATE hot) while another node updates the
// locked row: Galera aborts the writer's transaction by brute force in the middle.
// syncRead is the statement that makes a session's reads see every commit of the cluster
// (wsrep_sync_wait on Galera, group_replication_consistency on Group Replication).
func runProbe(ctx context.Context, t *testing.T, writer *sqlx.DB, other *sql.DB, syncRead string, write func(*sqlx.Tx) error) probeOutcome {
	t.Helper()
	for _, q := range []string{"DELETE FROM t", "DELETE FROM t2", "UPDATE hot SET v = 0 WHERE id = 1"} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The writer's node must have the cleanup before its transaction starts.
	if _, err := writer.ExecContext(ctx, syncRead); err != nil {
		t.Fatal(err)
	}
	tx, err := writer.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.GetContext(ctx, &v, "SELECT v FROM hot WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var out probeOutcome
	var wg sync.WaitGroup
	wg.Go(func() { out.execErr = write(tx) })
	// Let the batch reach its SLEEP, then update the row it holds through another node.
	time.Sleep(300 * time.Millisecond)
	if _, err := other.ExecContext(ctx, "UPDATE hot SET v = v + 100 WHERE id = 1"); err != nil {
		t.Logf("the other node's update: %v", err)
	}
	wg.Wait()
	out.commitErr = tx.Commit()
	// Read through the other node, after everything it has received is applied.
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, syncRead); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM t), (SELECT COUNT(*) FROM t2)").Scan(&out.t, &out.t2); err != nil {
		t.Fatal(err)
	}
	return out
}

const galeraSyncRead = "SET SESSION wsrep_sync_wait = 1"

const probeBatch = "INSERT INTO t VALUES (1); DO SLEEP(1); INSERT INTO t2 VALUES (1); UPDATE hot SET v = v + 1 WHERE id = 1"

// TestGaleraBatchSplitByBruteForceAbort is the root cause, on the test cluster: a
// multi-statement batch hit by a brute-force abort midway lets later statements commit outside
// the transaction, while Exec and Commit both answer nil. The connection repo.Open makes to a
// Galera node refuses batches, and the same statements sent one per round trip (the store's
// path there, Options.OneStatementPerTrip) either commit whole or not at all.
func TestGaleraBatchSplitByBruteForceAbort(t *testing.T) {
	dsns := galeraDSNs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbName := galeraDatabase(t, ctx, dsns[0])

	other, err := sql.Open("mysql", withDB(t, dsns[1], dbName, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, q := range []string{
		"CREATE TABLE hot (id INT PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE t (id INT PRIMARY KEY)",
		"CREATE TABLE t2 (id INT PRIMARY KEY)",
		"INSERT INTO hot VALUES (1, 0)",
	} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// What the service did before: batches on, sent together. The hazard, reproduced: at least
	// one of three runs must split (every run did, on the test cluster), or this probe no
	// longer shows what the store's path is guarding against.
	raw, err := sqlx.Open("mysql", withDB(t, dsns[0], dbName, map[string]string{"multiStatements": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	split := 0
	const tries = 3
	for i := range tries {
		out := runProbe(ctx, t, raw, other, galeraSyncRead, func(tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, probeBatch)
			return err
		})
		t.Logf("multiStatements batch, run %d: %s", i+1, out)
		if !out.clean() {
			split++
		}
	}
	t.Logf("a multiStatements batch was split by the brute-force abort in %d of %d runs", split, tries)
	if split == 0 {
		t.Errorf("no multiStatements batch was split in %d runs: the probe no longer reproduces the hazard (a server that fixed it, or timing)", tries)
	}

	// Through repo.Open: the node is detected, so the connection refuses batches...
	db, err := repo.Open(ctx, withDB(t, dsns[0], dbName, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	galera, err := repo.Galera(ctx, db)
	if err != nil || !galera {
		t.Fatalf("repo.Galera = %v, %v on a Galera node", galera, err)
	}
	var mysqlErr *mysql.MySQLError
	if _, err := db.ExecContext(ctx, "DO 1; DO 2"); !errors.As(err, &mysqlErr) {
		t.Errorf("a batch through repo.Open's connection to a Galera node: err %v, want a server error (multiStatements off)", err)
	}
	// ...and statements sent one per round trip commit whole or not at all.
	for i := range tries {
		out := runProbe(ctx, t, db, other, galeraSyncRead, func(tx *sqlx.Tx) error {
			for _, q := range strings.Split(probeBatch, "; ") {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		t.Logf("one statement per round trip, run %d: %s", i+1, out)
		if !out.clean() {
			t.Errorf("one statement per round trip, run %d, was split: %s", i+1, out)
		}
		if out.execErr == nil && out.commitErr == nil {
			t.Logf("run %d: the other node's update did not abort the transaction (it committed whole)", i+1)
		}
	}
}
