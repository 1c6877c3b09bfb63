package reservation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	_ "time/tzdata" // time zone names are checked the same on every host, with or without a zoneinfo
	"unicode/utf8"
)

// Resource is an entry of the catalogue: what reservations book. A resource that was never
// put is created by its first reservation (with the open catalogue) with the defaults below.
type Resource struct {
	ID     string
	PoolID string // the pool it belongs to (a room type, a parking level); "" for none
	// Capacity is how many reservations may overlap at any instant; 0 means 1.
	Capacity    int
	TimeZone    string // IANA name; "" means UTC
	DisplayName string
	Labels      map[string]string
	Disabled    bool  // takes no new reservations; those it has stay
	Version     int64 // 1 when created, bumped by every Put
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Rules
}

// Rules are a resource's buffers and booking rules; the zero value has none.
type Rules struct {
	// BufferBefore and BufferAfter widen the window a reservation blocks (turnaround): it
	// blocks [Start-BufferBefore, End+BufferAfter). The stored window is the booked one.
	BufferBefore, BufferAfter time.Duration
	// MinDuration and MaxDuration bound a reservation's length; 0 is no bound.
	MinDuration, MaxDuration time.Duration
	// MinNotice makes a start at least now plus it; MaxAdvance at most now plus it. 0 is no rule.
	// BLOCKED reservations are exempt from both (not from the bounds on length: an admin
	// takes a resource out of service for longer by disabling it, or by several windows).
	MinNotice, MaxAdvance time.Duration
}

// MaxRule bounds each of a resource's buffers and rules, as the service bounds a
// reservation's length by default.
const MaxRule = 366 * 24 * time.Hour

// ReasonRuleViolation is the reason of the ESTATE error of a reservation that breaks one of
// its resource's booking rules (Rules.Check).
const ReasonRuleViolation = "RULE_VIOLATION"

// The rules' names, as RULE_VIOLATION's metadata and the wire's fields name them.
const (
	RuleMinDuration = "min_duration"
	RuleMaxDuration = "max_duration"
	RuleMinNotice   = "min_notice"
	RuleMaxAdvance  = "max_advance"
)

// Check refuses r, item (its index in the call) of a write at now (the write's time, read
// under the resource's lock), when it breaks one of the rules: ESTATE with reason
// RULE_VIOLATION, whose metadata names the rule ("rule"), its value ("limit", a Go duration
// such as "15m0s"), the resource ("resource_id") and the item ("item"); a rule on the start
// names the instant it bounds the start by ("earliest_start" or "latest_start", RFC 3339).
// Each bound is inclusive: a reservation exactly min_duration long, or starting exactly
// min_notice from now, is admitted. BLOCKED reservations are exempt from notice and advance.
// The first rule broken, in the order of the fields, is the one named.
func (rules Rules) Check(item int, r *Reservation, now time.Time) error {
	d := r.End.Sub(r.Start)
	violation := func(rule string, limit time.Duration, format string, args ...any) *Error {
		e := Errorf(ESTATE, "resource %q: "+format, append([]any{r.ResourceID}, args...)...)
		e.Reason = ReasonRuleViolation
		e.Metadata = map[string]string{"rule": rule, "limit": limit.String(), "resource_id": r.ResourceID, "item": strconv.Itoa(item)}
		return e
	}
	starts := rules.Starts(now)
	switch {
	case rules.MinDuration > 0 && d < rules.MinDuration:
		return violation(RuleMinDuration, rules.MinDuration, "a reservation lasts at least %s (min_duration), got %s", rules.MinDuration, d)
	case rules.MaxDuration > 0 && d > rules.MaxDuration:
		return violation(RuleMaxDuration, rules.MaxDuration, "a reservation lasts at most %s (max_duration), got %s", rules.MaxDuration, d)
	case r.Status == StatusBlocked:
		return nil
	case !starts.Earliest.IsZero() && r.Start.Before(starts.Earliest):
		at := starts.Earliest
		e := violation(RuleMinNotice, rules.MinNotice, "a reservation starts at least %s from now (min_notice), at %s or later, got %s", rules.MinNotice, FormatTime(at), FormatTime(r.Start))
		e.Metadata["earliest_start"] = FormatTime(at)
		return e
	case !starts.Latest.IsZero() && r.Start.After(starts.Latest):
		at := starts.Latest
		e := violation(RuleMaxAdvance, rules.MaxAdvance, "a reservation starts at most %s from now (max_advance), at %s or earlier, got %s", rules.MaxAdvance, FormatTime(at), FormatTime(r.Start))
		e.Metadata["latest_start"] = FormatTime(at)
		return e
	}
	return nil
}

