package repo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"reservation"
)

// Series: ReserveSeries expands the rule (reservation.Series.Occurrences) and books the
// occurrences through the same path as Reserve (the write pipeline: Store.run), so that pools, holds, request ids
// and admission apply to them as to a batch. ALL_OR_NOTHING is one booking of every
// occurrence. SKIP_CONFLICTS books in rounds: each round tries the occurrences still in as
// one booking; a refusal names the items in the way (the conflicts, a full pool, a disabled
// resource), which leave, and the next round tries the rest. Every round drops at least one
// occurrence, so there are at most as many rounds as occurrences, and each refused round
// writes nothing. Before the first round, the occurrences that committed reservations are in
// the way of, read without locks, leave at once (takenAlready): a refusal names at most
// MaxConflicts, so a series over a busy resource would otherwise take many rounds. With a
// request id, the series' outcome (its id, what it made and what it skipped) is saved in the
// transaction of the round that writes, so a retry, concurrent or later, gets it and writes
// nothing.

var _ reservation.SeriesBooker = (*Store)(nil)

// Reasons of SkippedOccurrence.
const (
	SkipConflict = "RESERVATION_CONFLICT" // reservations are in the way: Conflicting names them
	// SkipOccurrence: another occurrence of the same series is in the way (on a resource of
	// capacity 1, occurrences that overlap each other).
	SkipOccurrence = "OCCURRENCE_CONFLICT"
)

// ReserveSeries expands s (once per request: the series keeps its expansion) and makes its
// occurrences as s.Mode says, in order of start.
func (s *Store) ReserveSeries(ctx context.Context, series reservation.Series) (*reservation.SeriesOutcome, error) {
	occ, err := series.Occurrences()
	if err != nil {
		return nil, err
	}
	mode := series.Mode
	if mode == 0 {
		mode = reservation.SeriesAllOrNothing
	}
	if mode != reservation.SeriesAllOrNothing && mode != reservation.SeriesSkipConflicts {
		return nil, (&reservation.Violations{{Field: "mode", Description: fmt.Sprintf("unknown series mode %d", int(mode))}}).Err()
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new series id: %w", err)
	}
	for _, r := range occ {
		r.SeriesID = id.String()
	}
	var req *request
	if series.RequestID != "" {
		req = &request{id: series.RequestID, fingerprint: seriesFingerprint(occ, series.Hold, mode), seriesID: id.String(),
			rounds: mode == reservation.SeriesSkipConflicts}
	}
	b := reservation.Booking{Reservations: occ, Hold: series.Hold, RequestID: series.RequestID, Actor: series.Actor}
	if mode == reservation.SeriesAllOrNothing {
		made, err := s.run(ctx, b, req)
		if err != nil {
			return nil, err
		}
		if req != nil && req.out != nil {
			return fromOutcome(req.out), nil
		}
		return &reservation.SeriesOutcome{ID: id.String(), Reservations: made}, nil
	}
	return s.skipConflicts(ctx, b, id.String(), req)
}

// seriesFingerprint identifies a series' parameters, after expansion: its occurrences and
// hold as a booking's, and its mode, so that a retry in the other mode, or a batch that
// reuses the request id, is told apart.
func seriesFingerprint(occ []*reservation.Reservation, hold time.Duration, mode reservation.SeriesMode) [32]byte {
	b := reservation.Booking{Reservations: occ, Hold: hold}
	sum := b.Fingerprint()
	return sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte("series\x00"), sum[:]...), uint64(mode)))
}

// fromOutcome is the series outcome a retry gets: the first call's.
func fromOutcome(o *outcome) *reservation.SeriesOutcome {
	return &reservation.SeriesOutcome{ID: o.SeriesID, Reservations: o.Reservations, Skipped: o.Skipped}
}

