// Package readindex is a replica's in-memory read index: every live reservation that ends
// after a horizon in the past, and the catalogue, kept up to date by the change feed, so that
// reads that do not need the database (READ_YOUR_WRITES with a token, BOUNDED staleness) are
// answered from memory (reservation.ReadIndex; docs/consistency.md).
//
// It loads the reservations in pages by primary key after subscribing to the feed, then
// applies the feed from the position it subscribed at: a change the load already read is
// recognised by its version. It answers nothing until it has applied a feed position that
// the poller found to be the head after the load ended (it is current), nor while it holds
// more reservations than its limit.
package readindex

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"reservation"
	"reservation/queue"
)

// Source is what the index loads from: repo.Store.
type Source interface {
	// LiveSince returns up to limit reservations that end after cut with ids after after, by id.
	LiveSince(ctx context.Context, cut time.Time, after string, limit int) ([]*reservation.Reservation, error)
	ListResources(ctx context.Context, f reservation.ResourceFilter) ([]*reservation.Resource, error)
	GetResource(ctx context.Context, id string) (*reservation.Resource, error)
	// CatalogueMark changes whenever a resource is put or made.
	CatalogueMark(ctx context.Context) (string, error)
}

// Feed is the change feed the index follows, with what the poller knows of its progress:
// queue.Queue.
type Feed interface {
	reservation.Feed
	MarkAt(seq uint64) queue.HeadMark
	Health() queue.Health
}

// Options tune an Index; the zero value is usable.
type Options struct {
	// Horizon is how far into the past the reservations held reach: each one that ends after
	// now minus Horizon (default DefaultHorizon). A read about earlier times goes to the database.
	Horizon time.Duration
	// MaxReservations bounds the reservations held (default DefaultMaxReservations). Past it
	// the index lets go of them all and answers nothing (the database does), and loads again
	// after a while.
	MaxReservations int
	// Wait bounds how long a READ_YOUR_WRITES read waits for the feed to bring its token's
	// writes before the database answers (default DefaultWait).
	Wait time.Duration
	// CatalogueInterval is how often the catalogue is looked at for changes (default
	// DefaultCatalogueInterval): the catalogue's part of the view is that old at most while
	// it does not change, and up to 16 times that while it keeps changing (catalogue.go).
	CatalogueInterval time.Duration
	// Recent is how long the version of each reservation the feed changed is remembered,
	// held or not (a cancelled one, one outside the horizon), for tokens that name it
	// (default 1 minute).
	Recent time.Duration
	// Now is the clock of the view's age and of holds' expiry; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Hold, when set, is called before each batch of changes is applied: tests hold a
	// replica's index back with it.
	Hold func(ctx context.Context)
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultHorizon           = 30 * 24 * time.Hour
	DefaultMaxReservations   = 1_000_000
	DefaultWait              = time.Second
	DefaultCatalogueInterval = 250 * time.Millisecond
	loadPage                 = 5000
	overflowPause            = time.Minute
	pruneEvery               = time.Hour
)

// Index is one replica's read index. Its methods are safe for concurrent use.
type Index struct {
	src  Source
	feed Feed
	opts Options
	log  *slog.Logger

	mu      sync.RWMutex
	loadEnd time.Time // when the last load ended: current once a head mark after it is applied
	applied uint64    // the feed's seq applied last
	cut     time.Time // every live reservation that ends after cut is held
	byID    map[string]*reservation.Reservation
	byRes   map[string]*list
	byUser  map[string]*list
	recent  map[string]int64 // the versions the feed brought lately, by reservation id
	recentQ []seen
	changed chan struct{} // closed (and made again) whenever a change is applied

	catMu    sync.RWMutex
	catalog  map[string]*reservation.Resource
	sorted   []*reservation.Resource            // catalog by id; replaced, never changed
	pools    map[string][]*reservation.Resource // by id; replaced, never changed
	catAsOf  time.Time
	catReady bool

	overflows atomic.Int64
	served    atomic.Int64
}

type seen struct {
	id string
	at time.Time
}

// list is the reservations of one resource or user, by start then id.
type list struct {
	rs      []*reservation.Reservation
	maxSpan time.Duration // the longest of rs: nothing that starts earlier than a window's start by more reaches it
}