// StartRange is the instants a reservation may start at: from Earliest to Latest, each
// inclusive; a zero bound is none.
type StartRange struct{ Earliest, Latest time.Time }

// Starts returns the starts the rules admit at now for a reservation that is not BLOCKED
// (BLOCKED ones are exempt): from now plus MinNotice to now plus MaxAdvance. Check refuses a
// start outside them, and FreeSlots (SlotQuery.Bookable) answers only inside them, so that
// both read the notice and the advance here.
func (rules Rules) Starts(now time.Time) StartRange {
	var s StartRange
	if rules.MinNotice > 0 {
		s.Earliest = now.Add(rules.MinNotice)
	}
	if rules.MaxAdvance > 0 {
		s.Latest = now.Add(rules.MaxAdvance)
	}
	return s
}

// validate names each rule that is wrong under prefix: negative, above MaxRule, or a
// max_duration below the min_duration.
func (rules Rules) validate(v *Violations, prefix string) {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"buffer_before", rules.BufferBefore}, {"buffer_after", rules.BufferAfter},
		{RuleMinDuration, rules.MinDuration}, {RuleMaxDuration, rules.MaxDuration},
		{RuleMinNotice, rules.MinNotice}, {RuleMaxAdvance, rules.MaxAdvance},
	} {
		if f.d < 0 || f.d > MaxRule {
			v.Add(prefix+f.name, fmt.Sprintf("must be between 0 (none) and %s, got %s", MaxRule, f.d))
		}
	}
	if rules.MinDuration > 0 && rules.MaxDuration > 0 && rules.MaxDuration < rules.MinDuration {
		v.Add(prefix+RuleMaxDuration, fmt.Sprintf("must not be below min_duration (%s), got %s", rules.MinDuration, rules.MaxDuration))
	}
}

// Limits of a resource's descriptive fields.
const (
	MaxCapacity       = 1_000_000
	MaxDisplayNameLen = 256 // bytes
	MaxLabels         = 64
	MaxLabelLen       = 256 // bytes, for each key and each value
)

// Normalize applies the defaults: capacity 1, time zone UTC; the rules are kept to the
// microsecond, as stored.
func (r *Resource) Normalize() {
	for _, d := range []*time.Duration{&r.BufferBefore, &r.BufferAfter, &r.MinDuration, &r.MaxDuration, &r.MinNotice, &r.MaxAdvance} {
		*d = d.Truncate(time.Microsecond)
	}
	if r.Capacity == 0 {
		r.Capacity = 1
	}
	if r.TimeZone == "" {
		r.TimeZone = "UTC"
	}
}

