package reservation

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// SeriesMode says what ReserveSeries does with an occurrence that is not free.
type SeriesMode int

// The modes, numbered as on the wire.
const (
	SeriesAllOrNothing  SeriesMode = 1 // every occurrence is made, or none (also for 0)
	SeriesSkipConflicts SeriesMode = 2 // the free occurrences are made; the others are skipped
)

// DefaultSeriesMax bounds the occurrences of one series (reservationd's --series-max).
const DefaultSeriesMax = 500

// Series is one ReserveSeries call: First repeated as Rule says, in TimeZone.
type Series struct {
	// First is the first occurrence: user, resource or pool, status, note and window.
	First *Reservation
	// Rule is an RFC 5545 RRULE (the subset ParseRule reads).
	Rule string
	// TimeZone is the IANA zone whose wall-clock time the occurrences keep across DST.
	TimeZone string
	// Exdates are occurrence starts to leave out.
	Exdates []time.Time
	Mode    SeriesMode
	// RequestID and Hold are as in Booking.
	RequestID string
	Hold      time.Duration
	// Actor is who makes the series, as History records it ("" records each reservation's user).
	Actor string
	// Max bounds the occurrences (0: DefaultSeriesMax); more is EINVALID on rrule.
	Max int

	// expanded is the last expansion of the rule, kept so that a request expands it once
	// though the server checks it and the store books it: copies of s share it. It is
	// replaced, never changed, and used only while the inputs it was made from are unchanged.
	expanded *expansion
}

// expansion is the starts a Series' rule made, and the inputs it made them from.
type expansion struct {
	rule, zone string
	start      time.Time
	exdates    []time.Time
	max        int
	starts     []time.Time
	err        error
}

// of reports whether e was made from the inputs of s.
func (e *expansion) of(s *Series, start time.Time, exdates []time.Time) bool {
	return e != nil && e.rule == s.Rule && e.zone == s.TimeZone && e.start.Equal(start) &&
		e.max == s.Max && slices.EqualFunc(e.exdates, exdates, time.Time.Equal)
}

// Occurrences expands s: a copy of First for each occurrence, with its window, in order of
// start. Each lasts as long as First does in absolute time (a 1-hour meeting is 1 hour on the
// night clocks change; an overnight booking then ends an hour earlier or later by the
// clock). An empty TimeZone is UTC. A rule, zone or count that is wrong is EINVALID naming
// rrule or time_zone; so is a rule that makes no further occurrence (ErrNoFurther). The rule
// is expanded once for s and its copies while Rule, TimeZone, First.Start, Exdates and Max
// stay as they were.
func (s *Series) Occurrences() ([]*Reservation, error) {
	if s.First != nil {
		if e := s.expanded; e.of(s, Truncate(s.First.Start), truncated(s.Exdates)) {
			return s.occurrences(e.starts, e.err)
		}
	}
	var v Violations
	rule, err := ParseRule(s.Rule)
	if err != nil {
		v.Add("rrule", err.Error())
	}
	loc := time.UTC
	if s.TimeZone != "" {
		if loc, err = time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "Local" {
			v.Add("time_zone", fmt.Sprintf("must be an IANA time zone name such as Europe/Paris, got %q", clipText(s.TimeZone)))
		}
	}
	if s.First == nil {
		v.Add("first", "is required")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	exdates := truncated(s.Exdates)
	start := Truncate(s.First.Start)
	starts, err := rule.Expand(start, loc, exdates, OrDefault(s.Max, DefaultSeriesMax))
	if err != nil {
		v.Add("rrule", err.Error())
		err = v.Err()
	}
	s.expanded = &expansion{rule: s.Rule, zone: s.TimeZone, start: start, exdates: exdates, max: s.Max, starts: starts, err: err}
	return s.occurrences(starts, err)
}

// truncated is ts as stored (exdates are compared with starts as stored).
func truncated(ts []time.Time) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		out[i] = Truncate(t)
	}
	return out
}

// occurrences is a copy of s.First at each of starts, or the expansion's error.
func (s *Series) occurrences(starts []time.Time, err error) ([]*Reservation, error) {
	if err != nil {
		return nil, err
	}
	var v Violations
	if len(starts) == 0 {
		v.Add("exdates", "leave out every occurrence of the rule")
		return nil, v.Err()
	}
	length := s.First.End.Sub(s.First.Start)
	out := make([]*Reservation, len(starts))
	for i, t := range starts {
		r := *s.First
		r.Start, r.End = Truncate(t), Truncate(t.Add(length))
		out[i] = &r
	}
	return out, nil
}

// SeriesOutcome is what ReserveSeries made: the series id, the reservations in order of start,
// and, in SeriesSkipConflicts mode, the occurrences skipped.
type SeriesOutcome struct {
	ID           string
	Reservations []*Reservation
	Skipped      []SkippedOccurrence
}

// SkippedOccurrence is an occurrence SeriesSkipConflicts left out: its window, the
// reservations in its way (none when a rule or a full pool refused it) and why.
type SkippedOccurrence struct {
	Start, End  time.Time
	Conflicting []string // ids
	Reason      string
}

// SeriesBooker makes and cancels series; repo.Store implements it.
type SeriesBooker interface {
	// ReserveSeries expands s and makes its occurrences as s.Mode says.
	ReserveSeries(ctx context.Context, s Series) (*SeriesOutcome, error)
	// CancelSeries cancels the occurrences of series id that start at or after from (every one
	// when from is zero) and returns them as they were removed. ref.ID is ignored; ref.Owner,
	// Actor and Reason apply to each occurrence.
	CancelSeries(ctx context.Context, id string, from time.Time, ref Ref) ([]*Reservation, error)
}
