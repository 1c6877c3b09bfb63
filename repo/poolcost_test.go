package repo_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// TestPoolBookingCostDoesNotGrowWithItsUnits: a pool booking on a pool of 1,000 units whose
// first 999 are taken for the window costs the store the same statements, transactions and
// rows read back as one on a pool of 10 whose first 9 are: the unit is chosen by a read that
// returns a bounded page of units, not one row per unit. Counted at the driver, on a real
// server.
func TestPoolBookingCostDoesNotGrowWithItsUnits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, dsn := repotest.NewDB(t)
	setup := repo.New(db, repo.Options{})
	costs := map[int]cost{}
	for _, units := range []int{10, 1000} {
		pool := fmt.Sprint("pool-", units)
		var taken []*reservation.Reservation
		for i := range units {
			id := fmt.Sprintf("%s-unit-%04d", pool, i)
			if _, err := setup.PutResource(ctx, &reservation.Resource{ID: id, PoolID: pool}, 0); err != nil {
				t.Fatal(err)
			}
			if i < units-1 {
				taken = append(taken, window(id, 10, 12))
			}
		}
		if _, err := setup.Reserve(ctx, reservation.Booking{Reservations: taken}); err != nil {
			t.Fatal(err)
		}
		counted, counts := countingDB(t, dsn)
		s := repo.New(counted, repo.Options{})
		counts.reset()
		out, err := s.Reserve(ctx, reservation.Book(poolBooking(pool, 11, 13)))
		if err != nil {
			t.Fatalf("pool of %d: %v", units, err)
		}
		if want := fmt.Sprintf("%s-unit-%04d", pool, units-1); out[0].ResourceID != want {
			t.Errorf("pool of %d: booked %s, want %s, the one free unit", units, out[0].ResourceID, want)
		}
		costs[units] = counts.load()
		t.Logf("pool of %d units, the last one free: %+v", units, costs[units])
	}
	small, large := costs[10], costs[1000]
	if large.statements != small.statements || large.commits != small.commits {
		t.Errorf("pool of 1000: %d statements and %d commits, want those of the pool of 10: %d and %d", large.statements, large.commits, small.statements, small.commits)
	}
	if large.rows != small.rows {
		t.Errorf("pool of 1000: %d rows read, want the pool of 10's %d", large.rows, small.rows)
	}
	// What a booking of one unit reads: the page of units that look free (one here), the
	// unit's resources row, locked, and no reservation (none is in its way).
	if small.rows > 4 {
		t.Errorf("a pool booking read %d rows, want at most 4", small.rows)
	}
}

// cost is what the driver was asked to do.
type cost struct {
	statements int64 // round trips that ran statements (a batch of several is one)
	rows       int64 // rows read back
	commits    int64
}

type counts struct{ statements, rows, commits atomic.Int64 }

func (c *counts) reset() { c.statements.Store(0); c.rows.Store(0); c.commits.Store(0) }
func (c *counts) load() cost {
	return cost{c.statements.Load(), c.rows.Load(), c.commits.Load()}
}

// countingDB opens dsn as repo.Open does (for one caller at a time), through a driver that
// counts what it is asked.
func countingDB(t *testing.T, dsn string) (*sqlx.DB, *counts) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime, cfg.Loc, cfg.InterpolateParams, cfg.MultiStatements = true, time.UTC, true, true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	inner, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &counts{}
	db := sql.OpenDB(&countingConnector{inner, c})
	t.Cleanup(func() { db.Close() })
	return sqlx.NewDb(db, "mysql"), c
}

type countingConnector struct {
	inner driver.Connector
	c     *counts
}

func (k *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn, k.c}, nil
}

func (k *countingConnector) Driver() driver.Driver { return k.inner.Driver() }

// countingConn forwards to the driver's connection, counting.
type countingConn struct {
	driver.Conn
	c *counts
}

func (k *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	k.c.statements.Add(1)
	rows, err := k.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return &countingRows{rows, k.c}, nil
}

