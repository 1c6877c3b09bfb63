package repo_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"reservation"
	"reservation/cache"
	"reservation/repo"
	"reservation/repo/repotest"
)

// stalledFeed is a change feed that never delivers anything: a feed that stalled.
type stalledFeed struct{}

func (stalledFeed) Subscribe(context.Context, reservation.ChangeFilter) (reservation.Subscription, error) {
	return stalledSub{}, nil
}

type stalledSub struct{}

func (stalledSub) After() uint64 { return 0 }
func (stalledSub) Position() reservation.FeedCursor {
	return reservation.FeedCursor{}
}
func (stalledSub) Next(ctx context.Context) ([]*reservation.Change, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stalledSub) Close() {}

// stalledCache is a conflict cache that follows a feed that never delivers: it learns only of
// its own store's commits, never of another replica's.
func stalledCache(t *testing.T) *cache.Cache {
	t.Helper()
	c := cache.New(cache.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.Follow(ctx, stalledFeed{}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for !c.Stats().Following {
		time.Sleep(time.Millisecond)
	}
	return c
}

// TestRememberedConflictIsReadBack: two replicas on one database, the first with a conflict
// cache whose feed stalled. Its cache still remembers reservations the second replica has
// cancelled; a Reserve of such a window must be written, not refused, and a window still
// taken must be refused naming the stored reservation. Many goroutines do it at once, each
// on its own resource.
func TestRememberedConflictIsReadBack(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	taken := stalledCache(t)
	a := repo.New(db, repo.Options{Taken: taken}) // remembers its own commits, hears nothing else
	b := repo.New(db, repo.Options{})
	ctx := context.Background()

	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			resource := fmt.Sprint("room-", i)
			errs <- func() error {
				made, err := a.Reserve(ctx, reservation.Book(window(resource, 10, 12)))
				if err != nil {
					return err
				}
				// A: still taken, as the cache and the database both say.
				_, err = a.Reserve(ctx, reservation.Book(window(resource, 11, 13)))
				var e *reservation.Error
				if !errors.As(err, &e) || e.Code != reservation.ECONFLICT || e.Conflicts[0].Existing.ID != made[0].ID ||
					!e.Conflicts[0].Existing.End.Equal(made[0].End) {
					return fmt.Errorf("%s: a window still taken: got %v, want a conflict naming %s", resource, err, made[0].ID)
				}
				// B cancels; A's cache never hears of it. The window is free and must be given.
				if _, err := b.Cancel(ctx, reservation.Ref{ID: made[0].ID}); err != nil {
					return err
				}
				if _, err := a.Reserve(ctx, reservation.Book(window(resource, 11, 13))); err != nil {
					return fmt.Errorf("%s: a window freed on another replica: %w", resource, err)
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := count(t, db, "SELECT COUNT(*) FROM reservations"); got != n {
		t.Errorf("%d reservations stored, want %d", got, n)
	}
	if o := repotest.Overlaps(t, db); o != 0 {
		t.Errorf("%d overlapping pairs", o)
	}
	// The cancelled ones were forgotten once read back: the cache holds the new ones only.
	if got := taken.Stats().Entries; got != n {
		t.Errorf("the cache holds %d reservations, want %d", got, n)
	}
}

// TestRememberedConflictWeighsCapacity: the cache proposes every remembered reservation in the
// way, and the read-back weighs them by the resource's capacity as the same statement read it.
// On a capacity-2 room a second overlapping booking is given and a third refused; once another
// replica raises the capacity to 3 (the cache hears nothing), the third is given.
func TestRememberedConflictWeighsCapacity(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	taken := stalledCache(t)
	a := repo.New(db, repo.Options{Taken: taken})
	b := repo.New(db, repo.Options{})
	ctx := context.Background()
	if _, err := b.PutResource(ctx, &reservation.Resource{ID: "hall", Capacity: 2}, 0); err != nil {
		t.Fatal(err)
	}
	first, err := a.Reserve(ctx, reservation.Book(window("hall", 10, 12)))
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.Reserve(ctx, reservation.Book(window("hall", 11, 13)))
	if err != nil {
		t.Fatalf("a second booking of a capacity-2 hall, one remembered in the way: %v, want it given", err)
	}
	refused := taken.Stats().Refused
	_, err = a.Reserve(ctx, reservation.Book(window("hall", 11, 12)))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.ECONFLICT || len(e.Conflicts) != 2 {
		t.Fatalf("a third booking with both in the way: %v, want a conflict naming %s and %s", err, first[0].ID, second[0].ID)
	}
	if taken.Stats().Refused == refused {
		t.Fatalf("the cache proposed nothing for the third booking: the read-back was not what refused it")
	}
	if _, err := b.PutResource(ctx, &reservation.Resource{ID: "hall", Capacity: 3}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reserve(ctx, reservation.Book(window("hall", 11, 12))); err != nil {
		t.Fatalf("the third booking once another replica raised the capacity to 3: %v, want it given", err)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM reservations"); got != 3 {
		t.Errorf("%d reservations stored, want 3", got)
	}
}
