package chaos

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation/repo"
)

// vitessLoad is how long the writers run in TestVitessAcceptance.
const vitessLoad = 20 * time.Second

// TestVitessAcceptance runs three reservationd replicas on one Vitess keyspace, through
// vtgate, with writers calling random replicas and a listener on each replica, and every
// replica restarted in turn mid-load, as a rolling deploy does: stopped with SIGTERM (the
// feed's leader resigns) and started again (it migrates again). It then checks the
// promise as TestChaos does: no two stored reservations overlap, every acknowledged
// reservation is stored, and the feed each replica streams is the whole stored feed,
// gapless, in seq order, the same on every replica.
//
// It needs a vtgate: RESERVATION_TEST_VITESS_DSN names it, with the keyspace as the
// database (vtgate cannot CREATE DATABASE, so the test empties the keyspace instead).
// `make test-vitess` starts one with scripts/vitess.sh and sets the variable.
func TestVitessAcceptance(t *testing.T) {
	dsn := vitessDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// LockTTL 0: reservationd's default lock TTL, as in production.
	c, err := NewCluster(ctx, Options{Dir: t.TempDir(), Replicas: 3, MySQLDSN: dsn})
	t.Cleanup(c.Close)
	if err != nil {
		t.Fatal(err)
	}

	h := newHistory()
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range *writers {
		wg.Go(func() { Writer(load, i, c.Replicas, h, 3) })
	}
	listenCtx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	// One listener per replica, never reconnecting elsewhere: what each replica streams.
	listeners := make([]*Listener, len(c.Replicas))
	var lwg sync.WaitGroup
	for i := range listeners {
		listeners[i] = NewListener()
		lwg.Go(func() { listeners[i].Run(listenCtx, c.Replicas[i:i+1], uint64(i)) })
	}

	time.Sleep(vitessLoad / 2)
	deployStart := time.Now()
	for _, r := range c.Replicas {
		if !r.Stop(10 * time.Second) {
			t.Errorf("%s did not exit within 10s of SIGTERM", r.Name)
		}
		if err := r.Restart(); err != nil {
			t.Fatal(err)
		}
		if err := r.WaitServing(ctx); err != nil {
			t.Fatalf("%s after its restart: %v", r.Name, err)
		}
	}
	deployEnd := time.Now()
	time.Sleep(vitessLoad / 2)
	stopLoad()
	wg.Wait()
	stopped := time.Now()

	report := checkPromise(ctx, t, c, h, listeners, stopListeners, &lwg, stopped)
	failed, stall := h.During(deployStart, deployEnd)
	report.info("rolling restart of every replica (SIGTERM, start)", fmt.Sprintf("lasted %s; %d calls failed; longest pause in successes %s",
		deployEnd.Sub(deployStart).Round(time.Millisecond), failed, stall.Round(time.Millisecond)))
	t.Log("\n" + report.String())
	if report.failed {
		t.Fatal("a must-be-zero figure is not zero")
	}
	if len(h.Acked) == 0 {
		t.Fatal("no reservation was acknowledged: the replicas never served a write")
	}
}

// vitessDSN is $RESERVATION_TEST_VITESS_DSN; the test is skipped without it.
func vitessDSN(t *testing.T) string {
	dsn := os.Getenv("RESERVATION_TEST_VITESS_DSN")
	if dsn == "" {
		t.Skip("RESERVATION_TEST_VITESS_DSN is not set: `make test-vitess` starts a vttestserver (scripts/vitess.sh) and runs the Vitess tests against it")
	}
	return dsn
}

// emptyVitessKeyspace opens n pools on the keyspace, as n replicas would, after dropping every
// table in it.
func emptyVitessKeyspace(ctx context.Context, t *testing.T, n int) []*sqlx.DB {
	dsn := vitessDSN(t)
	var dbs []*sqlx.DB
	for range n {
		db, err := repo.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	if err := dropTables(ctx, dbs[0].DB); err != nil {
		t.Fatal(err)
	}
	return dbs
}

// A second replica, or a restart, migrates a schema that is already up to date: through
// vtgate, that must find the migrations done, not try to create the version table again.
func TestVitessMigrateAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbs := emptyVitessKeyspace(ctx, t, 2)
	for i, db := range append(dbs, dbs[0]) {
		if err := repo.Migrate(ctx, db.DB); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
}

// A feed leader that resigns lets another replica lead: through vtgate too, where each
// statement may run on another of vtgate's connections to MySQL.
func TestVitessLeadershipMoves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbs := emptyVitessKeyspace(ctx, t, 2)
	if err := repo.Migrate(ctx, dbs[0].DB); err != nil {
		t.Fatal(err)
	}
	a, b := repo.NewLeader(dbs[0]), repo.NewLeader(dbs[1])
	for round := range 3 {
		if won, err := a.Elect(ctx, time.Second); err != nil || !won {
			t.Fatalf("round %d: the first replica's election: won %v, %v", round, won, err)
		}
		if won, err := b.Elect(ctx, time.Second); err != nil || won {
			t.Fatalf("round %d: the second replica won while the first leads (%v, %v)", round, won, err)
		}
		a.Resign()
		if won, err := b.Elect(ctx, 5*time.Second); err != nil || !won {
			t.Fatalf("round %d: the first replica resigned, yet the second did not win within 5s: won %v, %v", round, won, err)
		}
		b.Resign()
	}
}