// skipConflicts books b's occurrences (of series id) in rounds, leaving out those refused.
func (s *Store) skipConflicts(ctx context.Context, b reservation.Booking, id string, req *request) (*reservation.SeriesOutcome, error) {
	if req != nil {
		// A retry of a series that is done needs no round.
		if done, err := s.lookup(ctx, s.db, req, s.now()); err != nil {
			return nil, err
		} else if done {
			return fromOutcome(req.out), nil
		}
	}
	occ := b.Reservations
	in := make([]int, len(occ)) // the occurrences still tried, by index in occ
	for i := range in {
		in[i] = i
	}
	skipped := map[int]*reservation.SkippedOccurrence{}
	// The occurrences in the way of others, by index: their ids are known once written.
	inWayOf := map[int][]int{}
	taken, err := s.takenAlready(ctx, occ)
	if err != nil {
		return nil, err
	}
	for i, ids := range taken {
		skipped[i] = &reservation.SkippedOccurrence{Start: occ[i].Start, End: occ[i].End, Conflicting: ids, Reason: SkipConflict}
		in = slices.DeleteFunc(in, func(j int) bool { return j == i })
	}
	for len(in) > 0 {
		round := b
		round.Reservations = make([]*reservation.Reservation, len(in))
		for k, i := range in {
			round.Reservations[k] = occ[i]
		}
		if req != nil {
			req.skipped = func(made []*reservation.Reservation) []reservation.SkippedOccurrence {
				return skippedList(occ, skipped, inWayOf, made)
			}
		}
		made, err := s.run(ctx, round, req)
		if err == nil {
			if req != nil && req.out != nil {
				return fromOutcome(req.out), nil // a concurrent call with the request id was first
			}
			return &reservation.SeriesOutcome{ID: id, Reservations: made, Skipped: skippedList(occ, skipped, inWayOf, made)}, nil
		}
		out, err := refused(err, in, occ, id)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			sk := skipped[o.item]
			if sk == nil {
				sk = &reservation.SkippedOccurrence{Start: occ[o.item].Start, End: occ[o.item].End, Reason: o.reason}
				skipped[o.item] = sk
			}
			for _, c := range o.conflicting {
				if !slices.Contains(sk.Conflicting, c) {
					sk.Conflicting = append(sk.Conflicting, c)
				}
			}
			if o.occurrence >= 0 && !slices.Contains(inWayOf[o.item], o.occurrence) {
				inWayOf[o.item] = append(inWayOf[o.item], o.occurrence)
			}
			in = slices.DeleteFunc(in, func(i int) bool { return i == o.item })
		}
	}
	// Every occurrence was refused: nothing to write but the outcome.
	o := &reservation.SeriesOutcome{ID: id, Skipped: skippedList(occ, skipped, inWayOf, nil)}
	if req != nil {
		req.skipped = func([]*reservation.Reservation) []reservation.SkippedOccurrence { return o.Skipped }
		err := saveOutcome(ctx, s.db, req, req.made(nil), s.now())
		if isDupKey(err) {
			// A concurrent call with the request id saved first: its outcome is the answer.
			if done, err := s.lookup(ctx, s.db, req, s.now()); err != nil || !done {
				return nil, fmt.Errorf("outcome of request %q: %w", req.id, errors.Join(err, errors.New("saved by another call, then gone")))
			}
			return fromOutcome(req.out), nil
		}
		if err != nil {
			return nil, classify(err)
		}
	}
	return o, nil
}

