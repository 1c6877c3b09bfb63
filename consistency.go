package reservation

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Consistency is how fresh a read's answer must be (docs/consistency.md).
type Consistency int

// The consistencies, numbered as on the wire.
const (
	// ConsistencyStrong (and the zero value): the database answers.
	ConsistencyStrong Consistency = 1
	// ConsistencyReadYourWrites: the writes a token names are seen.
	ConsistencyReadYourWrites Consistency = 2
	// ConsistencyBounded: the view is no older than a bound.
	ConsistencyBounded Consistency = 3
)

// ReadOptions say how fresh a read's answer must be. The zero value is STRONG.
type ReadOptions struct {
	Consistency Consistency
	// Token names the writes a READ_YOUR_WRITES read must see.
	Token ConsistencyToken
	// MaxStaleness bounds the age of the view a BOUNDED read is answered from.
	MaxStaleness time.Duration
}

// Memory reports whether the options allow an answer from a replica's read index at all.
func (o ReadOptions) Memory() bool {
	switch o.Consistency {
	case ConsistencyReadYourWrites:
		return !o.Token.Empty()
	case ConsistencyBounded:
		return o.MaxStaleness > 0
	}
	return false
}

// ReadPosition is the feed position a read's answer reflects.
type ReadPosition struct {
	// Seq is the newest feed seq the index had applied; 0 for an answer of the database.
	Seq uint64
	// AsOf: every write committed before it, by the answering replica's clock, is seen.
	AsOf time.Time
	// FromMemory says that the replica's read index answered.
	FromMemory bool
}

// String is the position as the x-reservation-read-position header carries it.
func (p ReadPosition) String() string {
	return fmt.Sprintf("seq=%d;as_of=%s;from_memory=%t", p.Seq, FormatTime(p.AsOf), p.FromMemory)
}

// Written is one write a token names: a reservation (or a resource of the catalogue) at
// Version, the version the write left it at (a cancel's too: the version it was removed at).
type Written struct {
	ID      string
	Version int64
}

// ConsistencyToken names what a write produced: a view that holds each at its version or
// later holds the write, and, since the feed is applied in seq order, all that came before it.
type ConsistencyToken struct {
	Reservations []Written
	Resources    []Written // catalogue versions
}

// Empty reports whether the token names nothing.
func (t ConsistencyToken) Empty() bool { return len(t.Reservations) == 0 && len(t.Resources) == 0 }

// TokenOf is the token of a write that left rs and resources as they are.
func TokenOf(rs []*Reservation, resources ...*Resource) ConsistencyToken {
	var t ConsistencyToken
	for _, r := range rs {
		t.Reservations = append(t.Reservations, Written{r.ID, r.Version})
	}
	for _, r := range resources {
		t.Resources = append(t.Resources, Written{r.ID, r.Version})
	}
	return t
}

// Merge adds what o names to t.
func (t ConsistencyToken) Merge(o ConsistencyToken) ConsistencyToken {
	t.Reservations = append(t.Reservations, o.Reservations...)
	t.Resources = append(t.Resources, o.Resources...)
	return t
}

// tokenVersion starts every token's opaque form, so that the form can change later.
const tokenVersion = "t1."

// MaxTokenEntries bounds what one token (or the tokens of one read) names: a series of
// DefaultSeriesMax occurrences fits.
const MaxTokenEntries = 2000

// String is the token's opaque form: versioned, URL-safe base64 of the reservations (UUIDs as
// 16 bytes) and resources with their versions. "" for an empty token.
func (t ConsistencyToken) String() string {
	if t.Empty() {
		return ""
	}
	b := binary.AppendUvarint(nil, uint64(len(t.Reservations)))
	for _, w := range t.Reservations {
		u, err := uuid.Parse(w.ID)
		if err != nil || len(w.ID) != 36 { // every reservation id is a UUID; keep the rest as text
			b = append(b, 0)
			b = binary.AppendUvarint(b, uint64(len(w.ID)))
			b = append(b, w.ID...)
		} else {
			b = append(b, 1)
			b = append(b, u[:]...)
		}
		b = binary.AppendUvarint(b, uint64(w.Version))
	}
	b = binary.AppendUvarint(b, uint64(len(t.Resources)))
	for _, w := range t.Resources {
		b = binary.AppendUvarint(b, uint64(len(w.ID)))
		b = append(b, w.ID...)
		b = binary.AppendUvarint(b, uint64(w.Version))
	}
	return tokenVersion + base64.RawURLEncoding.EncodeToString(b)
}

