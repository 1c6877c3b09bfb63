package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"

	"reservation"
	rsvjs "reservation/jetstream"
	"reservation/jetstream/jstest"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/service"
)

var quiet = slog.New(slog.DiscardHandler)

// natsURLs are the test cluster's servers: scripts/nats.sh starts three nodes and prints them.
func natsURLs(t testing.TB) []string {
	t.Helper()
	urls := os.Getenv("RESERVATION_TEST_NATS_URLS")
	if urls == "" {
		t.Skip("RESERVATION_TEST_NATS_URLS is not set: `make test-nats` starts a 3-node JetStream cluster (scripts/nats.sh) and runs these tests against it")
	}
	return strings.Split(urls, ",")
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testStream is a stream name and subject prefix of t's own on the shared cluster, deleted
// when t ends.
func testStream(t testing.TB, urls []string) (stream, prefix string, js jetstream.JetStream) {
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	stream, prefix = "RSVTEST_"+strings.ToUpper(id), "rsvtest."+id
	nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: urls, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		js.DeleteStream(ctx, stream)
		nc.Close()
	})
	return stream, prefix, js
}

// writers is a feed being written: a queue that sequences (production defaults) and a store.
type writers struct {
	db    *sqlx.DB
	store *repo.Store
}

func startWriters(t testing.TB, db *sqlx.DB) *writers {
	q := queue.New(repo.NewChanges(db), repo.NewLeader(db), queue.Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &writers{db: db, store: repo.New(db, repo.Options{Logger: quiet, Committed: q.Nudge})}
}

var base = time.Date(2031, 1, 6, 8, 0, 0, 0, time.UTC)

// write makes n changes on resources r0..r4 from 8 goroutines: bookings, and every tenth a
// move to the next resource.
func (w *writers) write(t testing.TB, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 8 {
		wg.Go(func() {
			for i := from + g; i < from+n; i += 8 {
				res := fmt.Sprintf("r%d", i%5)
				start := base.Add(time.Duration(i) * time.Hour)
				out, err := w.store.Reserve(context.Background(), reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: res, Start: start, End: start.Add(time.Hour)}))
				if err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					to := fmt.Sprintf("r.%d", (i+1)%5) // a dot: the id's token is encoded
					if _, err := w.store.Update(context.Background(), reservation.Ref{ID: out[0].ID}, reservation.Edit{ResourceID: to}); err != nil {
						errs <- fmt.Errorf("move %s to %s: %w", out[0].ID, to, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// stored returns the sequenced changes in the database, in seq order.
func stored(t testing.TB, db *sqlx.DB) []*reservation.Change {
	t.Helper()
	cs, err := repo.NewChanges(db).Read(ctxFor(t, time.Minute), 0, 1<<62, "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// exporter starts an exporter of db's feed to stream; stop ends it and waits.
func exporter(t testing.TB, db *sqlx.DB, urls []string, stream, prefix string, tweak func(*rsvjs.Options)) (x *rsvjs.Exporter, stop func()) {
	o := rsvjs.Options{Conn: rsvjs.ConnConfig{URLs: urls, Name: t.Name()}, Stream: stream, SubjectPrefix: prefix, Encode: service.EncodeChange, Logger: quiet}
	if tweak != nil {
		tweak(&o)
	}
	x = rsvjs.New(repo.NewChanges(db), repo.NewExporter(db, stream), o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return x, stop
}

// waitExported waits until the stream's last sequence is the feed's newest seq.
func waitExported(t testing.TB, db *sqlx.DB, js jetstream.JetStream, stream string) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	for {
		// Every committed change stamped first: the writers have returned, the sequencer may not.
		if oldest, _, err := repo.NewChanges(db).Unstamped(ctx); err != nil || oldest != 0 {
			if ctx.Err() != nil {
				t.Fatalf("changes still wait for their seq (err %v)", err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_, last, err := repo.NewChanges(db).Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, stream)
		if err == nil && s.CachedInfo().State.LastSeq >= last && last > 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s never reached seq %d (err %v)", stream, last, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMsgs reads every message of the stream.
func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	msgs, err := jstest.StreamMsgs(ctxFor(t, 2*time.Minute), js, stream)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestExportStreamSeqIsFeedSeq: changes written from many goroutines while three exporters
// compete (one exports at a time), then more after the first exporter stopped: the stream holds
// each stored change exactly once, stream sequence i carries feed seq i, and the body is what
// Listen sends.
func TestExportStreamSeqIsFeedSeq(t *testing.T) {
	urls := natsURLs(t)
	db, _ := repotest.NewDB(t)
	stream, prefix, js := testStream(t, urls)
	w := startWriters(t, db)
	w.write(t, 0, 300) // exported as a backlog: the stream's first seq is the feed's first
	x1, stop1 := exporter(t, db, urls, stream, prefix, nil)
	x2, _ := exporter(t, db, urls, stream, prefix, nil)
	x3, _ := exporter(t, db, urls, stream, prefix, nil)
	w.write(t, 300, 700)
	waitExported(t, db, js, stream)
	stop1()
	w.write(t, 1000, 1000)
	waitExported(t, db, js, stream)
	feed := stored(t, db)
	msgs := streamMsgs(t, js, stream)
	if bad := jstest.Check(msgs, feed, prefix); len(bad) > 0 {
		t.Fatalf("the stream is not the feed:\n%s", strings.Join(bad, "\n"))
	}
	if md, _ := msgs[0].Metadata(); md.Sequence.Stream != feed[0].Seq {
		t.Errorf("the stream starts at seq %d, the feed at %d", md.Sequence.Stream, feed[0].Seq)
	}
	var published int64
	for _, x := range []*rsvjs.Exporter{x1, x2, x3} {
		published += x.Stats().Published
	}
	if published != int64(len(feed)) {
		t.Errorf("the exporters stored %d messages, want %d", published, len(feed))
	}
	t.Logf("%d changes exported; published by the three exporters: %d, %d, %d", len(feed), x1.Stats().Published, x2.Stats().Published, x3.Stats().Published)
}

// brokenLease believes it holds the export's lease whatever the database says: a replica
// whose lease was broken by hand, or that missed its expiry.
type brokenLease struct{ *repo.Exporter }

func (brokenLease) Elect(context.Context, time.Duration) (bool, error) { return true, nil }
func (brokenLease) Record(context.Context, uint64, string) error       { return nil }
func (brokenLease) Resign()                                            {}

// TestExportTwoExportersFencedByStream runs a rightful exporter and one that believes it leads
// while changes are written: the stream refuses the publishes that do not follow its last
// message, or acknowledge them as duplicates of the message stored with their Nats-Msg-Id
// (the duplicate path), and the stream holds each change exactly once. Without the expected-sequence
// header (breakExpectedSeq) the same run stores duplicates, and the check says so.
func TestExportTwoExportersFencedByStream(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			urls := natsURLs(t)
			db, _ := repotest.NewDB(t)
			stream, prefix, js := testStream(t, urls)
			w := startWriters(t, db)
			w.write(t, 0, 10)
			x1, _ := exporter(t, db, urls, stream, prefix, func(o *rsvjs.Options) { rsvjs.Break(o, broken, broken, false) })
			waitExported(t, db, js, stream)
			o := rsvjs.Options{Conn: rsvjs.ConnConfig{URLs: urls}, Stream: stream, SubjectPrefix: prefix, Encode: service.EncodeChange, Logger: quiet}
			rsvjs.Break(&o, broken, broken, false)
			x2 := rsvjs.New(repo.NewChanges(db), brokenLease{repo.NewExporter(db, stream)}, o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { x2.Run(ctx); close(done) }()
			w.write(t, 10, 2000)
			waitExported(t, db, js, stream)
			time.Sleep(500 * time.Millisecond) // both have published what they read
			cancel()
			<-done
			bad := jstest.Check(streamMsgs(t, js, stream), stored(t, db), prefix)
			s1, s2 := x1.Stats(), x2.Stats()
			t.Logf("rightful: %+v; wrongful: %+v", s1, s2)
			if broken {
				if len(bad) == 0 {
					t.Fatal("two exporters without the expected-sequence header left a stream the check passed: the check cannot fail")
				}
				t.Logf("as it should, the check fails on the broken exporter: %s", bad[0])
				return
			}
			if len(bad) > 0 {
				t.Fatalf("the stream is not the feed:\n%s", strings.Join(bad, "\n"))
			}
			if s1.Duplicates+s2.Duplicates == 0 {
				t.Error("no publish was acknowledged as a duplicate: the two exporters never met")
			}
		})
	}
}

// TestExportStaleRetryRefused (both the duplicate and the wrong-sequence paths, and a broken
// exporter for each header): an exporter that sends again a publish the stream stored
// longer ago than its duplicate window (it was paused) is refused for a wrong last sequence,
// not stored twice: it reads the stream's last message again (errResync). The window is 1s
// here, so that the test need not wait the default 2 minutes; the other tests keep it.
func TestExportStaleRetryRefused(t *testing.T) {
	urls := natsURLs(t)
	db, _ := repotest.NewDB(t)
	stream, prefix, js := testStream(t, urls)
	w := startWriters(t, db)
	w.write(t, 0, 50)
	x, stop := exporter(t, db, urls, stream, prefix, func(o *rsvjs.Options) { o.Duplicates = time.Second })
	waitExported(t, db, js, stream)
	stop()
	feed := stored(t, db)
	stale := feed[len(feed)-10:] // published already
	ctx := ctxFor(t, time.Minute)
	// Within the window: each is acknowledged as a duplicate, with its own sequence.
	n, err := x.PublishOnce(ctx, stale)
	if err != nil || n != len(stale) || x.Stats().Duplicates != int64(len(stale)) {
		t.Fatalf("retry within the window: %d acknowledged, %d duplicates, err %v; want %d duplicates", n, x.Stats().Duplicates, err, len(stale))
	}
	// Without Nats-Msg-Id, a retry within the window is not recognised as a duplicate: the
	// duplicate path's check fails (the stream refuses it for its expected sequence instead).
	x.SetBreak(true, false, false)
	dups := x.Stats().Duplicates
	if n, err := x.PublishOnce(ctx, feed[len(feed)-1:]); n != 0 || !errors.Is(err, rsvjs.ErrResync) || x.Stats().Duplicates != dups {
		t.Fatalf("without Nats-Msg-Id, a retry: %d acknowledged, err %v, duplicates %d->%d; want it refused", n, err, dups, x.Stats().Duplicates)
	}
	t.Log("as it should, without Nats-Msg-Id the duplicate path is not taken")
	x.SetBreak(false, false, false)
	time.Sleep(2500 * time.Millisecond) // past the window (the server forgets ids within a second or so after it)
	refused := x.Stats().WrongSeq
	n, err = x.PublishOnce(ctx, stale)
	if !errors.Is(err, rsvjs.ErrResync) || n != 0 || x.Stats().WrongSeq != refused+1 {
		t.Fatalf("retry past the window: %d acknowledged, err %v, %d refused; want errResync, 1 refused", n, err, x.Stats().WrongSeq-refused)
	}
	if bad := jstest.Check(streamMsgs(t, js, stream), stored(t, db), prefix); len(bad) > 0 {
		t.Fatalf("the stream is not the feed:\n%s", strings.Join(bad, "\n"))
	}
	// Without Nats-Expected-Last-Sequence, the stale retry past the window is stored again,
	// and the stream check sees it.
	x.SetBreak(false, true, false)
	if _, err := x.PublishOnce(ctx, stale[:1]); err != nil {
		t.Fatal(err)
	}
	if bad := jstest.Check(streamMsgs(t, js, stream), stored(t, db), prefix); len(bad) == 0 {
		t.Fatal("a change stored twice passed the check: it cannot fail")
	} else {
		t.Logf("as it should, without Nats-Expected-Last-Sequence the check fails: %s", bad[0])
	}
}

// forget deletes the feed's changes after seq keep, as a failover to a database replica that
// had not received them leaves the feed: the next changes are stamped again from keep+1, with
// other fingerprints.
func forget(t *testing.T, db *sqlx.DB, keep uint64) {
	t.Helper()
	if _, err := db.ExecContext(ctxFor(t, time.Minute), "DELETE FROM reservation_changes WHERE seq > ?", keep); err != nil {
		t.Fatal(err)
	}
}

func streamLast(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctxFor(t, time.Minute), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// TestExportHaltsOnDivergence: the database's feed loses its newest changes (a lossy
// failover) and stamps others with their seqs. A running exporter finds it at its next read,
// and one started afterwards finds it on resume, from the stream's last message's
// fingerprint: both halt with nothing published after the fork, recorded for every replica.
// An exporter without the fingerprint check goes on, and the check finds the stream's seqs
// carrying other changes than the feed's.
func TestExportHaltsOnDivergence(t *testing.T) {
	urls := natsURLs(t)
	t.Run("running", func(t *testing.T) {
		db, _ := repotest.NewDB(t)
		stream, prefix, js := testStream(t, urls)
		w := startWriters(t, db)
		w.write(t, 0, 200)
		x, _ := exporter(t, db, urls, stream, prefix, nil)
		waitExported(t, db, js, stream)
		exported := streamLast(t, js, stream)
		forget(t, db, exported-20)
		w.write(t, 1000, 100)
		waitHalted(t, db, stream)
		if got := streamLast(t, js, stream); got != exported {
			t.Fatalf("the stream ends at seq %d after the fork, want %d: published after the fork", got, exported)
		}
		if x.Stats().Halts == 0 || x.Halted() == "" {
			t.Fatalf("the exporter did not say it halted: %+v", x.Stats())
		}
		t.Logf("halted: %s", x.Halted())
	})
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("resumed/broken=%v", broken), func(t *testing.T) {
			db, _ := repotest.NewDB(t)
			stream, prefix, js := testStream(t, urls)
			w := startWriters(t, db)
			w.write(t, 0, 200)
			_, stop := exporter(t, db, urls, stream, prefix, nil)
			waitExported(t, db, js, stream)
			stop()
			exported := streamLast(t, js, stream)
			forget(t, db, exported-20)
			w.write(t, 1000, 100) // seq exported now names another change
			x, _ := exporter(t, db, urls, stream, prefix, func(o *rsvjs.Options) { rsvjs.Break(o, false, false, broken) })
			if broken {
				waitExported(t, db, js, stream)
				bad := jstest.Check(streamMsgs(t, js, stream), stored(t, db), prefix)
				if len(bad) == 0 {
					t.Fatal("an exporter without the fingerprint check went on past the fork, and the check passed: it cannot fail")
				}
				t.Logf("as it should, the check fails on the broken exporter: %s", bad[0])
				return
			}
			waitHalted(t, db, stream)
			if got := streamLast(t, js, stream); got != exported {
				t.Fatalf("the stream ends at seq %d after the fork, want %d", got, exported)
			}
			t.Logf("halted: %s", x.Halted())
		})
	}
}

// waitHalted waits until the export's halt is recorded in the database.
func waitHalted(t *testing.T, db *sqlx.DB, stream string) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	for {
		_, halted, err := repo.NewExporter(db, stream).State(ctx)
		if err == nil && halted != "" {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the export never halted (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPruneKeepsUnexported: the feed's pruning deletes no change the export has not
// published, however old; once the export records a seq, the changes up to it may go; with
// the export's record deleted (reservationd export reset), pruning no longer waits.
func TestPruneKeepsUnexported(t *testing.T) {
	db, _ := repotest.NewDB(t)
	w := startWriters(t, db)
	w.write(t, 0, 100)
	ctx := ctxFor(t, time.Minute)
	e := repo.NewExporter(db, "PRUNETEST")
	if won, err := e.Elect(ctx, time.Second); err != nil || !won {
		t.Fatalf("elect: %v %v", won, err)
	}
	leader := repo.NewLeader(db)
	later := time.Now().Add(time.Hour) // every change is older than this
	prune := func() (first uint64) {
		for {
			n, err := leader.Prune(ctx, later, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		first, _, err := repo.NewChanges(db).Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	if first := prune(); first != 1 {
		t.Fatalf("pruning before any export left the feed starting at seq %d, want 1", first)
	}
	if err := e.Record(ctx, 40, ""); err != nil {
		t.Fatal(err)
	}
	if first := prune(); first != 41 {
		t.Fatalf("pruning after seq 40 was exported left the feed starting at seq %d, want 41", first)
	}
	if _, err := repo.ForgetExport(ctx, db, "PRUNETEST"); err != nil {
		t.Fatal(err)
	}
	_, last, _ := repo.NewChanges(db).Bounds(ctx)
	if first := prune(); first != last {
		t.Fatalf("pruning without an export left the feed starting at seq %d, want only the newest, %d", first, last)
	}
}
