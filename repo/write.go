package repo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// The statements of the write path whose text does not depend on the call. (Those built per
// call are below: lockResources, findInTheWay, record, insertReservations; Store.write, which
// takes the Locker's locks around a writeTx, is in tx.go.)
const (
	sqlLockResources = "SELECT id, version, max_span_us, capacity, disabled, pool_id, " + rulesColumns + " FROM resources WHERE id IN (?) ORDER BY id FOR UPDATE"
	sqlNewResources  = "INSERT INTO resources (id, version, max_span_us, created_at) VALUES "
	sqlOwner         = "SELECT resource_id, user_id FROM reservations WHERE id = ?"
	sqlDelete        = "DELETE FROM reservations WHERE id = ?"
	sqlUpdate        = "UPDATE reservations SET status = ?, note = ?, updated_at = ?, version = ?, expires_at = ? WHERE id = ?"
	sqlInsert        = "INSERT INTO reservations (" + columns + ") VALUES "
	sqlRecordChanges = "INSERT INTO reservation_changes (op, reservation_id, resource_id, resource_version, snapshot, actor, reason, moved_from, created_at) VALUES "
	sqlRecordHistory = "INSERT INTO reservation_history (reservation_id, op, snapshot, actor, reason, created_at) VALUES "
	// sqlInTheWay reads, at now, one range of the (resource_id, start_at) index per item: the
	// ranges, joined by OR, and the limit follow.
	sqlInTheWay = "SELECT " + columns + " FROM reservations FORCE INDEX (reservations_resource_start) WHERE "
)

// blockers are, for each reservation a call would make, the reservations in its way.
type blockers map[*reservation.Reservation][]*reservation.Reservation

// writeTx is one attempt at a write transaction: its time, read once the locks are held, the
// resources rows it locked (as the transaction will leave them), and the changes it will
// record. A retried transaction starts from a new writeTx, so nothing of a failed attempt
// carries over.
type writeTx struct {
	tx        *sqlx.Tx
	s         *Store
	now       time.Time
	resources map[string]*resource
	changes   []change
}

// resource is a locked resources row, as the transaction will leave it, with what the
// catalogue says of it.
type resource struct {
	version int64
	maxSpan time.Duration
	read    struct {
		version int64
		maxSpan time.Duration
	} // as locked: a row unchanged is not written back
	capacity int  // at least 1
	disabled bool // takes no new reservations
	absent   bool // not in the catalogue, which is strict: it was not created
	poolID   string
	rules    reservation.Rules // its buffers and booking rules
}

// policy is what the admission rule weighs the resource's reservations by.
func (r *resource) policy() reservation.Policy {
	return reservation.Policy{Capacity: r.capacity, BufferBefore: r.rules.BufferBefore, BufferAfter: r.rules.BufferAfter}
}

// inWriteTx runs fn in a transaction (run again as inTx says) on a new writeTx that has
// locked the resources rows keys, and returns the changes of the attempt that committed.
func (s *Store) inWriteTx(ctx context.Context, keys []string, fn func(*writeTx) error) ([]change, error) {
	var changes []change
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		// The time is read once the locks are held: a hold that lapsed while this call waited
		// for them no longer blocks it.
		w := &writeTx{tx: tx, s: s, now: s.now()}
		var err error
		if w.resources, err = lockResources(ctx, tx, keys, w.now, !s.opts.StrictCatalogue); err != nil {
			return err
		}
		if err := fn(w); err != nil {
			return err
		}
		changes = w.changes
		return nil
	})
	return changes, err
}

// lockResources locks the rows of the resources ids (sorted), creating the missing ones when
// create says so (the open catalogue: capacity 1, no pool) and marking them absent otherwise.
// InnoDB locks the rows in primary-key order, the same global order as everywhere else, so
// writes never deadlock each other.
func lockResources(ctx context.Context, tx *sqlx.Tx, ids []string, now time.Time, create bool) (map[string]*resource, error) {
	query, args, err := sqlx.In(sqlLockResources, ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID       string `db:"id"`
		Version  int64  `db:"version"`
		MaxSpan  int64  `db:"max_span_us"`
		Capacity int    `db:"capacity"`
		Disabled bool   `db:"disabled"`
		PoolID   string `db:"pool_id"`
		rulesRow
	}
	if err := tx.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("lock %d resources: %w", len(ids), err)
	}
	out := make(map[string]*resource, len(ids))
	for _, r := range rows {
		res := &resource{version: r.Version, maxSpan: time.Duration(r.MaxSpan) * time.Microsecond, capacity: max(r.Capacity, 1), disabled: r.Disabled, poolID: r.PoolID, rules: r.rules()}
		res.read.version, res.read.maxSpan = res.version, res.maxSpan
		out[r.ID] = res
	}
	var missing []any
	for _, id := range ids {
		if out[id] == nil {
			out[id] = &resource{capacity: 1, absent: !create}
			if create {
				missing = append(missing, id, now)
			}
		}
	}
	if len(missing) > 0 {
		// A concurrent first writer makes this fail with a duplicate key; the transaction is
		// then run again and finds the row.
		values := strings.Repeat("(?, 0, 0, ?), ", len(missing)/2)
		if _, err := tx.ExecContext(ctx, sqlNewResources+values[:len(values)-2], missing...); err != nil {
			return nil, fmt.Errorf("create resources: %w", err)
		}
	}
	return out, nil
}