var _ reservation.ReadIndex = (*Index)(nil)

// New returns an Index over src, fed by feed, that answers nothing until Run has loaded it.
func New(src Source, feed Feed, opts Options) *Index {
	opts.Horizon = reservation.OrDefault(opts.Horizon, DefaultHorizon)
	opts.MaxReservations = reservation.OrDefault(opts.MaxReservations, DefaultMaxReservations)
	opts.Wait = reservation.OrDefault(opts.Wait, DefaultWait)
	opts.CatalogueInterval = reservation.OrDefault(opts.CatalogueInterval, DefaultCatalogueInterval)
	opts.Recent = reservation.OrDefault(opts.Recent, time.Minute)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	x := &Index{src: src, feed: feed, opts: opts, log: opts.Logger, changed: make(chan struct{})}
	x.clear()
	return x
}

// Stats describe the index now.
type Stats struct {
	Ready        bool   // it answers
	Reservations int    // held
	Resources    int    // held
	Applied      uint64 // the feed's seq applied last
	Overflows    int64  // times it held more than MaxReservations and let go
	Served       int64  // reads it answered
}

// Stats returns the index's figures.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	s := Stats{Ready: x.current(), Reservations: len(x.byID), Applied: x.applied, Overflows: x.overflows.Load(), Served: x.served.Load()}
	x.mu.RUnlock()
	x.catMu.RLock()
	s.Resources = len(x.catalog)
	x.catMu.RUnlock()
	return s
}

// errOverflow ends a follow that found more reservations than the limit.
var errOverflow = errors.New("more reservations than the read index's limit")

// Run loads the index and keeps it up to date until ctx ends: the reservations from the feed,
// the catalogue by looking at it every CatalogueInterval.
func (x *Index) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { x.watchCatalogue(ctx) })
	for ctx.Err() == nil {
		err := x.follow(ctx)
		x.clear()
		if ctx.Err() != nil {
			break
		}
		pause := time.Second
		if errors.Is(err, errOverflow) {
			x.overflows.Add(1)
			pause = overflowPause
			x.log.WarnContext(ctx, "read index: past its limit, reads go to the database", "max_reservations", x.opts.MaxReservations)
		} else {
			x.log.WarnContext(ctx, "read index: following the change feed failed, loading again", "err", err)
		}
		reservation.Sleep(ctx, pause)
	}
	wg.Wait()
}

// clear forgets every reservation: the index answers nothing until loaded again.
func (x *Index) clear() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.applied, x.loadEnd = 0, time.Time{}
	x.byID = map[string]*reservation.Reservation{}
	x.byRes = map[string]*list{}
	x.byUser = map[string]*list{}
	x.recent = map[string]int64{}
	x.recentQ = nil
}

