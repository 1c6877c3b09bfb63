package readindex

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// countingSource is the real store, counting the index's looks at the catalogue and its reads
// of it.
type countingSource struct {
	*repo.Store
	marks, reads atomic.Int64
}

func (c *countingSource) CatalogueMark(ctx context.Context) (string, error) {
	c.marks.Add(1)
	return c.Store.CatalogueMark(ctx)
}

func (c *countingSource) ListResources(ctx context.Context, f reservation.ResourceFilter) ([]*reservation.Resource, error) {
	if f.After == "" {
		c.reads.Add(1) // the first page of a read of the whole catalogue
	}
	return c.Store.ListResources(ctx, f)
}

// TestCatalogueReadsBackOffWhileItChanges: while resources keep being made (as an open
// catalogue's first bookings make them), the index reads the whole catalogue once per 16 looks
// at most, not at every look; once the catalogue is still, one read takes it in and the index
// vouches for it again. Counts, not times.
func TestCatalogueReadsBackOffWhileItChanges(t *testing.T) {
	db, _ := repotest.NewDB(t)
	src := &countingSource{Store: repo.New(db, repo.Options{})}
	// 2ms instead of the default 250ms: the test needs a few hundred looks.
	x := New(src, nil, Options{CatalogueInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { x.watchCatalogue(ctx) })

	made := 0
	for src.marks.Load()-src.reads.Load() < 300 { // looks: every read also takes the mark once after it
		made++
		if _, err := db.Exec("INSERT INTO resources (id, version, max_span_us, created_at) VALUES (?, 1, 0, NOW(6))", fmt.Sprintf("churn-%d", made)); err != nil {
			t.Fatal(err)
		}
	}
	reads, looks := src.reads.Load(), src.marks.Load()-src.reads.Load()
	t.Logf("%d resources made during %d looks, %d reads of the catalogue", made, looks, reads)
	if limit := 5 + looks/16 + 1; reads > limit {
		t.Errorf("the catalogue was read %d times in %d looks while it changed; want at most %d", reads, looks, limit)
	}

	// Still: the next read is kept, and the index holds every resource made.
	deadline := time.Now().Add(20 * time.Second)
	for {
		x.catMu.RLock()
		n := len(x.catalog)
		x.catMu.RUnlock()
		if n == made {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index holds %d of the %d resources after the catalogue stopped changing", n, made)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
