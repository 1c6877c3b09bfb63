package service_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"reservation/lock"
	pb "reservation/proto/reservation/v1"
)

// TestCacheRefusesAtOnce: a window taken on one replica is refused on another from its cache,
// at once, while a writer holds the resource's lock; a cancel frees the window at once on its
// own replica, and on the other as soon as the feed brings it.
func TestCacheRefusesAtOnce(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	locker := lock.NewLocal(30 * time.Second) // one lock for both: they share this process
	a, b := startReplica(t, db, locker), startReplica(t, db, locker)
	following(t, a)
	following(t, b)
	ctx := ctxFor(t)

	made := reserve(t, a.client, booking("room", 0, 2))
	waitUntil(t, "replica b's cache to hold the reservation", func() bool { return b.taken.Stats().Entries == 1 })
	unlock, err := locker.Lock(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := ctxWithTimeout(2 * time.Second)
	defer cancel()
	_, err = b.client.Reserve(wctx, &pb.ReserveRequest{Reservation: booking("room", 1, 3)})
	if id := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()["conflict_0_id"]; id != made.Id {
		t.Fatalf("conflict names %q, want %s", id, made.Id)
	}
	if n := b.taken.Stats().Refused; n != 1 {
		t.Errorf("replica b's cache refused %d times, want 1", n)
	}
	// A window the cache believes free still queues for the lock.
	qctx, qcancel := ctxWithTimeout(100 * time.Millisecond)
	defer qcancel()
	if _, err := b.client.Reserve(qctx, &pb.ReserveRequest{Reservation: booking("room", 2, 3)}); err == nil {
		t.Fatal("a free window was written while another writer held the lock")
	}
	unlock(ctx)

	if _, err := a.client.Cancel(ctx, &pb.CancelRequest{Id: made.Id}); err != nil {
		t.Fatal(err)
	}
	// On its own replica, the cancel counts at once.
	again := reserve(t, a.client, booking("room", 0, 1))
	if _, err := a.client.Cancel(ctx, &pb.CancelRequest{Id: again.Id}); err != nil {
		t.Fatal(err)
	}
	// On the other, once the feed has brought both cancels.
	start := time.Now()
	waitUntil(t, "replica b to take the freed window", func() bool {
		_, err := b.client.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 2)})
		return err == nil
	})
	t.Logf("replica b took the freed window %s after the cancels", time.Since(start).Round(time.Millisecond))
	if n := overlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of stored reservations overlap", n)
	}
}