// ParseConsistencyToken reads tokens' opaque forms: one, or several joined by commas (a read
// that must see several writes). It fails on anything this service did not give out.
func ParseConsistencyToken(s string) (ConsistencyToken, error) {
	var t ConsistencyToken
	for part := range strings.SplitSeq(s, ",") {
		one, err := parseToken(strings.TrimSpace(part))
		if err != nil {
			return ConsistencyToken{}, err
		}
		t = t.Merge(one)
		if len(t.Reservations)+len(t.Resources) > MaxTokenEntries {
			return ConsistencyToken{}, fmt.Errorf("names more than %d writes", MaxTokenEntries)
		}
	}
	return t, nil
}

func parseToken(s string) (ConsistencyToken, error) {
	bad := func(why string) (ConsistencyToken, error) {
		return ConsistencyToken{}, fmt.Errorf("not a consistency token this service gave out (%s)", why)
	}
	rest, ok := strings.CutPrefix(s, tokenVersion)
	if !ok {
		return bad("unknown form")
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return bad("not base64")
	}
	r := tokenReader{b: b}
	var t ConsistencyToken
	n := r.count()
	for i := 0; i < n && r.err == nil; i++ {
		var id string
		switch r.byte() {
		case 0:
			id = r.text(MaxIDLen)
		case 1:
			var u uuid.UUID
			copy(u[:], r.take(16))
			id = u.String()
		default:
			r.err = fmt.Errorf("bad id kind")
		}
		t.Reservations = append(t.Reservations, Written{id, r.version()})
	}
	n = r.count()
	for i := 0; i < n && r.err == nil; i++ {
		id := r.text(MaxIDLen)
		t.Resources = append(t.Resources, Written{id, r.version()})
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("trailing bytes")
	}
	if r.err != nil {
		return bad(r.err.Error())
	}
	if t.Empty() {
		return bad("names no write")
	}
	return t, nil
}

// tokenReader reads a token's bytes, remembering the first failure.
type tokenReader struct {
	b   []byte
	err error
}

func (r *tokenReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tokenReader) count() int {
	n := r.uvarint()
	if n > MaxTokenEntries {
		r.err = fmt.Errorf("more than %d entries", MaxTokenEntries)
		return 0
	}
	return int(n)
}

func (r *tokenReader) version() int64 {
	v := r.uvarint()
	if v == 0 || v > 1<<62 {
		r.err = fmt.Errorf("bad version")
	}
	return int64(v)
}

func (r *tokenReader) take(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("truncated")
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *tokenReader) byte() byte { return r.take(1)[0] }

func (r *tokenReader) text(limit int) string {
	n := r.uvarint()
	if n == 0 || n > uint64(limit) {
		r.err = fmt.Errorf("bad id length")
		return ""
	}
	return string(r.take(int(n)))
}

// ReadIndex is a replica's in-memory copy of the live reservations and the catalogue, kept up
// to date by the change feed (readindex.Index). Reads pass their ReadOptions; the index gives
// a view only when it can vouch for it under them, and the database answers otherwise.
type ReadIndex interface {
	// View returns a view that satisfies opt, waiting (bounded) for a READ_YOUR_WRITES
	// token's writes to arrive; ok is false when the database must answer. catalogue says that
	// the read uses the catalogue too (its freshness then counts).
	View(ctx context.Context, opt ReadOptions, catalogue bool) (v ReadView, ok bool)
}

// ReadView is what a ReadIndex holds, as of Position or later. Each method answers false when
// the view cannot answer that question (the database must): it holds only live reservations
// that end after a horizon, and only resources it has read.
type ReadView interface {
	Position() ReadPosition
	// Now is the clock the view judges holds' expiry by.
	Now() time.Time
	// Get returns the reservation id as stored, a lapsed hold included, as the database's
	// Get does; false when it is not held.
	Get(id string) (*Reservation, bool)
	// Find returns what f selects, in its order and limit, leaving out holds lapsed at Now,
	// as the database's Find does; false when the view cannot tell (no resource or user named,
	// or a start before the horizon).
	Find(f Filter) ([]*Reservation, bool)
	// Overlapping returns, for each of ids, the live reservations (holds lapsed at Now left
	// out) that overlap [start, end), by start then id; false when the window begins before
	// the horizon. Each reservation ends after start and starts before end.
	Overlapping(ids []string, start, end time.Time) (map[string][]*Reservation, bool)
	// Resource returns a resource of the catalogue; false when the view does not hold it.
	Resource(id string) (*Resource, bool)
	// Pool returns the units of a pool, by id (shared: not to be changed).
	Pool(id string) []*Resource
	// Resources returns every resource held, by id: the catalogue, for a search (shared: not
	// to be changed).
	Resources() []*Resource
}
