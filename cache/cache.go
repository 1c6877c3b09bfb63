// Package cache remembers, in memory, the committed reservations of recently used resources,
// from the change feed and from this replica's own commits, so that Reserve can refuse a
// window that is already taken without a trip to Redis or the database. Holds are left out,
// as the database pre-check leaves them: one may lapse while a call waits for its locks.
//
// The cache only proposes: what it finds in a window's way is a reservation that was
// committed, but it can be late to learn that another replica cancelled one, by the feed's lag
// (tens of milliseconds, or without bound while the feed stalls). Its user (repo.Store) reads
// the proposed blockers back from the database before refusing. While it cannot follow the
// feed, or while told that its view is not known to be current (SetCurrent), it finds nothing.
package cache

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"reservation"
)

// Options tune a Cache; the zero value is usable.
type Options struct {
	// MaxEntries bounds the reservations held (default 100,000). Past it, the resources
	// used longest ago are forgotten.
	MaxEntries int
	// Tombstones is how long the id of a removed reservation is remembered, so that a late
	// copy of it is not taken back in (default 1 minute).
	Tombstones time.Duration
	Logger     *slog.Logger
}

// Cache is one replica's memory of committed reservations. Its methods are safe for
// concurrent use.
type Cache struct {
	opts Options
	log  *slog.Logger
	tick atomic.Int64 // use counter, for forgetting the least recently used resources

	mu        sync.RWMutex
	live      bool // following the feed: only then is what it holds kept up to date
	resources map[string]*resource
	byID      map[string]slot
	entries   int
	removed   map[string]bool // ids removed: reservation ids are never used again
	tombs     []tomb          // removed, in the order they were, to forget them after a while

	refused atomic.Int64
	stale   atomic.Bool // set by SetCurrent(false): Overlapping finds nothing
}

// resource is what the cache holds of one resource.
type resource struct {
	id      string
	es      []entry // by start, then id
	maxSpan int64   // longest of es in microseconds, to bound the search
	used    atomic.Int64
}

// entry is a held reservation: only what a refusal needs, in little memory (a few hundred
// thousand of them fit in tens of megabytes).
type entry struct {
	start, end int64 // Unix microseconds
	version    int64
	id         string
}

// slot is where a held reservation is.
type slot struct {
	res     *resource
	start   int64
	version int64
}

type tomb struct {
	id string
	at time.Time
}

// DefaultMaxEntries is Options.MaxEntries when it is zero.
const DefaultMaxEntries = 100_000

// New returns an empty Cache, which refuses nothing until Follow has subscribed to the feed.
func New(opts Options) *Cache {
	opts.MaxEntries = reservation.OrDefault(opts.MaxEntries, DefaultMaxEntries)
	opts.Tombstones = reservation.OrDefault(opts.Tombstones, time.Minute)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cache{opts: opts, log: opts.Logger}
	c.clear(false)
	return c
}

// SetCurrent says whether the cache's view is known to be current (the feed it follows is
// healthy). Until SetCurrent(false) is called it is taken to be; while it is not, Overlapping
// finds nothing, so the cache proposes no refusal. It goes on taking in changes meanwhile.
func (c *Cache) SetCurrent(current bool) { c.stale.Store(!current) }

// Overlapping returns the reservations held that overlap r, with their id, resource, window
// and version.
func (c *Cache) Overlapping(r *reservation.Reservation) []*reservation.Reservation {
	if c.stale.Load() {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	res := c.resources[r.ResourceID]
	if res == nil {
		return nil
	}
	res.used.Store(c.tick.Add(1))
	start, end := r.Start.UnixMicro(), r.End.UnixMicro()
	// Nothing that starts before start minus the longest span can reach start.
	i, _ := slices.BinarySearchFunc(res.es, start-res.maxSpan, func(e entry, t int64) int { return cmp.Compare(e.start, t) })
	var near []*reservation.Reservation // those that may reach r's window
	for ; i < len(res.es) && res.es[i].start < end; i++ {
		if e := res.es[i]; e.end > start {
			near = append(near, &reservation.Reservation{ID: e.id, ResourceID: res.id, Version: e.version,
				Start: time.UnixMicro(e.start).UTC(), End: time.UnixMicro(e.end).UTC()})
		}
	}
	// Every one whose booked window overlaps r's: the Store weighs them by the resource's
	// capacity and buffers. The cache knows no buffers, so it misses the conflicts they alone
	// make (the write path finds those); what it proposes is in the way whatever they are.
	out := reservation.InTheWay(r, reservation.Policy{Capacity: 1}, near)
	if len(out) > 0 {
		c.refused.Add(1)
	}
	return out
}

// Apply takes in committed changes: the feed's, or this replica's own as soon as they commit.
// A change older than what is held for its reservation is ignored; a hold is let go of until
// it is confirmed.
func (c *Cache) Apply(changes ...*reservation.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return
	}
	now := time.Now()
	for _, ch := range changes {
		r := ch.Reservation
		if c.removed[r.ID] {
			continue
		}
		old, held := c.byID[r.ID]
		if held && old.version >= r.Version && ch.Op != reservation.OpDelete {
			continue
		}
		if held {
			c.drop(r.ID, old)
		}
		if ch.Op == reservation.OpDelete {
			c.removed[r.ID] = true
			c.tombs = append(c.tombs, tomb{r.ID, now})
			continue
		}
		if r.ExpiresAt.IsZero() {
			c.add(r)
		}
	}
	c.forgetTombs(now)
	if c.entries > c.opts.MaxEntries {
		c.evict()
	}
}

