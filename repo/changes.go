package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// Changes reads the sequenced rows of reservation_changes: the stored change feed.
type Changes struct {
	db *sqlx.DB
}

// NewChanges returns the change feed stored in db.
func NewChanges(db *sqlx.DB) *Changes { return &Changes{db: db} }

// changeRow is a sequenced reservation_changes row.
type changeRow struct {
	ID          int64     `db:"id"`
	Seq         uint64    `db:"seq"`
	Op          int       `db:"op"`
	Snapshot    []byte    `db:"snapshot"`
	Actor       string    `db:"actor"`
	Reason      string    `db:"reason"`
	MovedFrom   string    `db:"moved_from"`
	CommittedAt time.Time `db:"committed_at"`
}

// changeColumns are the columns of a changeRow.
const changeColumns = "id, seq, op, snapshot, actor, reason, moved_from, committed_at"

// sqlReadResource reads the changes of one resource: those recorded under it, through the
// (resource_id, seq) index, and the moves that took a reservation away from it, through the
// (moved_from, seq) index. Two range reads of limit rows at most each, in seq order, joined;
// the first limit of the two are the first limit of the resource's changes. No row is in both
// (a move records moved_from only when it leaves its resource, and the second read leaves out
// any that names the resource itself). Plain UNION ALL of two parenthesised reads, which every
// engine the service runs on takes alike; an OR of the two columns instead is a scan, or on
// MariaDB an index merge that reads every matching row before the limit.
const sqlReadResource = "(SELECT " + changeColumns + " FROM reservation_changes WHERE resource_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?)" +
	" UNION ALL (SELECT " + changeColumns + " FROM reservation_changes WHERE moved_from = ? AND resource_id <> ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?)" +
	" ORDER BY seq LIMIT ?"

// Read returns up to limit changes with after < seq <= through, in seq order; resourceID, when
// not empty, keeps only that resource's: those of its reservations, and the moves that took
// one away from it (Change.MovedFrom).
func (c *Changes) Read(ctx context.Context, after, through uint64, resourceID string, limit int) ([]*reservation.Change, error) {
	through = min(through, math.MaxInt64)
	query := "SELECT " + changeColumns + " FROM reservation_changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
	args := []any{after, through, limit}
	if resourceID != "" {
		query = sqlReadResource
		args = []any{resourceID, after, through, limit, resourceID, resourceID, after, through, limit, limit}
	}
	var rows []changeRow
	if err := c.db.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("read changes after seq %d: %w", after, err))
	}
	return decodeChanges(rows)
}

// At returns the change with seq, or nil when none is stored.
func (c *Changes) At(ctx context.Context, seq uint64) (*reservation.Change, error) {
	var rows []changeRow
	err := c.db.SelectContext(ctx, &rows, "SELECT "+changeColumns+" FROM reservation_changes WHERE seq = ?", min(seq, math.MaxInt64))
	if err != nil {
		return nil, classify(fmt.Errorf("read change %d: %w", seq, err))
	}
	cs, err := decodeChanges(rows)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	return cs[0], nil
}

func decodeChanges(rows []changeRow) ([]*reservation.Change, error) {
	out := make([]*reservation.Change, len(rows))
	for i, r := range rows {
		var w row
		if err := json.Unmarshal(r.Snapshot, &w); err != nil {
			return nil, fmt.Errorf("change %d: decode snapshot: %w", r.Seq, err)
		}
		out[i] = &reservation.Change{Seq: r.Seq, Op: reservation.Op(r.Op), Reservation: w.reservation(), CommittedAt: r.CommittedAt.UTC(), RowID: r.ID,
			Actor: r.Actor, Reason: r.Reason, MovedFrom: r.MovedFrom}
	}
	return out, nil
}

// Bounds returns the oldest and the newest seq still stored; 0, 0 when none is.
func (c *Changes) Bounds(ctx context.Context) (first, last uint64, err error) {
	var b struct {
		First sql.NullInt64 `db:"first"`
		Last  sql.NullInt64 `db:"last"`
	}
	if err := c.db.GetContext(ctx, &b, "SELECT MIN(seq) AS first, MAX(seq) AS last FROM reservation_changes"); err != nil {
		return 0, 0, classify(fmt.Errorf("read change feed bounds: %w", err))
	}
	return uint64(b.First.Int64), uint64(b.Last.Int64), nil
}

// Unstamped returns the smallest and largest ids of the committed changes still without a
// seq; 0, 0 when none waits.
func (c *Changes) Unstamped(ctx context.Context) (oldest, newest int64, err error) {
	var b struct {
		Oldest sql.NullInt64 `db:"oldest"`
		Newest sql.NullInt64 `db:"newest"`
	}
	if err := c.db.GetContext(ctx, &b, "SELECT MIN(id) AS oldest, MAX(id) AS newest FROM reservation_changes WHERE seq IS NULL"); err != nil {
		return 0, 0, classify(fmt.Errorf("read unstamped changes: %w", err))
	}
	return b.Oldest.Int64, b.Newest.Int64, nil
}

