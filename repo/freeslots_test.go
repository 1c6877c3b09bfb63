package repo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// sessionWork reads, on db's one connection, the statements it has run (Questions) and the
// rows its statements read through the storage engine (the Handler_read counters).
func sessionWork(t *testing.T, db *sqlx.DB) (statements, rows int) {
	t.Helper()
	var vars []struct {
		Name  string `db:"Variable_name"`
		Value int    `db:"Value"`
	}
	if err := db.Select(&vars, "SHOW SESSION STATUS WHERE Variable_name = 'Questions' OR Variable_name LIKE 'Handler_read%'"); err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		if v.Name == "Questions" {
			statements = v.Value
		} else {
			rows += v.Value
		}
	}
	return statements, rows
}

// TestPoolFreeSlotsStatements: FreeSlots over 366 days on a pool of 1,000 units runs two
// statements (the units, the reservations of all of them), not one per unit, and reads rows
// in proportion to the units and the reservations in the window, not to every reservation the
// units ever had. Counted on one connection, whose session counters are this test's alone.
func TestPoolFreeSlotsStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	const units = 1000
	var values []string
	var args []any
	for i := range units {
		values = append(values, "(?, 0, 0, ?, 'hotel')")
		args = append(args, fmt.Sprintf("room-%04d", i), base)
	}
	if _, err := db.Exec("INSERT INTO resources (id, version, max_span_us, created_at, pool_id) VALUES "+strings.Join(values, ", "), args...); err != nil {
		t.Fatal(err)
	}
	// Ten booked inside the window, and 50 before it on room-0000 (read by no FreeSlots).
	for i := range 10 {
		if _, err := s.Reserve(ctx, reservation.Book(window(fmt.Sprintf("room-%04d", i*100), 10, 12))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if _, err := s.Reserve(ctx, reservation.Book(window("room-0000", -1000+2*i, -999+2*i))); err != nil {
			t.Fatal(err)
		}
	}
	db.SetMaxOpenConns(1) // one session: its counters are the statements below
	q := reservation.SlotQuery{PoolID: "hotel", Start: base, End: base.Add(366 * 24 * time.Hour)}
	stmts0, rows0 := sessionWork(t, db)
	free, err := s.FreeSlots(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	stmts1, rows1 := sessionWork(t, db)
	statements, rows := stmts1-stmts0-1, rows1-rows0 // less the first SHOW STATUS
	t.Logf("FreeSlots on %d units: %d statements, %d rows read, %d windows", units, statements, rows, len(free))
	if statements > 2 {
		t.Errorf("FreeSlots on a pool of %d units ran %d statements, want 2", units, statements)
	}
	// Each unit: its row, and one index look-up; each booked unit a row more.
	if limit := 3*units + 10*3; rows > limit {
		t.Errorf("FreeSlots on a pool of %d units read %d rows, want at most %d", units, rows, limit)
	}
	// 990 units free all year, 10 free before and after their booking.
	if len(free) != units+10 {
		t.Errorf("%d free windows, want %d", len(free), units+10)
	}
	for _, w := range free {
		if w.ResourceID == "room-0100" && w.Start.Equal(base) && !w.End.Equal(base.Add(10*time.Hour)) {
			t.Errorf("room-0100 free from %s to %s, want to 10:00 (booked 10-12)", w.Start, w.End)
		}
	}
}

// TestFreeSlotsRowBound: a window holding more than MaxFreeSlotsRows reservations of a
// resource is EINVALID on end, after reading no more than that many and one; at the bound
// it is answered.
func TestFreeSlotsRowBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "hall", Capacity: 100_000}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, reservation.Book(window("hall", 10, 12))); err != nil {
		t.Fatal(err)
	}
	// Copies of that reservation, by SQL: 50,000 more, each its own id.
	var cols []string
	if err := db.Select(&cols, "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'reservations' ORDER BY ordinal_position"); err != nil {
		t.Fatal(err)
	}
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "r." + c
		if strings.EqualFold(c, "id") {
			exprs[i] = "CONCAT(LEFT(r.id, 30), LPAD(n.n, 6, '0'))"
		}
	}
	for _, q := range []string{
		"CREATE TABLE digits (d INT NOT NULL)",
		"INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)",
		"CREATE TABLE numbers (n INT NOT NULL)",
		"INSERT INTO numbers SELECT a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d FROM digits a, digits b, digits c, digits d, digits e WHERE a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d < 50000",
		"INSERT INTO reservations (" + strings.Join(cols, ", ") + ") SELECT " + strings.Join(exprs, ", ") + " FROM reservations r, numbers n",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	q := reservation.SlotQuery{ResourceID: "hall", Start: base, End: base.Add(24 * time.Hour)}
	_, err := s.FreeSlots(ctx, q)
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != "end" {
		t.Fatalf("FreeSlots over %d reservations: %v, want EINVALID on end", repo.MaxFreeSlotsRows+1, err)
	}
	if _, err := db.Exec("DELETE FROM reservations WHERE id LIKE '%000000'"); err != nil {
		t.Fatal(err)
	}
	free, err := s.FreeSlots(ctx, q)
	if err != nil || len(free) == 0 {
		t.Errorf("FreeSlots over %d reservations: %d windows, %v", repo.MaxFreeSlotsRows, len(free), err)
	}
}
