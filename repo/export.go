package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jmoiron/sqlx"
)

// exportsTable records how far each export of the change feed to an external stream got:
// seq is the newest change the stream has acknowledged, halted why the export stopped (empty
// while it runs). Pruning never deletes a change past the smallest seq recorded here (Prune),
// so a lagging export loses nothing. Created on first use, like reservation_leases, so that
// a deployment without an export has no such table.
const exportsTable = `CREATE TABLE IF NOT EXISTS reservation_exports (
    name       VARBINARY(64)  NOT NULL,
    seq        BIGINT         NOT NULL,
    halted     VARBINARY(512) NOT NULL,
    updated_at DATETIME(6)    NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB`

// DefaultExportTTL is how long the export's lease lasts without renewal: how long the export
// waits for another replica after its exporter died.
const DefaultExportTTL = 3 * time.Second

// Exporter is a replica's candidacy for exporting the change feed to the stream name: a lease
// of its own (the feed's leader and the exporter need not be the same replica), and the
// export's recorded position. Every position recorded is fenced by the lease.
type Exporter struct {
	db      *sqlx.DB
	name    string
	lease   *lease
	leading bool
}

// NewExporter returns a candidate for exporting the feed stored in db to the stream name.
func NewExporter(db *sqlx.DB, name string) *Exporter {
	return &Exporter{db: db, name: name, lease: newLease(db, "export:"+name, DefaultExportTTL)}
}

// ExportState is an export's recorded position, as every replica can read it.
type ExportState struct {
	Name   string
	Seq    uint64 // newest change the stream acknowledged; before the first export, the seq before the first to export
	Halted string // why the export stopped; empty while it runs
}

// ensureExportRow creates the table, and the export's row at first-1 when missing (first is
// the oldest change stored, or the next seq to come when none is).
func (e *Exporter) ensureExportRow(ctx context.Context) error {
	if _, err := e.db.ExecContext(ctx, exportsTable); err != nil {
		return fmt.Errorf("create reservation_exports: %w", err)
	}
	first, last, err := NewChanges(e.db).Bounds(ctx)
	if err != nil {
		return err
	}
	start := last // nothing stored: the next change, last+1, is the first to export
	if first > 0 {
		start = first - 1
	}
	_, err = e.db.ExecContext(ctx, "INSERT IGNORE INTO reservation_exports (name, seq, halted, updated_at) VALUES (?, ?, '', UTC_TIMESTAMP(6))", e.name, start)
	if err != nil {
		return classify(fmt.Errorf("create export %q: %w", e.name, err))
	}
	return nil
}

// Elect waits up to wait for the export's lease and reports whether it was won. The export's
// row is created first, so that pruning keeps every change from then on until exported.
func (e *Exporter) Elect(ctx context.Context, wait time.Duration) (bool, error) {
	if e.leading {
		return true, nil
	}
	if err := ensureLeaseRow(ctx, e.db, e.lease.name); err != nil {
		return false, classify(fmt.Errorf("elect exporter: %w", err))
	}
	if err := e.ensureExportRow(ctx); err != nil {
		return false, err
	}
	deadline := time.Now().Add(wait)
	for {
		won, err := e.lease.acquire(ctx)
		if err != nil {
			return false, classify(fmt.Errorf("elect exporter: %w", err))
		}
		if won {
			e.leading = true
			return true, nil
		}
		pause := min(e.lease.ttl/4, time.Until(deadline))
		if pause <= 0 {
			return false, nil
		}
		if err := sleepCtx(ctx, pause); err != nil {
			return false, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Resign gives the lease up, so that another replica takes it at once.
func (e *Exporter) Resign() {
	if !e.leading {
		return
	}
	e.leading = false
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e.lease.release(ctx) // if it fails, the lease expires by itself
}

// Record writes the export's position (seq, and halted: why it stopped, empty while it runs)
// and extends the lease, in one transaction that commits only while this replica holds it.
// It fails with an error wrapping ErrNotExporter when the lease was lost: the caller must
// stop exporting. The recorded seq never goes back.
func (e *Exporter) Record(ctx context.Context, seq uint64, halted string) error {
	if !e.leading {
		return ErrNotExporter
	}
	if len(halted) > 512 {
		halted = halted[:512]
	}
	err := retryTransient(ctx, func() error {
		tx, err := e.db.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("record export %q: begin: %w", e.name, err)
		}
		defer tx.Rollback()
		if err := e.lease.fence(ctx, tx); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE reservation_exports SET seq = GREATEST(seq, ?), halted = ?, updated_at = UTC_TIMESTAMP(6) WHERE name = ?",
			min(seq, math.MaxInt64), halted, e.name)
		if err != nil {
			return fmt.Errorf("record export %q at seq %d: %w", e.name, seq, err)
		}
		return tx.Commit()
	})
	if err != nil {
		if isLeaseLost(err) {
			e.leading = false
			return fmt.Errorf("%w: %w", ErrNotExporter, err)
		}
		return classify(err)
	}
	return nil
}

// ErrNotExporter says this replica no longer holds the export's lease.
var ErrNotExporter = fmt.Errorf("not the exporter: %w", errLeaseLost)

func isLeaseLost(err error) bool { return err != nil && errors.Is(err, errLeaseLost) }

// ExportStates returns every export's recorded state; none when no export ever ran.
func ExportStates(ctx context.Context, db *sqlx.DB) ([]ExportState, error) {
	var rows []struct {
		Name   string `db:"name"`
		Seq    int64  `db:"seq"`
		Halted string `db:"halted"`
	}
	err := db.SelectContext(ctx, &rows, "SELECT name, seq, halted FROM reservation_exports ORDER BY name")
	if isUnknownTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read exports: %w", err))
	}
	out := make([]ExportState, len(rows))
	for i, r := range rows {
		out[i] = ExportState{Name: r.Name, Seq: uint64(r.Seq), Halted: r.Halted}
	}
	return out, nil
}

// ForgetExport deletes the export's recorded state: pruning stops waiting for it, and an
// exporter started later begins again from the oldest change stored. It is the operator's
// way out of a halted export (reservationd export reset), or of an export turned off for good.
func ForgetExport(ctx context.Context, db *sqlx.DB, name string) (bool, error) {
	res, err := db.ExecContext(ctx, "DELETE FROM reservation_exports WHERE name = ?", name)
	if isUnknownTable(err) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("forget export %q: %w", name, err))
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// exportedThrough is the smallest seq the exports recorded: pruning keeps every change after
// it. ok is false when no export is recorded.
func exportedThrough(ctx context.Context, db *sqlx.DB) (seq uint64, ok bool, err error) {
	var s sql.NullInt64
	err = db.GetContext(ctx, &s, "SELECT MIN(seq) FROM reservation_exports")
	if isUnknownTable(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, classify(fmt.Errorf("read exports' position: %w", err))
	}
	return uint64(max(s.Int64, 0)), s.Valid, nil
}

// State reads the export's recorded position and halt reason.
func (e *Exporter) State(ctx context.Context) (uint64, string, error) {
	var row struct {
		Seq    int64  `db:"seq"`
		Halted string `db:"halted"`
	}
	err := e.db.GetContext(ctx, &row, "SELECT seq, halted FROM reservation_exports WHERE name = ?", e.name)
	if isNoRows(err) || isUnknownTable(err) {
		return 0, "", fmt.Errorf("export %q: not recorded yet", e.name)
	}
	if err != nil {
		return 0, "", classify(fmt.Errorf("read export %q: %w", e.name, err))
	}
	return uint64(max(row.Seq, 0)), row.Halted, nil
}