// Leader gives changes their seq. Replicas elect one leader through a lease in the database
// (lease.go), which works alike on one server, Galera, TiDB and through Vitess. Every stamp
// is fenced: it commits only while its lease is held, checked in the stamp's own transaction,
// so a leader that lost its lease (paused, cut off) stamps nothing.
type Leader struct {
	db      *sqlx.DB
	lease   *lease
	leading bool
	renewed time.Time // when the lease was last extended, by this process's clock
}

// DefaultLeaderTTL is how long the feed's lease lasts without renewal: how long the feed
// waits for a new leader after its leader died.
const DefaultLeaderTTL = 3 * time.Second

// NewLeader returns a candidate for leadership over the feed stored in db, opened with Open,
// whose lease lasts DefaultLeaderTTL.
func NewLeader(db *sqlx.DB) *Leader { return NewLeaderTTL(db, DefaultLeaderTTL) }

// NewLeaderTTL is NewLeader with a lease of ttl.
func NewLeaderTTL(db *sqlx.DB, ttl time.Duration) *Leader {
	return &Leader{db: db, lease: newLease(db, "feed", ttl)}
}

// Elect waits up to wait for leadership and reports whether it was won. Once won, it holds
// while Stamp keeps renewing it, until Resign.
func (l *Leader) Elect(ctx context.Context, wait time.Duration) (bool, error) {
	if l.leading {
		return true, nil
	}
	if err := ensureLeaseRow(ctx, l.db, l.lease.name); err != nil {
		return false, classify(fmt.Errorf("elect feed leader: %w", err))
	}
	deadline := time.Now().Add(wait)
	for {
		won, err := l.lease.acquire(ctx)
		if err != nil {
			return false, classify(fmt.Errorf("elect feed leader: %w", err))
		}
		if won {
			l.leading, l.renewed = true, time.Now()
			return true, nil
		}
		pause := min(l.lease.ttl/4, time.Until(deadline))
		if pause <= 0 {
			return false, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// Resign gives leadership up, so that another replica takes it at once.
func (l *Leader) Resign() {
	if !l.leading {
		return
	}
	l.leading = false
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.lease.release(ctx) // if it fails, the lease expires by itself
}

var errNotLeader = errors.New("not the feed leader")

// Stamp gives the next seqs to up to limit committed changes that have none, in the order of
// their ids, in one transaction, and returns how many it stamped. It reads the oldest waiting
// ids through the (seq, id) index (migration 00008) in as many entries as it stamps, and its
// UPDATEs compute the seqs from runs of ids (stampStatements): one statement for a batch of
// consecutive ids. Ids are allocated at insert, not at commit, so an uncommitted change with a
// smaller id may commit later: it is not visible yet, and gets a later seq when it is. Changes
// of one resource are written one after another under its row lock, so for them id order is
// commit order.
func (l *Leader) Stamp(ctx context.Context, limit int) (int, error) {
	if !l.leading {
		return 0, errNotLeader
	}
	// Which committed changes have no seq: read first, outside any transaction, so that an
	// idle feed costs one statement per look, and a renewal of the lease now and then.
	rows, err := l.db.QueryContext(ctx, "SELECT id FROM reservation_changes WHERE seq IS NULL ORDER BY id LIMIT ?", limit)
	if err != nil {
		return 0, classify(fmt.Errorf("stamp changes: unstamped rows: %w", err))
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, classify(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return 0, classify(err)
	}
	if len(ids) == 0 {
		if time.Since(l.renewed) < l.lease.ttl/3 {
			return 0, nil
		}
		if err := l.lease.renew(ctx); err != nil {
			return 0, l.lost(fmt.Errorf("renew feed lease: %w", err))
		}
		l.renewed = time.Now()
		return 0, nil
	}
	tx, err := l.db.BeginTxx(ctx, nil) // READ COMMITTED: the session's, as Open sets it
	if err != nil {
		return 0, classify(fmt.Errorf("stamp changes: %w", err))
	}
	defer tx.Rollback()
	if err := l.lease.fence(ctx, tx); err != nil {
		return 0, l.lost(fmt.Errorf("stamp changes: %w", err))
	}
	renewed := time.Now()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(seq) FROM reservation_changes").Scan(&last); err != nil {
		return 0, classify(fmt.Errorf("stamp changes: newest seq: %w", err))
	}
	next := uint64(last.Int64) + 1
	for _, st := range stampStatements(ids, next) {
		res, err := tx.ExecContext(ctx, st.query, st.args...)
		if err != nil {
			return 0, classify(fmt.Errorf("stamp changes: %w", err))
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(st.rows) {
			return 0, fmt.Errorf("stamp changes: %d of %d rows stamped, another leader is at work: %w", n, st.rows, errNotLeader)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, classify(fmt.Errorf("stamp changes: commit: %w", err))
	}
	l.renewed = renewed
	return len(ids), nil
}

// maxRunsPerStamp bounds the runs one stamping statement names: MySQL tests a row against the
// WHEN clauses of a CASE one after another, so a statement's cost grows with its rows times its
// runs. A backlog written by one server has consecutive ids, and a batch of them is one run.
const maxRunsPerStamp = 64

// stampStmt is a statement stamping rows changes.
type stampStmt struct {
	query string
	args  []any
	rows  int
}

// stampStatements writes the UPDATEs giving ids (ascending) the seqs from next on, in order:
// the ids are cut into runs, each an arithmetic progression (a range of consecutive ids, or
// ids a step apart, as a Galera node's auto-increment makes them), and each run's seqs are
// computed from its ids (the first's seq plus the steps from the first), so a statement's
// size and work grow with its runs, not with its rows: a batch of 10,000 consecutive ids is
// one short statement. A statement names at most maxRunsPerStamp runs. Each stamps only rows
// still without a seq, and exactly the ids given: a step's MOD condition leaves out the ids
// between, which belong to no run of this batch.
func stampStatements(ids []int64, next uint64) []stampStmt {
	var out []stampStmt
	var set, where strings.Builder
	var setArgs, whereArgs []any
	runs, rows := 0, 0
	flush := func() {
		if runs == 0 {
			return
		}
		out = append(out, stampStmt{
			query: "UPDATE reservation_changes SET seq = CASE" + set.String() + " END, committed_at = UTC_TIMESTAMP(6) WHERE seq IS NULL AND (" + where.String() + ")",
			args:  append(setArgs, whereArgs...),
			rows:  rows,
		})
		set.Reset()
		where.Reset()
		setArgs, whereArgs, runs, rows = nil, nil, 0, 0
	}
	for i := 0; i < len(ids); {
		first, step, n := ids[i], int64(1), 1
		if i+1 < len(ids) {
			step = ids[i+1] - first
			for n < len(ids)-i && ids[i+n]-ids[i+n-1] == step {
				n++
			}
		}
		lastID := first + step*int64(n-1)
		if runs > 0 {
			where.WriteString(" OR ")
		}
		if step == 1 {
			// seq = next + (id - first)
			set.WriteString(" WHEN id BETWEEN ? AND ? THEN id + ?")
			setArgs = append(setArgs, first, lastID, int64(next)-first)
			where.WriteString("id BETWEEN ? AND ?")
			whereArgs = append(whereArgs, first, lastID)
		} else {
			// seq = next + (id - first) / step, for the ids first + k*step only
			set.WriteString(" WHEN id BETWEEN ? AND ? THEN ? + (id - ?) DIV ?")
			setArgs = append(setArgs, first, lastID, next, first, step)
			where.WriteString("(id BETWEEN ? AND ? AND MOD(id - ?, ?) = 0)")
			whereArgs = append(whereArgs, first, lastID, first, step)
		}
		next += uint64(n)
		i += n
		runs++
		rows += n
		if runs == maxRunsPerStamp {
			flush()
		}
	}
	flush()
	return out
}

// lost ends leadership after err; a lease found lost is errNotLeader.
func (l *Leader) lost(err error) error {
	if errors.Is(err, errLeaseLost) {
		l.leading = false
		return fmt.Errorf("%w: %w", errNotLeader, err)
	}
	return classify(err)
}

// Prune deletes up to limit of the oldest changes committed before before, and returns how
// many. It deletes only from the oldest end, so what remains is always an unbroken run of
// seqs, and it always keeps the newest change, whose seq the next one continues from, and every
// change an export has not sent yet (reservation_exports). It runs
// on the pool, beside stamping; a second pruner would only delete the same old rows.
func (l *Leader) Prune(ctx context.Context, before time.Time, limit int) (int, error) {
	var oldest []struct {
		Seq         uint64    `db:"seq"`
		CommittedAt time.Time `db:"committed_at"`
	}
	err := l.db.SelectContext(ctx, &oldest,
		"SELECT seq, committed_at FROM reservation_changes WHERE seq IS NOT NULL ORDER BY seq LIMIT ?", limit+1)
	if err != nil {
		return 0, classify(fmt.Errorf("prune changes: %w", err))
	}
	// The row after the limit is read only to be kept: it proves the last one deleted is not the newest.
	// Nor does it delete a change an export to an external stream has not sent yet.
	exported, exporting, err := exportedThrough(ctx, l.db)
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(oldest)-1 && n < limit && oldest[n].CommittedAt.Before(before) && (!exporting || oldest[n].Seq <= exported) {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	res, err := l.db.ExecContext(ctx, "DELETE FROM reservation_changes WHERE seq <= ?", oldest[n-1].Seq)
	if err != nil {
		return 0, classify(fmt.Errorf("prune changes up to seq %d: %w", oldest[n-1].Seq, err))
	}
	deleted, _ := res.RowsAffected()
	return int(deleted), nil
}