// follow subscribes to the feed, loads the reservations, then applies the feed until it fails.
func (x *Index) follow(ctx context.Context) error {
	sub, err := x.feed.Subscribe(ctx, reservation.ChangeFilter{})
	if err != nil {
		return fmt.Errorf("subscribe to the change feed: %w", err)
	}
	defer func() { sub.Close() }()
	if err := x.load(ctx, sub.After()); err != nil {
		return err
	}
	for {
		changes, err := sub.Next(ctx)
		if reservation.ErrorCode(err) == reservation.EEXHAUSTED {
			// Cut off for being slow: resume where it was, verified, keeping what is held.
			pos := sub.Position()
			sub.Close()
			f := reservation.ChangeFilter{Resume: &pos}
			if pos.Fingerprint == 0 {
				after := pos.Seq
				f = reservation.ChangeFilter{After: &after}
			}
			if sub, err = x.feed.Subscribe(ctx, f); err != nil {
				return fmt.Errorf("resume the change feed: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read the change feed: %w", err)
		}
		if x.opts.Hold != nil {
			x.opts.Hold(ctx)
		}
		if err := x.apply(changes, sub.After()); err != nil {
			return err
		}
	}
}

// load reads every reservation that ends after now minus the horizon, in pages by id, into
// the index, which is then at feed position after (where its subscription starts).
func (x *Index) load(ctx context.Context, after uint64) error {
	cut := reservation.Truncate(x.opts.Now().Add(-x.opts.Horizon))
	byID := map[string]*reservation.Reservation{}
	last := ""
	for {
		page, err := x.src.LiveSince(ctx, cut, last, loadPage)
		if err != nil {
			return err
		}
		for _, r := range page {
			byID[r.ID] = r
		}
		if len(byID) > x.opts.MaxReservations {
			return errOverflow
		}
		if len(page) < loadPage {
			break
		}
		last = page[len(page)-1].ID
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.cut, x.applied, x.loadEnd = cut, after, x.opts.Now()
	x.byID = map[string]*reservation.Reservation{}
	for _, r := range byID {
		x.add(r)
	}
	for _, l := range x.byRes {
		sortList(l)
	}
	for _, l := range x.byUser {
		sortList(l)
	}
	x.log.Info("read index loaded", "reservations", len(x.byID), "after_seq", after)
	return nil
}

// apply takes in the changes the feed delivered, up to seq through.
func (x *Index) apply(changes []*reservation.Change, through uint64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := x.opts.Now()
	for _, ch := range changes {
		r := ch.Reservation
		if v, ok := x.recent[r.ID]; !ok || v < r.Version {
			x.recent[r.ID] = r.Version
			x.recentQ = append(x.recentQ, seen{r.ID, now})
		}
		old := x.byID[r.ID]
		if old != nil && old.Version >= r.Version {
			continue // the load read it at this version or later
		}
		if old != nil {
			x.remove(old)
		}
		if ch.Op != reservation.OpDelete && r.End.After(x.cut) {
			x.insert(r)
		}
	}
	n := 0
	for n < len(x.recentQ) && now.Sub(x.recentQ[n].at) > x.opts.Recent {
		delete(x.recent, x.recentQ[n].id)
		n++
	}
	x.recentQ = x.recentQ[n:]
	x.applied = through
	if len(x.byID) > x.opts.MaxReservations {
		return errOverflow
	}
	close(x.changed)
	x.changed = make(chan struct{})
	return nil
}

// add holds r without keeping the lists sorted (load sorts them once). The caller holds x.mu.
func (x *Index) add(r *reservation.Reservation) {
	x.byID[r.ID] = r
	for _, l := range x.listsOf(r) {
		l.rs = append(l.rs, r)
		l.maxSpan = max(l.maxSpan, r.End.Sub(r.Start))
	}
}

// insert holds r in its place in each list. The caller holds x.mu.
func (x *Index) insert(r *reservation.Reservation) {
	x.byID[r.ID] = r
	for _, l := range x.listsOf(r) {
		i, _ := slices.BinarySearchFunc(l.rs, r, byStart)
		l.rs = slices.Insert(l.rs, i, r)
		l.maxSpan = max(l.maxSpan, r.End.Sub(r.Start))
	}
}

// remove lets go of r. The caller holds x.mu.
func (x *Index) remove(r *reservation.Reservation) {
	delete(x.byID, r.ID)
	for _, side := range []struct {
		m   map[string]*list
		key string
	}{{x.byRes, r.ResourceID}, {x.byUser, r.UserID}} {
		l := side.m[side.key]
		if l == nil {
			continue
		}
		if i, found := slices.BinarySearchFunc(l.rs, r, byStart); found {
			l.rs = slices.Delete(l.rs, i, i+1)
		}
		if len(l.rs) == 0 {
			delete(side.m, side.key)
		}
	}
}

// listsOf returns r's resource's and user's lists, made if missing. The caller holds x.mu.
func (x *Index) listsOf(r *reservation.Reservation) []*list {
	get := func(m map[string]*list, key string) *list {
		l := m[key]
		if l == nil {
			l = &list{}
			m[key] = l
		}
		return l
	}
	return []*list{get(x.byRes, r.ResourceID), get(x.byUser, r.UserID)}
}

func sortList(l *list) { slices.SortFunc(l.rs, byStart) }

func byStart(a, b *reservation.Reservation) int {
	return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ID, b.ID))
}

// prune lets go of the reservations that ended before now minus the horizon. The caller holds
// x.mu.
func (x *Index) prune(now time.Time) {
	cut := reservation.Truncate(now.Add(-x.opts.Horizon))
	if !cut.After(x.cut) {
		return
	}
	for _, r := range x.byID {
		if !r.End.After(cut) {
			x.remove(r)
		}
	}
	x.cut = cut
}