// takenAlready reads, without locks, the committed reservations in the way of occ's direct
// occurrences (by index, their ids), which SKIP_CONFLICTS leaves out before its first round:
// the rounds would find them a refusal's MaxConflicts at a time. As the precheck's, such a
// refusal holds: what the read finds was committed in the way at an instant of the call, and
// it may find fewer than are stored (its limit per occurrence), never more. Holds, which may
// lapse while the call waits, and pool occurrences are left to the rounds.
func (s *Store) takenAlready(ctx context.Context, occ []*reservation.Reservation) (map[int][]string, error) {
	direct := slices.DeleteFunc(slices.Clone(occ), func(r *reservation.Reservation) bool { return r.ResourceID == "" })
	if len(direct) == 0 {
		return nil, nil
	}
	query, args, err := sqlx.In(sqlSeriesResources, resourcesOf(direct))
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID      string `db:"id"`
		MaxSpan int64  `db:"max_span_us"`
		policyRow
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("resources of a series: %w", err))
	}
	resources := map[string]*resource{}
	for _, r := range rows {
		p := r.policy()
		resources[r.ID] = &resource{maxSpan: time.Duration(r.MaxSpan) * time.Microsecond, capacity: p.Capacity,
			rules: reservation.Rules{BufferBefore: p.BufferBefore, BufferAfter: p.BufferAfter}}
	}
	// A resource without a row has no reservation.
	direct = slices.DeleteFunc(direct, func(r *reservation.Reservation) bool { return resources[r.ResourceID] == nil })
	if len(direct) == 0 {
		return nil, nil
	}
	stored, err := findInTheWay(ctx, s.db, s.opts.MaxConflicts, resources, s.now(), direct)
	if err != nil {
		return nil, classify(err)
	}
	at := make(map[*reservation.Reservation]int, len(occ))
	for i, r := range occ {
		at[r] = i
	}
	out := map[int][]string{}
	for _, r := range direct {
		held := slices.DeleteFunc(stored[r], func(h *reservation.Reservation) bool { return !h.ExpiresAt.IsZero() })
		for _, e := range reservation.InTheWay(r, resources[r.ResourceID].policy(), held) {
			out[at[r]] = append(out[at[r]], e.ID)
		}
	}
	return out, nil
}

// skip is an occurrence a round's refusal leaves out: its index in the series, why, what
// stored reservations are in its way, and the occurrence in its way (-1 for none).
type skip struct {
	item        int
	reason      string
	conflicting []string
	occurrence  int
}