// findInTheWay finds the stored reservations that overlap each of rs at the write's time.
func (w *writeTx) findInTheWay(ctx context.Context, rs []*reservation.Reservation) (blockers, error) {
	return findInTheWay(ctx, w.tx, w.s.opts.MaxConflicts, w.resources, w.now, rs)
}

// findInTheWay finds the stored reservations, read through q, whose blocked windows overlap
// each of rs's at now, their resources being as resources says. One statement reads one range
// of the (resource_id, start_at) index per item, from the item's start minus its resource's
// longest span and buffers (Policy.Gap) to its end plus the buffers. Should an item meet so many that the statement's limit (maxConflicts+1 per
// item) cuts the answer short, a statement with a limit per item answers instead. When an
// item's resource has a capacity above 1, the statement has no limit: the peak concurrency
// over its window needs every reservation that overlaps it.
func findInTheWay(ctx context.Context, q sqlx.QueryerContext, maxConflicts int, resources map[string]*resource, now time.Time, rs []*reservation.Reservation) (blockers, error) {
	each := maxConflicts + 1
	unlimited := false
	for _, r := range rs {
		if resources[r.ResourceID].capacity > 1 {
			unlimited = true
		}
	}
	ranges := make([]string, len(rs))
	args := []any{now}
	for i, r := range rs {
		res := resources[r.ResourceID]
		g := res.policy().Gap()
		ranges[i] = "(resource_id = ? AND start_at >= ? AND start_at < ? AND end_at > ?)"
		args = append(args, r.ResourceID, r.Start.Add(-res.maxSpan-g), r.End.Add(g), r.Start.Add(-g))
	}
	limit := each * len(rs)
	query := sqlInTheWay + notLapsed("") + " AND (" + strings.Join(ranges, " OR ") + ") ORDER BY resource_id, start_at, id"
	if unlimited {
		limit = -1
	} else {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	found, err := selectRows(ctx, q, query, args...)
	if err != nil {
		return nil, fmt.Errorf("overlap check of %d reservations: %w", len(rs), err)
	}
	if len(found) == limit {
		query, args := overlapQuery(rs, now, each, true)
		var rows []overlapRow
		if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
			return nil, fmt.Errorf("overlap check of %d reservations: %w", len(rs), err)
		}
		return byItem(rs, rows), nil
	}
	out := make(blockers)
	for _, r := range rs {
		// Every one whose blocked window overlaps r's: the capacity is weighed with the call's
		// and the group's other items, by Store.inTheWay.
		p := resources[r.ResourceID].policy()
		p.Capacity = 1
		if in := reservation.InTheWay(r, p, found); len(in) > 0 {
			out[r] = in
		}
	}
	return out, nil
}

// create dates the new reservations rs at the write's time (with a hold, they expire hold
// later), moves their resources on by one version each, widens their longest span, and
// notes the changes to record, made by actor ("" records each reservation's user:
// Booking.Actor).
func (w *writeTx) create(rs []*reservation.Reservation, hold time.Duration, actor string) {
	for _, r := range rs {
		r.CreatedAt, r.UpdatedAt, r.ExpiresAt = w.now, w.now, time.Time{}
		if hold > 0 {
			r.ExpiresAt = reservation.Truncate(w.now.Add(hold))
		}
	}
	for _, r := range rs {
		res := w.resources[r.ResourceID]
		r.PoolID = res.poolID // the resource's pool, as it is when booked
		res.version++
		res.maxSpan = max(res.maxSpan, r.End.Sub(r.Start))
		w.changes = append(w.changes, change{op: reservation.OpCreate, r: r, resourceVersion: res.version, actor: actorOr(actor, r)})
	}
}

// policy is the admission policy of the resource id, locked by the write.
func (w *writeTx) policy(id string) reservation.Policy { return w.resources[id].policy() }

// change notes op, made to the stored reservation r by ref.Actor for ref.Reason (the call's
// Ref: an empty Actor records r's user), to record: r's version and its resource's move on
// by one.
func (w *writeTx) change(op reservation.Op, r *reservation.Reservation, ref reservation.Ref) {
	w.changeFrom(op, r, ref, "")
}

// changeFrom is change for a reservation that movedFrom names the resource of before this
// change, when it moved to another ("" for none): the change is recorded under r's resource
// and, for the listeners of that one, as a move away from it.
func (w *writeTx) changeFrom(op reservation.Op, r *reservation.Reservation, ref reservation.Ref, movedFrom string) {
	r.Version++
	r.UpdatedAt = w.now
	res := w.resources[r.ResourceID]
	res.version++
	w.changes = append(w.changes, change{op: op, r: r, resourceVersion: res.version, actor: actorOr(ref.Actor, r), reason: ref.Reason, movedFrom: movedFrom})
}