// Validate checks a resource to put (before Normalize) and names every field that is wrong,
// each under prefix ("resource." on the wire).
func (r *Resource) Validate(prefix string) error {
	var v Violations
	v.ID(prefix+"id", r.ID)
	if r.PoolID != "" {
		v.ID(prefix+"pool_id", r.PoolID)
	}
	if r.Capacity < 0 || r.Capacity > MaxCapacity {
		v.Add(prefix+"capacity", fmt.Sprintf("must be between 0 (meaning 1) and %d, got %d", MaxCapacity, r.Capacity))
	}
	if r.TimeZone != "" {
		if _, err := time.LoadLocation(r.TimeZone); err != nil || r.TimeZone == "Local" {
			v.Add(prefix+"time_zone", fmt.Sprintf("must be an IANA time zone name, got %q", clipText(r.TimeZone)))
		}
	}
	if len(r.DisplayName) > MaxDisplayNameLen {
		v.Add(prefix+"display_name", fmt.Sprintf("must be at most %d bytes, got %d", MaxDisplayNameLen, len(r.DisplayName)))
	} else {
		v.Note(prefix+"display_name", r.DisplayName)
	}
	if len(r.Labels) > MaxLabels {
		v.Add(prefix+"labels", fmt.Sprintf("at most %d labels, got %d", MaxLabels, len(r.Labels)))
	}
	// In key order, so that the label named is the same on every call (a map's order is not).
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		val := r.Labels[k]
		if k == "" || len(k) > MaxLabelLen || len(val) > MaxLabelLen || !utf8.ValidString(k) || !utf8.ValidString(val) {
			v.Add(prefix+"labels", fmt.Sprintf("keys must be 1 to %d bytes and values at most %d, of UTF-8, got key %q", MaxLabelLen, MaxLabelLen, clipText(k)))
			break
		}
	}
	r.Rules.validate(&v, prefix)
	return v.Err()
}

func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ResourceFilter selects resources of the catalogue, in id order.
type ResourceFilter struct {
	PoolID string // "" for every resource
	After  string // keyset: the ids after this one
	Limit  int    // at most this many; 0 means no limit
}

// Catalogue keeps the resources.
type Catalogue interface {
	// PutResource creates or replaces a resource. With expectedVersion not zero the resource
	// must be at that version (a missing one is at 0): EABORTED otherwise. Lowering the
	// capacity below the reservations booked at some instant to come is ESTATE, naming it.
	PutResource(ctx context.Context, r *Resource, expectedVersion int64) (*Resource, error)
	// GetResource returns a resource; ENOTFOUND when there is none.
	GetResource(ctx context.Context, id string) (*Resource, error)
	// ListResources returns the resources the filter selects, by id.
	ListResources(ctx context.Context, f ResourceFilter) ([]*Resource, error)
}

// Reasons of the errors of the catalogue, as ErrorInfo reasons on the wire.
const (
	ReasonResourceDisabled = "RESOURCE_DISABLED" // ESTATE: a Reserve of a disabled resource
	ReasonPoolFull         = "POOL_FULL"         // ESTATE: no unit of the pool is free for the window
)

// PoolFull is the ESTATE error of item (its index in the call) of a Reserve, which asks r's
// pool for a unit: no enabled unit of the pool is free for r's window. Its metadata names the
// pool, the window and the item.
func PoolFull(item int, r *Reservation) *Error {
	e := Errorf(ESTATE, "pool %q has no free unit from %s to %s", r.PoolID, FormatTime(r.Start), FormatTime(r.End))
	e.Reason = ReasonPoolFull
	e.Metadata = map[string]string{"pool_id": r.PoolID, "start": FormatTime(r.Start), "end": FormatTime(r.End), "item": strconv.Itoa(item)}
	return e
}

// ResourceDisabled is the ESTATE error of item (its index in the call) of a Reserve, which
// books r's resource, disabled: it takes no new reservations. field is the request field
// that named the resource. Its metadata names the resource and the item, as PoolFull's does.
func ResourceDisabled(item int, field string, r *Reservation) *Error {
	e := Errorf(ESTATE, "%s: resource %q is disabled", field, r.ResourceID)
	e.Reason = ReasonResourceDisabled
	e.Metadata = map[string]string{"resource_id": r.ResourceID, "item": strconv.Itoa(item)}
	return e
}

// ResourceNotFound is the ENOTFOUND error for the resource id.
func ResourceNotFound(id string) error { return Errorf(ENOTFOUND, "resource %q not found", id) }
