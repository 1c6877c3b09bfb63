package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// columns are the reservations columns, in the order row scans them.
const columns = "id, user_id, resource_id, status, start_at, end_at, note, created_at, updated_at, version, expires_at, pool_id, series_id"

// row is a reservations row. Its JSON form is the snapshot stored with each change.
type row struct {
	ID         string     `db:"id" json:"id"`
	UserID     string     `db:"user_id" json:"user_id"`
	ResourceID string     `db:"resource_id" json:"resource_id"`
	Status     int        `db:"status" json:"status"`
	Start      time.Time  `db:"start_at" json:"start"`
	End        time.Time  `db:"end_at" json:"end"`
	Note       string     `db:"note" json:"note"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at" json:"updated_at"`
	Version    int64      `db:"version" json:"version"`
	ExpiresAt  *time.Time `db:"expires_at" json:"expires_at,omitempty"`
	PoolID     string     `db:"pool_id" json:"pool_id,omitempty"`
	SeriesID   string     `db:"series_id" json:"series_id,omitempty"`
}

func toRow(r *reservation.Reservation) row {
	w := row{r.ID, r.UserID, r.ResourceID, int(r.Status), r.Start, r.End, r.Note, r.CreatedAt, r.UpdatedAt, r.Version, nil, r.PoolID, r.SeriesID}
	if !r.ExpiresAt.IsZero() {
		w.ExpiresAt = &r.ExpiresAt
	}
	return w
}

func (w *row) reservation() *reservation.Reservation {
	r := &reservation.Reservation{
		ID: w.ID, UserID: w.UserID, ResourceID: w.ResourceID, Status: reservation.Status(w.Status),
		Start: w.Start.UTC(), End: w.End.UTC(), Note: w.Note,
		CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(), Version: w.Version, PoolID: w.PoolID, SeriesID: w.SeriesID,
	}
	if w.ExpiresAt != nil {
		r.ExpiresAt = w.ExpiresAt.UTC()
	}
	return r
}

func (w *row) args() []any {
	return []any{w.ID, w.UserID, w.ResourceID, w.Status, w.Start, w.End, w.Note, w.CreatedAt, w.UpdatedAt, w.Version, w.ExpiresAt, w.PoolID, w.SeriesID}
}

// notLapsed is the condition that leaves out holds lapsed at its argument, on the reservations
// columns as prefix names them ("" or an alias and a dot).
func notLapsed(prefix string) string {
	return "(" + prefix + "expires_at IS NULL OR " + prefix + "expires_at > ?)"
}

// selectRows runs a query for reservations rows.
func selectRows(ctx context.Context, q sqlx.QueryerContext, query string, args ...any) ([]*reservation.Reservation, error) {
	var rows []row
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, err
	}
	out := make([]*reservation.Reservation, len(rows))
	for i := range rows {
		out[i] = rows[i].reservation()
	}
	return out, nil
}

// getRow reads one reservation by id; suffix may add a locking clause.
func getRow(ctx context.Context, q sqlx.QueryerContext, id, suffix string) (*reservation.Reservation, error) {
	var w row
	err := sqlx.GetContext(ctx, q, &w, "SELECT "+columns+" FROM reservations WHERE id = ?"+suffix, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, reservation.NotFound(id)
	}
	if err != nil {
		return nil, err
	}
	return w.reservation(), nil
}