// Stats are counters since the Cache was made.
type Stats struct {
	Refused   int64 // Overlapping calls that found something in the way
	Entries   int   // reservations held now
	Following bool  // whether it follows the feed, and so refuses at all
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Stats{Refused: c.refused.Load(), Entries: c.entries, Following: c.live}
}

// Follow keeps the cache up to date from feed until ctx ends. A subscriber cut off for being
// slow resumes where it was; any other break empties the cache, which refuses nothing until
// it follows the feed again.
func (c *Cache) Follow(ctx context.Context, feed reservation.Feed) {
	defer c.clear(false)
	var after *uint64
	var resume *reservation.FeedCursor // after's cursor, when the feed gives one: checked on resume
	for ctx.Err() == nil {
		sub, err := feed.Subscribe(ctx, reservation.ChangeFilter{After: after, Resume: resume})
		if err != nil {
			c.clear(false)
			after, resume = nil, nil
			c.log.WarnContext(ctx, "cache: subscribing to the change feed failed", "err", err)
			reservation.Sleep(ctx, time.Second)
			continue
		}
		if after == nil && resume == nil {
			c.clear(true) // from here on, every change reaches it
		}
		for {
			changes, err := sub.Next(ctx)
			if err != nil {
				cursor := sub.After()
				sub.Close()
				if reservation.ErrorCode(err) == reservation.EEXHAUSTED {
					after, resume = &cursor, nil
					if pos := sub.Position(); pos.Fingerprint != 0 {
						// A failover meanwhile that lost changes this cache holds makes
						// the resume fail with FEED_DIVERGED, and the cache start over.
						after, resume = nil, &pos
					}
					break
				}
				c.clear(false)
				after, resume = nil, nil
				if ctx.Err() == nil {
					c.log.WarnContext(ctx, "cache: the change feed broke off", "err", err)
					reservation.Sleep(ctx, time.Second)
				}
				break
			}
			c.Apply(changes...)
		}
	}
}

// clear forgets everything and sets whether the cache follows the feed.
func (c *Cache) clear(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.resources = map[string]*resource{}
	c.byID = map[string]slot{}
	c.removed = map[string]bool{}
	c.tombs = nil
	c.entries = 0
}

// add holds r. The caller holds c.mu.
func (c *Cache) add(r *reservation.Reservation) {
	res := c.resources[r.ResourceID]
	if res == nil {
		res = &resource{id: r.ResourceID}
		c.resources[r.ResourceID] = res
	}
	res.used.Store(c.tick.Add(1))
	e := entry{start: r.Start.UnixMicro(), end: r.End.UnixMicro(), version: r.Version, id: r.ID}
	i, _ := slices.BinarySearchFunc(res.es, e, byStart)
	res.es = slices.Insert(res.es, i, e)
	res.maxSpan = max(res.maxSpan, e.end-e.start)
	c.byID[e.id] = slot{res, e.start, e.version}
	c.entries++
}

// drop lets go of the held reservation id, in s. The caller holds c.mu.
func (c *Cache) drop(id string, s slot) {
	res := s.res
	if i, found := slices.BinarySearchFunc(res.es, entry{start: s.start, id: id}, byStart); found {
		res.es = slices.Delete(res.es, i, i+1)
	}
	if len(res.es) == 0 {
		delete(c.resources, res.id)
	}
	delete(c.byID, id)
	c.entries--
}

func byStart(a, b entry) int {
	return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.id, b.id))
}

// forgetTombs forgets the ids removed more than opts.Tombstones ago. The caller holds c.mu.
func (c *Cache) forgetTombs(now time.Time) {
	n := 0
	for n < len(c.tombs) && now.Sub(c.tombs[n].at) > c.opts.Tombstones {
		delete(c.removed, c.tombs[n].id)
		n++
	}
	c.tombs = c.tombs[n:]
}

// evict forgets the least recently used resources until a tenth of the room is free again.
// The caller holds c.mu.
func (c *Cache) evict() {
	ids := make([]string, 0, len(c.resources))
	for id := range c.resources {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Compare(c.resources[a].used.Load(), c.resources[b].used.Load())
	})
	for _, id := range ids {
		if c.entries <= c.opts.MaxEntries*9/10 {
			return
		}
		for _, e := range c.resources[id].es {
			delete(c.byID, e.id)
			c.entries--
		}
		delete(c.resources, id)
	}
}