func (k *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	k.c.statements.Add(1)
	return k.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (k *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := k.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingTx{tx, k.c}, nil
}

func (k *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	return k.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

type countingTx struct {
	driver.Tx
	c *counts
}

func (k *countingTx) Commit() error {
	k.c.commits.Add(1)
	return k.Tx.Commit()
}

type countingRows struct {
	driver.Rows
	c *counts
}

func (k *countingRows) Next(dest []driver.Value) error {
	err := k.Rows.Next(dest)
	if err != io.EOF && err == nil {
		k.c.rows.Add(1)
	}
	return err
}

// TestConcurrentPoolBookingsReadNotEveryUnit: 16 calls booking the same window of a pool of
// 1,000 free units at once each get a unit of their own, and none of them locks and reads every
// unit (which alone would read 1,000 rows): calls that lost the units they read free to the
// others read again, rather than fall back to every unit.
func TestConcurrentPoolBookingsReadNotEveryUnit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, dsn := repotest.NewDB(t)
	setup := repo.New(db, repo.Options{})
	const units, calls = 1000, 16
	for i := range units {
		if _, err := setup.PutResource(ctx, &reservation.Resource{ID: fmt.Sprintf("unit-%04d", i), PoolID: "hotel"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	counted, counts := countingDB(t, dsn)
	s := repo.New(counted, repo.Options{})
	counts.reset()
	got := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			out, err := s.Reserve(ctx, reservation.Book(poolBooking("hotel", 11, 13)))
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			got[i] = out[0].ResourceID
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, u := range got {
		if seen[u] {
			t.Errorf("call %d booked %s, which another call booked too", i, u)
		}
		seen[u] = true
	}
	c := counts.load()
	t.Logf("%d concurrent pool bookings: %+v", calls, c)
	if c.rows >= units {
		t.Errorf("%d rows read for %d bookings: some call read every one of the %d units", c.rows, calls, units)
	}
}

// TestPoolBatchCostDoesNotGrowWithItsUnits: one call of 100 pooled items, one on each of 100
// pools, costs the store the same statements, transactions and rows read whether each pool has
// 12 units or 48, the first half of each taken for the window: every item's units come from a
// bounded page (6 units, full in both), and the call locks and reads 3 of them alone. Counted
// at the driver, on a real server.
func TestPoolBatchCostDoesNotGrowWithItsUnits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, dsn := repotest.NewDB(t)
	setup := repo.New(db, repo.Options{})
	const pools = 100
	costs := map[int]cost{}
	for _, units := range []int{12, 48} {
		var taken, batch []*reservation.Reservation
		var wg sync.WaitGroup
		for p := range pools {
			pool := fmt.Sprintf("pool-%d-%03d", units, p)
			wg.Go(func() {
				for i := range units {
					id := fmt.Sprintf("%s-unit-%02d", pool, i)
					if _, err := setup.PutResource(ctx, &reservation.Resource{ID: id, PoolID: pool}, 0); err != nil {
						t.Error(err)
						return
					}
				}
			})
			for i := range units / 2 {
				taken = append(taken, window(fmt.Sprintf("%s-unit-%02d", pool, i), 10, 12))
			}
			batch = append(batch, poolBooking(pool, 11, 13))
		}
		if wg.Wait(); t.Failed() {
			t.FailNow()
		}
		if _, err := setup.Reserve(ctx, reservation.Booking{Reservations: taken}); err != nil {
			t.Fatal(err)
		}
		counted, counts := countingDB(t, dsn)
		s := repo.New(counted, repo.Options{})
		counts.reset()
		out, err := s.Reserve(ctx, reservation.Booking{Reservations: batch})
		if err != nil {
			t.Fatalf("pools of %d: %v", units, err)
		}
		for p, r := range out {
			if want := fmt.Sprintf("pool-%d-%03d-unit-%02d", units, p, units/2); r.ResourceID != want {
				t.Errorf("pools of %d: item %d booked %s, want %s, the first free unit", units, p, r.ResourceID, want)
			}
		}
		costs[units] = counts.load()
		t.Logf("100 pools of %d units, half taken: %+v", units, costs[units])
	}
	small, large := costs[12], costs[48]
	if large != small {
		t.Errorf("pools of 48 units: %+v, want the cost with 12 units: %+v", large, small)
	}
	// Per item: one read of its pool's free units (a page), and its units' rows locked; then
	// the batch's one transaction.
	if small.statements > pools+10 || small.commits != 1 {
		t.Errorf("a batch of %d pooled items ran %d statements and %d commits, want at most %d and 1", pools, small.statements, small.commits, pools+10)
	}
}