// actorOr is who a change of r is recorded as made by: actor, or with none (auth off), r's user.
func actorOr(actor string, r *reservation.Reservation) string {
	if actor == "" {
		return r.UserID
	}
	return actor
}

// flush runs the write's statements, then those that save the resources' new versions and
// the changes noted, in one round trip (or one each, as Options.OneStatementPerTrip says).
func (w *writeTx) flush(ctx context.Context, stmts ...stmt) error {
	recorded, err := record(w.resources, w.changes, w.now)
	if err != nil {
		return err
	}
	return w.s.exec(ctx, w.tx, append(stmts, recorded...)...)
}

// change is one write to record in reservation_changes and reservation_history: what was
// done, and who did it and why.
type change struct {
	op              reservation.Op
	r               *reservation.Reservation
	resourceVersion int64
	actor, reason   string
	movedFrom       string // the resource a move took r from; "" for any other change
}

// remember passes committed changes on to Taken.
func (s *Store) remember(changes []change) {
	if s.opts.Taken == nil || len(changes) == 0 {
		return
	}
	cs := make([]*reservation.Change, len(changes))
	for i, c := range changes {
		cs[i] = &reservation.Change{Op: c.op, Reservation: c.r, Actor: c.actor, Reason: c.reason, MovedFrom: c.movedFrom}
	}
	s.opts.Taken.Apply(cs...)
}

// record returns the statements that save the resources' new versions and the changes: in
// the feed (reservation_changes, until the feed's retention) and in the history
// (reservation_history, until the history's), both in the write's transaction and round trip.
func record(resources map[string]*resource, changes []change, now time.Time) ([]stmt, error) {
	// One statement for every resource the write changed (a pool call locks units it does not
	// book): a CASE per column, by id.
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(resources)) {
		if res := resources[id]; res.version != res.read.version || res.maxSpan != res.read.maxSpan {
			ids = append(ids, id)
		}
	}
	var stmts []stmt
	var version, span strings.Builder
	var vargs, sargs, idArgs []any
	for _, id := range ids {
		res := resources[id]
		version.WriteString(" WHEN ? THEN ?")
		span.WriteString(" WHEN ? THEN ?")
		vargs = append(vargs, id, res.version)
		sargs = append(sargs, id, res.maxSpan.Microseconds())
		idArgs = append(idArgs, id)
	}
	if len(ids) > 0 {
		update := "UPDATE resources SET version = CASE id" + version.String() + " END, max_span_us = CASE id" + span.String() +
			" END WHERE id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
		stmts = append(stmts, stmt{update, append(append(vargs, sargs...), idArgs...)})
	}
	feed, history := sqlRecordChanges, sqlRecordHistory
	fargs := make([]any, 0, 9*len(changes))
	hargs := make([]any, 0, 6*len(changes))
	for i, c := range changes {
		snap, err := snapshot(c.r)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			feed += ", "
			history += ", "
		}
		feed += "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
		fargs = append(fargs, int(c.op), c.r.ID, c.r.ResourceID, c.resourceVersion, snap, c.actor, c.reason, c.movedFrom, now)
		history += "(?, ?, ?, ?, ?, ?)"
		hargs = append(hargs, c.r.ID, int(c.op), snap, c.actor, c.reason, now)
	}
	if len(changes) == 0 {
		return stmts, nil
	}
	return append(stmts, stmt{feed, fargs}, stmt{history, hargs}), nil
}

// insertReservations returns the statement that inserts rs.
func insertReservations(rs []*reservation.Reservation) stmt {
	query := sqlInsert
	args := make([]any, 0, 13*len(rs))
	for i, r := range rs {
		if i > 0 {
			query += ", "
		}
		query += "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		w := toRow(r)
		args = append(args, w.args()...)
	}
	return stmt{query, args}
}

// stmt is one SQL statement and its arguments.
type stmt struct {
	query string
	args  []any
}

// exec runs a write's statements in order: together in one round trip, or one per round trip
// where Options.OneStatementPerTrip says so.
func (s *Store) exec(ctx context.Context, tx *sqlx.Tx, stmts ...stmt) error {
	if s.opts.OneStatementPerTrip {
		return execEach(ctx, tx, stmts...)
	}
	return execAll(ctx, tx, stmts...)
}

// execEach runs statements in order, one round trip each; the first that fails stops the rest.
func execEach(ctx context.Context, tx *sqlx.Tx, stmts ...stmt) error {
	for i, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return fmt.Errorf("write statement %d of %d: %w", i+1, len(stmts), err)
		}
	}
	return nil
}

// execAll runs statements in order, in one round trip; the first that fails stops the rest.
func execAll(ctx context.Context, tx *sqlx.Tx, stmts ...stmt) error {
	queries := make([]string, len(stmts))
	var args []any
	for i, st := range stmts {
		queries[i] = st.query
		args = append(args, st.args...)
	}
	if _, err := tx.ExecContext(ctx, strings.Join(queries, "; "), args...); err != nil {
		return fmt.Errorf("write %d statements: %w", len(stmts), err)
	}
	return nil
}