// refused reads the refusal err of a round that tried the occurrences in (indexes in occ, of
// series id) and returns those it leaves out; an error that names none is returned as is.
// Conflicts with stored reservations go first: only when every conflict is between
// occurrences of the series are those left out, the later of each pair, for an earlier
// occurrence may be left out itself and so free the way.
func refused(err error, in []int, occ []*reservation.Reservation, id string) ([]skip, error) {
	var e *reservation.Error
	if !errors.As(err, &e) {
		return nil, err
	}
	itemOf := func(k int) (int, bool) {
		if k < 0 || k >= len(in) {
			return 0, false
		}
		return in[k], true
	}
	switch {
	case e.Code == reservation.ECONFLICT:
		var out, between []skip
		for _, c := range e.Conflicts {
			i, ok := itemOf(c.Index)
			if !ok || c.Existing == nil {
				continue
			}
			if c.Existing.SeriesID == id {
				// An earlier occurrence of the call: the starts of a series differ.
				j := slices.IndexFunc(occ, func(r *reservation.Reservation) bool { return r.Start.Equal(c.Existing.Start) })
				between = append(between, skip{item: i, reason: SkipOccurrence, occurrence: j})
				continue
			}
			out = append(out, skip{item: i, reason: SkipConflict, conflicting: []string{c.Existing.ID}, occurrence: -1})
		}
		if len(out) == 0 {
			out = between
		}
		if len(out) > 0 {
			return out, nil
		}
	case e.Reason == reservation.ReasonResourceDisabled:
		// Every occurrence on the resource is refused alike: they all leave at once.
		var out []skip
		for _, i := range in {
			if occ[i].ResourceID == e.Metadata["resource_id"] {
				out = append(out, skip{item: i, reason: e.Reason, occurrence: -1})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	case e.Metadata["item"] != "":
		// POOL_FULL, and any refusal of one item that names it.
		k, convErr := strconv.Atoi(e.Metadata["item"])
		if i, ok := itemOf(k); convErr == nil && ok {
			reason := e.Reason
			if reason == "" {
				reason = strings.ToUpper(e.Code)
			}
			return []skip{{item: i, reason: reason, occurrence: -1}}, nil
		}
	}
	return nil, err
}

// skippedList is the occurrences skipped, in order of start, each naming the occurrences in
// its way by the ids they were written with (made; none when they were not written).
func skippedList(occ []*reservation.Reservation, skipped map[int]*reservation.SkippedOccurrence, inWayOf map[int][]int, made []*reservation.Reservation) []reservation.SkippedOccurrence {
	var out []reservation.SkippedOccurrence
	for i := range occ {
		sk := skipped[i]
		if sk == nil {
			continue
		}
		o := *sk
		o.Conflicting = slices.Clone(sk.Conflicting)
		for _, j := range inWayOf[i] {
			if j < 0 {
				continue
			}
			for _, m := range made {
				if m.Start.Equal(occ[j].Start) && !slices.Contains(o.Conflicting, m.ID) {
					o.Conflicting = append(o.Conflicting, m.ID)
				}
			}
		}
		out = append(out, o)
	}
	return out
}

// sqlSeriesResources reads, without locks, what findInTheWay needs of a series' resources.
const sqlSeriesResources = "SELECT id, max_span_us, capacity, buffer_before_us, buffer_after_us FROM resources WHERE id IN (?)"

// sqlSeriesOccurrences reads the occurrences of a series from a start, not lapsed holds, by
// the (series_id, start_at) index.
const sqlSeriesOccurrences = "SELECT " + columns + " FROM reservations WHERE series_id = ? AND start_at >= ? AND " +
	"(expires_at IS NULL OR expires_at > ?) ORDER BY start_at, id"

// cancelTries bounds how often CancelSeries locks its resources again because an occurrence
// moved to another resource between its read and its locks.
const cancelTries = 3

// CancelSeries cancels the occurrences of series id that start at or after from (every one
// when from is zero), in one transaction that locks each of their resources, and returns them
// as they were removed, in order of start. With ref.Owner, only that user's occurrences are
// found; none found is ENOTFOUND naming the series.
func (s *Store) CancelSeries(ctx context.Context, id string, from time.Time, ref reservation.Ref) ([]*reservation.Reservation, error) {
	notFound := reservation.Errorf(reservation.ENOTFOUND, "series %q not found", id)
	if from.IsZero() {
		from = time.Date(1000, time.January, 1, 0, 0, 0, 0, time.UTC) // before any reservation that can be stored
	} else {
		notFound = reservation.Errorf(reservation.ENOTFOUND, "series %q has no reservation from %s", id, reservation.FormatTime(from))
	}
	from = reservation.Truncate(from)
	find := func(q sqlx.QueryerContext, suffix string, now time.Time) ([]*reservation.Reservation, error) {
		rs, err := selectRows(ctx, q, sqlSeriesOccurrences+suffix, id, from, now)
		if err != nil {
			return nil, classify(fmt.Errorf("occurrences of series %s: %w", id, err))
		}
		return slices.DeleteFunc(rs, func(r *reservation.Reservation) bool { return !reservation.Owns(ref.Owner, r.UserID) }), nil
	}
	for try := 0; try < cancelTries; try++ {
		rs, err := find(s.db, "", s.now())
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			return nil, notFound
		}
		keys := resourcesOf(rs)
		var out []*reservation.Reservation
		err = s.write(ctx, keys, func(w *writeTx) error {
			rs, err := find(w.tx, " FOR UPDATE", w.now)
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				return notFound
			}
			for _, r := range rs {
				if !slices.Contains(keys, r.ResourceID) {
					return errSeriesMoved
				}
			}
			ids := make([]any, len(rs))
			for i, r := range rs {
				w.change(reservation.OpDelete, r, ref)
				ids[i] = r.ID
			}
			out = rs
			return w.flush(ctx, stmt{"DELETE FROM reservations WHERE id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")", ids})
		})
		if errors.Is(err, errSeriesMoved) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, reservation.Errorf(reservation.EABORTED, "the occurrences of series %s kept moving to other resources while it was cancelled", id)
}

// errSeriesMoved says an occurrence moved to a resource the cancel did not lock: it locks
// again.
var errSeriesMoved = errors.New("an occurrence of the series moved to another resource")