// overlapQuery is the statement that finds, for each of rs, up to limit stored reservations
// whose blocked windows may meet its own at now (lapsed holds left out; with holds false,
// every hold). Each range starts at the item's start minus its resource's longest span and
// buffers, and ends at the item's end plus the buffers, read from the resource's row, so it
// stays short however much history the resource has. Rows carry the item's index as "item",
// and the resource's policy (capacity and buffers) as the same statement read it.
func overlapQuery(rs []*reservation.Reservation, now time.Time, limit int, holds bool) (string, []any) {
	hold := " AND r.expires_at IS NULL"
	if holds {
		hold = " AND " + notLapsed("r.")
	}
	const gap = "(s.buffer_before_us + s.buffer_after_us)"
	parts := make([]string, len(rs))
	args := make([]any, 0, 9*len(rs))
	for i, r := range rs {
		parts[i] = "(SELECT ? AS item, " + prefixed("r.", columns) + ", s.capacity, s.buffer_before_us, s.buffer_after_us" +
			" FROM reservations r JOIN resources s ON s.id = r.resource_id" +
			" WHERE s.id = ? AND r.resource_id = ? AND r.start_at >= ? - INTERVAL (s.max_span_us + " + gap + ") MICROSECOND" +
			" AND r.start_at < ? + INTERVAL " + gap + " MICROSECOND AND r.end_at > ? - INTERVAL " + gap + " MICROSECOND" +
			hold + " ORDER BY r.start_at, r.id LIMIT ?)"
		args = append(args, i, r.ResourceID, r.ResourceID, r.Start, r.End, r.Start)
		if holds {
			args = append(args, now)
		}
		args = append(args, limit)
	}
	return strings.Join(parts, " UNION ALL "), args
}

// overlapRow is a row of overlapQuery.
type overlapRow struct {
	Item int `db:"item"`
	row
	policyRow
}

// byItem files the rows of overlapQuery under the items of rs they are in the way of.
func byItem(rs []*reservation.Reservation, found []overlapRow) blockers {
	out := make(blockers, len(found))
	for _, f := range found {
		out[rs[f.Item]] = append(out[rs[f.Item]], f.row.reservation())
	}
	return out
}

// findQuery builds the query for a filter, leaving out holds lapsed at now. On one resource
// from a start, nothing that starts before the start minus the resource's longest reservation
// can reach it: the resource's row, joined as a constant, bounds the index range so, however
// much history the resource has, in the same statement. Every value is a placeholder argument.
func findQuery(f reservation.Filter, now time.Time) (string, []any) {
	from := "reservations r"
	where := []string{notLapsed("r.")}
	args := []any{now}
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.ResourceID != "" {
		add("r.resource_id = ?", f.ResourceID)
		if !f.Start.IsZero() {
			// A resource without a row has no reservation: the join finds none.
			from += " JOIN resources s ON s.id = r.resource_id"
			add("s.id = ? AND r.start_at >= ? - INTERVAL s.max_span_us MICROSECOND", f.ResourceID, f.Start)
		}
	}
	if f.UserID != "" {
		add("r.user_id = ?", f.UserID)
	}
	if f.Status != reservation.StatusUnknown {
		add("r.status = ?", int(f.Status))
	}
	if !f.End.IsZero() {
		add("r.start_at < ?", f.End)
	}
	if !f.Start.IsZero() {
		add("r.end_at > ?", f.Start)
	}
	cmp, order := ">", "r.start_at, r.id"
	if f.Desc {
		cmp, order = "<", "r.start_at DESC, r.id DESC"
	}
	if c := f.After; c != nil {
		add(fmt.Sprintf("(r.start_at %[1]s ? OR (r.start_at = ? AND r.id %[1]s ?))", cmp), c.Start, c.Start, c.ID)
	}
	query := "SELECT " + prefixed("r.", columns) + " FROM " + from + " WHERE " + strings.Join(where, " AND ")
	query += " ORDER BY " + order
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	return query, args
}

// snapshot is the reservation as a change row stores it.
func snapshot(r *reservation.Reservation) ([]byte, error) {
	b, err := json.Marshal(toRow(r))
	if err != nil {
		return nil, fmt.Errorf("snapshot of reservation %s: %w", r.ID, err)
	}
	return b, nil
}

// prefixed qualifies each of a comma-separated list of columns with prefix.
func prefixed(prefix, cols string) string {
	return prefix + strings.ReplaceAll(cols, ", ", ", "+prefix)
}
